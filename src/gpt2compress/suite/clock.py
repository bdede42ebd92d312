"""The timer pytest-benchmark times every bench round with, given through its public marker
(`@pytest.mark.benchmark(timer=CLOCK)`, which `plugin` puts on each bench test).

It is `time.perf_counter`, and it also hands back what it timed: pytest-benchmark calls its timer once before and
once after each round, so the clock sees each round's duration (`recording`) without reading the fixture's
private statistics. Rounds timed elsewhere (in an isolated child, train's optimizer steps inside its loop) go into
the row through `benchmark.pedantic` itself: while `replaying(seconds)`, each round the fixture times reads the next
of those durations instead of the clock.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator


class BenchClock:
    def __init__(self) -> None:
        self._start: float | None = None  # set by the call that opens a round, cleared by the one that closes it
        self._replay: list[float] | None = None
        self._now = 0.0
        self._timed: list[float] | None = None

    def __call__(self) -> float:
        if self._replay is not None:
            now = self._now if self._start is None else self._start + self._replay.pop(0)
        else:
            now = time.perf_counter()
        if self._start is None:
            self._start = now
        else:
            if self._timed is not None:
                self._timed.append(now - self._start)
            self._start, self._now = None, now
        return now

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[float]]:
        """The seconds of each round timed inside the block, warm-up rounds included, in order."""
        self._timed, self._start = [], None
        try:
            yield self._timed
        finally:
            self._timed = None

    @contextlib.contextmanager
    def replaying(self, seconds: list[float]) -> Iterator[None]:
        """Each round timed inside the block takes the next of `seconds`."""
        self._replay, self._start = list(seconds), None
        try:
            yield
        finally:
            self._replay = None


CLOCK = BenchClock()
