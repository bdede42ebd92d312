"""Progress of long work where the user looks. pytest captures tqdm and Trainer's bars, so inside `pytest bench/`
the bench sets a sink (`report_to`) that writes through pytest's terminal reporter: one line per stage of a build
and, for loops (training steps, perplexity windows, calibration), step i/N with the ETA, at most every EVERY
seconds. Without a sink (the CLI, a notebook) loops keep their tqdm bars.

`BUILDS` keeps what each build cost (seconds, or None when it came from the cache) for the end-of-session table.
A case run in a child process (isolation.py) sends its lines home as they are said (`relay`) and its tables with its
result (`tables`, `absorb`), so a llama.cpp build is no quieter than a torch one; one that dies keeps its row,
marked "crashed", with the parent's clock on it.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
EVERY = 15.0  # seconds between two lines of one loop (--progress-every sets it; a child process gets the parent's)

_sink: Callable[[str], None] | None = None
BUILDS: dict[str, float | None] = {}  # "device/variant" -> build seconds (None: cached)
MEASURES: dict[str, float] = {}  # "device/variant" -> seconds measuring it (every kind)
CRASHED: set[str] = set()  # "device/variant" whose child process died: its row holds the parent's clock


@contextmanager
def report_to(sink: Callable[[str], None]) -> Iterator[None]:
    global _sink
    previous, _sink = _sink, sink
    try:
        yield
    finally:
        _sink = previous


def has_sink() -> bool:
    return _sink is not None


def say(line: str) -> None:
    """One line of progress: to the sink, else to stderr (the CLI's stdout stays its tables)."""
    relay(f"[gpt2compress] {line}")


def relay(text: str) -> None:
    """A line already said elsewhere (a child process's `say`), as it was said."""
    (_sink or (lambda line: print(line, file=sys.stderr, flush=True)))(text)


def _clock(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


class Steps:
    """Step i of N of `what`, said at the first and last step and at most every EVERY seconds between."""

    def __init__(self, what: str, total: int | None) -> None:
        self.what, self.total, self.start, self.last = what, total, time.monotonic(), 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if _sink is None or (now - self.last < EVERY and done not in (1, self.total)):
            return
        self.last, elapsed = now, now - self.start
        if self.total:
            eta = elapsed / done * (self.total - done)
            say(f"{self.what}: step {done}/{self.total}, {_clock(elapsed)} so far, ETA {_clock(eta)}")
        else:
            say(f"{self.what}: step {done}, {_clock(elapsed)} so far")


def track(items: Iterable[T], what: str, total: int | None = None, bar: bool = True) -> Iterator[T]:
    """`items`, with progress: lines to the sink when one is set, else a tqdm bar (`bar=False`: nothing)."""
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    if _sink is None:
        yield from (tqdm(items, desc=what, total=total, leave=False) if bar else items)
        return
    steps = Steps(what, total)
    for done, item in enumerate(items, 1):
        yield item
        steps.update(done)


def add_build(where: str, seconds: float | None) -> None:
    """Seconds spent building `where` (None: it came from the cache, unless something of it was built)."""
    if seconds is None:
        BUILDS.setdefault(where, None)
    else:
        BUILDS[where] = (BUILDS.get(where) or 0.0) + seconds


def tables() -> dict[str, dict]:
    return {"builds": dict(BUILDS), "measures": dict(MEASURES)}


def absorb(child: dict[str, dict]) -> None:
    """A child process's `tables()` into this process's: its builds and measures add to ours."""
    for where, seconds in child["builds"].items():
        add_build(where, seconds)
    for where, seconds in child["measures"].items():
        add_measure(where, seconds)


def add_measure(where: str, seconds: float) -> None:
    MEASURES[where] = MEASURES.get(where, 0.0) + seconds


def add_crashed(where: str, seconds: float) -> None:
    """A child that dies sends no tables home, so the parent's clock on it (build and measure together) fills the
    row, marked, rather than the case vanishing from the table."""
    CRASHED.add(where)
    add_measure(where, seconds)


@contextmanager
def measuring(where: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        add_measure(where, time.monotonic() - start)


def time_table() -> list[str]:
    """Per device/variant: what its build cost (or "cached") and what measuring it took."""
    rows = list(dict.fromkeys([*BUILDS, *MEASURES]))
    if not rows:
        return []
    width = max(len(r) for r in rows)
    return [f"{'device/variant':{width}}  {'build':>9}  {'measure':>9}"] + [
        f"{r:{width}}  {_build_cell(r):>9}  {_clock(MEASURES[r]) if r in MEASURES else '-':>9}" for r in rows]


def _build_cell(where: str) -> str:
    if where not in BUILDS:
        return "crashed" if where in CRASHED else "-"
    return "cached" if BUILDS[where] is None else _clock(BUILDS[where])
