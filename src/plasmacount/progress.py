"""Progress of long steps: a bar on a terminal, periodic log lines elsewhere.

Library functions take a plain callback `progress(done, total)`; the command line decides how
to show it, so the library never writes to the terminal itself.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

logger = logging.getLogger("plasmacount")


class Progress:
    """A callable `progress(done, total)` that draws a bar on a TTY or logs every `interval` seconds."""

    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool = True, interval: float = 10.0):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.on_terminal = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval
        self._last = 0.0
        self._started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        finished = total > 0 and done >= total
        if self.on_terminal:
            if now - self._last < 0.1 and not finished:
                return
            fraction = done / total if total else 0.0
            width = 30
            filled = int(width * fraction)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {100 * fraction:5.1f}%")
            if finished:
                self.stream.write(f" ({now - self._started:.1f} s)\n")
            self.stream.flush()
        elif now - self._last >= self.interval or finished:
            logger.info("%s: %d of %d done", self.label, done, total)
        self._last = now


# Stage timings: library code marks its stages with `with stage("name"):`; nothing is shown
# unless the command line asked for timings (`--verbose`) and is recording them.
_timings: ContextVar[list | None] = ContextVar("plasmacount_stage_timings", default=None)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time a stage of work into the current recording, if there is one."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings = _timings.get()
        if timings is not None:
            timings.append((name, time.perf_counter() - started))


@contextmanager
def recording_stages() -> Iterator[list[tuple[str, float]]]:
    """Collect (stage, seconds) of every `stage` entered inside; repeated stages are summed by `summarise`."""
    timings: list[tuple[str, float]] = []
    token = _timings.set(timings)
    try:
        yield timings
    finally:
        _timings.reset(token)


def summarise(timings: list[tuple[str, float]]) -> list[tuple[str, float, int]]:
    """(stage, total seconds, times entered), in order of first entry."""
    totals: dict[str, list] = {}
    for name, seconds in timings:
        entry = totals.setdefault(name, [0.0, 0])
        entry[0] += seconds
        entry[1] += 1
    return [(name, total, count) for name, (total, count) in totals.items()]
