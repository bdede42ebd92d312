"""How a case's rounds are timed against its kind's reference, and where a case is measured.

Timing alternates: the reference runs just before each of the variant's rounds (ABAB…), and
`metrics.ratio` takes the median of the per-pair ratios, so load that comes and goes during a
run (a neighbour on a CI runner, a compile job) slows both sides of a pair and cancels. Forward,
generate and classify latency pair this way. Training does not: one round is several optimizer
steps (minutes at 124M), two models with two optimizers in memory would be what the peak-memory
metric measures, and doubling seed 003's run time buys a correction it barely needs (its ratios
are ×2-class effects); its ratios divide by the reference measured once in the session.

The timed loop is a `Runner` so the bench hands the rounds to pytest-benchmark (which then owns
the variant's statistics) while a child process, or a script, uses `own_runner`. What a case's
record holds and how it is measured is its kind's (`core.kinds`, `gpt2compress/kinds/`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple

from ..core.kinds import kind_of
from ..core.progress import measuring
from ..core.records import Record
from ..core.variants import Built, Context
from .memory import release_memory
from .timing import forward_callable, settle_threads

ROUNDS, WARMUP = 20, 3  # forward: timed rounds (each paired with one of the reference's) and warm-up rounds

Runner = Callable[[Callable[[], Any], Callable[[], Any], int, int], list[float]]


def own_runner(target: Callable[[], Any], setup: Callable[[], Any], rounds: int, warmup: int) -> list[float]:
    """pytest-benchmark's `pedantic(target, setup=, rounds=, warmup_rounds=)` outside pytest: seconds per timed
    round of `target`, with `setup` run untimed before every round, warm-up rounds included."""
    times = []
    for i in range(warmup + rounds):
        setup()
        start = time.perf_counter()
        target()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
    return times


class Paired(NamedTuple):
    times: list[float]  # seconds of each timed round of the target
    reference: list[float]  # seconds of the reference call just before each
    unsettled: int  # timed rounds in which a call started while the other side's threads still ran


def alternate(target: Callable[[], Any], reference: Callable[[], Any], rounds: int, warmup: int,
              runner: Runner = own_runner) -> Paired:
    """ABAB…: each timed round of `target` with the `reference` call that ran just before it. Each call starts
    once the other's threads in this process are asleep (`settle_threads`), so it does not share the cores with
    the other runtime's spinning pool (an engine in a child process, openvino-genai's, is not watched); a round
    in which that wait gave up is counted."""
    reference_s: list[float] = []
    settled: list[bool] = []

    def before() -> None:
        calm_before = settle_threads()
        start = time.perf_counter()
        reference()
        reference_s.append(time.perf_counter() - start)
        calm_after = settle_threads()
        settled.append(calm_before and calm_after)

    times = runner(target, before, rounds, warmup)
    return Paired(times, reference_s[warmup:], settled[warmup:].count(False))


def note_pairing(record: Record, paired: Paired) -> None:
    """Counts the unsettled rounds; when they are most of them, the median pair is not a clean one: a problem."""
    record.unsettled_rounds = paired.unsettled
    if paired.unsettled * 2 > len(paired.times):
        record.problems.append(f"{paired.unsettled} of {len(paired.times)} timed rounds started while another thread "
                               "of this process still ran (settle_threads gave up waiting): the variant and its "
                               "reference shared the cores with it")


def ms(seconds: list[float]) -> list[float]:
    return [s * 1e3 for s in seconds]


@dataclass(frozen=True)
class Reference:
    """One kind's reference on one device and input shape, measured once per session and never changed:
    its record holds the values non-timing ratios divide by; `loaded()` gives its model for the rounds that
    alternate with a variant's (loaded per use, so no variant's peak memory includes it)."""

    record: Record
    load: Callable[[], Any]
    inputs: Any = None  # the timed input: a forward batch, a generate prompt, a classify batch

    @contextlib.contextmanager
    def loaded(self) -> Iterator[Any]:
        model = self.load()
        try:
            yield model
        finally:
            del model
            release_memory()


def paired_latency(record: Record, model: Any, reference: Reference, inputs: Any, rounds: int, warmup: int,
                   runner: Runner) -> Paired:
    """The variant's latency rounds, each paired with the reference's call on the same input, into `record`."""
    with reference.loaded() as base:
        paired = alternate(forward_callable(model, inputs), forward_callable(base, inputs), rounds, warmup, runner)
    record.latency_samples_ms = ms(paired.times)
    note_pairing(record, paired)
    return paired


def measure_case(kind: str, built: Built, ctx: Context, reference: Reference, runner: Runner,
                 options: dict[str, Any]) -> Record:
    """The one entry point, in the session's process or in an isolated child: the case's kind measures it."""
    return kind_of(kind).measure(built, ctx, reference, runner, options)


def measure_in_child(kind: str, variant: str, chain: tuple[str, ...], spec: Any, reference: Record, inputs: Any,
                     options: dict[str, Any]) -> tuple[Record, list[float]]:
    """`measure_case` in a fresh process (isolation.py): the context from its spec, the variant from the build
    cache (or built here), the reference's model reloaded here; returns the record and the timed rounds."""
    from ..core.variants import build

    ctx = spec.open()
    here = Reference(reference, lambda: build(reference.variant, ctx, tuple(reference.chain)).model, inputs)
    rounds: list[float] = []

    def runner(target: Callable[[], Any], setup: Callable[[], Any], n: int, warmup: int) -> list[float]:
        rounds.extend(own_runner(target, setup, n, warmup))
        return rounds

    built = build(variant, ctx, chain)
    with measuring(f"{ctx.device}/{variant}"):  # the time table's row: it comes home with the result
        return measure_case(kind, built, ctx, here, runner, options), rounds
