"""One answer at a time per loaded model, and a bounded queue of the questions that wait.

Generation is CPU-bound: two answers at once on the same cores each take about twice as
long, and hold two KV caches in memory. So a question takes a :class:`Turn` at the gate;
while another is answered it waits in line, and when the line is full the server says
so at once (503 with Retry-After) rather than keeping a client waiting without end.
Searches never take a turn.

The gate lives on the server's event loop. A turn ends when the worker thread that ran
the model is done with it (:meth:`Turn.done_threadsafe`), not when the request ends: a
client that goes away stops the model at its next token, and only then is the model free.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque

from rag.errors import QueueFull

# Turns whose length Retry-After is estimated from.
_RECENT_TURNS = 20


class Turn:
    """One use of the model: reserved at once (or refused), then waited for, then done."""

    def __init__(self, gate: Gate, loop: asyncio.AbstractEventLoop) -> None:
        self._gate = gate
        self._loop = loop
        self._ready: asyncio.Future[None] = loop.create_future()
        self.started: float | None = None
        self.finished = False

    async def wait(self) -> None:
        """Wait until the model is ours. Cancelled while waiting, the place in line is freed."""
        try:
            await asyncio.shield(self._ready)
        except BaseException:
            self.done()
            raise
        self.started = time.perf_counter()

    def done(self) -> None:
        """End the turn (or give up the place in line); the next in line goes. Idempotent."""
        if not self.finished:
            self.finished = True
            self._gate._leave(self)

    def done_threadsafe(self) -> None:
        """:meth:`done`, from the worker thread that ran the model."""
        with contextlib.suppress(RuntimeError):  # a closed loop: the server has stopped
            self._loop.call_soon_threadsafe(self.done)


class Gate:
    """Lets one :class:`Turn` at a time use the model; at most ``queue_size`` wait."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._current: Turn | None = None
        self._line: deque[Turn] = deque()
        self._seconds: deque[float] = deque(maxlen=_RECENT_TURNS)

    @property
    def busy(self) -> bool:
        """Whether the model is in use (answering, or being loaded)."""
        return self._current is not None

    @property
    def queued(self) -> int:
        """Questions waiting for the model."""
        return len(self._line)

    def reserve(self) -> Turn:
        """A place in line, or :class:`QueueFull` (with the seconds to wait before retrying)."""
        if self._current is not None and len(self._line) >= self.queue_size:
            raise QueueFull(
                f"The model is answering and {len(self._line)} more question(s) wait, as many "
                "as the server allows (setting queue_size); try again later.",
                self.retry_after(),
            )
        turn = Turn(self, asyncio.get_running_loop())
        if self._current is None:
            self._current = turn
            turn._ready.set_result(None)
        else:
            self._line.append(turn)
        return turn

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the recent turns' mean, times those ahead."""
        mean = sum(self._seconds) / len(self._seconds) if self._seconds else 1.0
        return max(1, math.ceil(mean * (len(self._line) + 1)))

    def _leave(self, turn: Turn) -> None:
        if turn is self._current:
            if turn.started is not None:
                self._seconds.append(time.perf_counter() - turn.started)
            self._current = None
            while self._line:
                following = self._line.popleft()
                if not following._ready.cancelled():
                    self._current = following
                    following._ready.set_result(None)
                    break
        elif turn in self._line:
            self._line.remove(turn)
