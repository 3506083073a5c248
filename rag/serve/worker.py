"""A synchronous iterator (an answer stream) run in a thread of its own, read from async code.

The model writes synchronously; the server must not block its event loop meanwhile. The
thread pulls items and hands them over; :meth:`Worker.stop` asks it to close the iterator
at its next item, which for an answer stream stops the model at its next token (closing
``RAG.ask_stream`` closes the model's own stream, see ``rag.generate``). The thread alone
touches the iterator: a generator cannot be closed from another thread while it runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
_Kind = Literal["item", "error", "end"]


class Worker(Generic[T]):
    """Iterates ``make()`` in a daemon thread; ``finished(stopped)`` is called there when it
    is done, ``stopped`` telling whether :meth:`stop` closed the iterator early."""

    def __init__(
        self, make: Callable[[], Iterator[T]], finished: Callable[[bool], None], name: str
    ) -> None:
        self._make = make
        self._finished = finished
        self._stop = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._items: asyncio.Queue[tuple[_Kind, object]] = asyncio.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the iterator at its next item (the model stops at its next token)."""
        self._stop.set()

    def _put(self, kind: _Kind, value: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: nobody reads any more
            self._stop.set()

    def _run(self) -> None:
        stopped = False
        try:
            iterator = self._make()
            try:
                for item in iterator:
                    if self._stop.is_set():
                        stopped = True
                        break
                    self._put("item", item)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            self._put("end", None)
        except BaseException as error:  # handed to the reader, which raises it
            self._put("error", error)
        finally:
            self._finished(stopped)

    async def items(self) -> AsyncIterator[T]:
        """The items as they come; the iterator's exception, if it raised one."""
        while True:
            kind, value = await self._items.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]  # an "item" is a T

    async def join(self) -> None:
        """Wait (without blocking the loop) until the thread has finished."""
        await asyncio.to_thread(self._thread.join)
