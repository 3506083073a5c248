"""What a user sees while long work runs: progress bars and timed status lines.

Everything goes to stderr, so stdout stays clean for the answers and JSON the CLI
prints. rich is imported inside the functions: loading a model or an embedder
should not pay for it when nothing is shown.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def progress_bar(console: Console, enabled: bool) -> Progress:
    """A bar in items (done of total, time elapsed and left); hidden when not ``enabled``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


@contextlib.contextmanager
def byte_progress(label: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A bar in bytes (size, speed, time left); yields a function to advance it."""
    if not enabled:
        yield lambda _n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr_console(), transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def timed_status(label: str, enabled: bool, console: Console | None = None) -> Iterator[None]:
    """A spinner line with the seconds elapsed, then one line saying it is done.

    For steps that report no progress of their own (an export, a conversion), so the
    user sees that work goes on and how long it took.
    """
    if not enabled:
        yield
        return
    console = console or stderr_console()
    started = time.perf_counter()
    done = threading.Event()
    with console.status(f"{label}…") as status:

        def tick() -> None:
            while not done.wait(1.0):
                status.update(f"{label}… {time.perf_counter() - started:.0f} s")

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()
    console.print(f"{label}: done in {time.perf_counter() - started:.1f} s")
