"""How each kind is measured: a built variant in, its typed record out, timed against its kind's reference.

Timing alternates: the reference runs just before each of the variant's rounds (ABAB…), and
`catalog.ratio` takes the median of the per-pair ratios, so load that comes and goes during a
run (a neighbour on a CI runner, a compile job) slows both sides of a pair and cancels. Forward,
generate and classify latency pair this way. Training does not: one round is several optimizer
steps (minutes at 124M), two models with two optimizers in memory would be what the peak-memory
metric measures, and doubling seed 003's run time buys a correction it barely needs (its ratios
are ×2-class effects); its ratios divide by the reference measured once in the session.

The timed loop is a `Runner` so the bench hands the rounds to pytest-benchmark (which then owns
the variant's statistics) while a child process, or a script, uses `own_runner`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple

import torch

from ..core.metrics import reference_of
from ..core.fingerprint import project_commit
from ..core.registry import generation_engine, scoring_engine
from .generation import cannot_generate, summarize, timed_generate
from .memory_probe import fresh_process_memory
from .timing import (Batch, Inputs, cuda_event_ms, forward_callable, latency_stats, settle_threads, shape_of,
                     time_calls, unsynchronized_timer)
from .memory import peak_memory, release_memory, size_on_disk
from .perplexity import perplexity
from ..core.progress import measuring
from ..core.records import ClassifyRecord, ForwardRecord, GenerateRecord, Record, TrainRecord
from ..core.registry import StageNotApplicable
from .scores import reused_or_scored
from ..core.variants import Built, Context

ROUNDS, WARMUP = 20, 3  # forward: timed rounds (each paired with one of the reference's) and warm-up rounds
GEN_WARMUP = 1
CLASSIFY_ROUNDS, CLASSIFY_WARMUP = 10, 2

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


def provenance(built: Built) -> dict[str, Any]:
    """Which code built the measured model (key, code fingerprints, library versions, git commit), and which
    commit measured it: a warm cache can hold builds of an older commit whose code fingerprint still matches."""
    return {**built.info.get("build", {}), "measured_with_commit": project_commit()}


def identity(built: Built, ctx: Context, variant: str | None = None) -> dict[str, Any]:
    return {"variant": variant or built.name, "device": ctx.device, "model": ctx.model_name,
            "chain": list(built.chain), "precision": built.info["precision"], "runtime": built.runtime,
            "build": provenance(built)}


def footprint(built: Built) -> dict[str, Any]:
    return {"size_on_disk_bytes": size_on_disk(built.path), "parameters": built.info["parameters"],
            "heads_per_layer": built.info["heads_per_layer"], "stage_notes": built.info.get("stage_notes", {})}


def quality(built: Built, model: Any, ctx: Context, batch_size: int = 8) -> dict[str, Any]:
    """Perplexity of `model` (how `built` is scored) on the eval windows, reused while nothing that makes it
    changed (scores.py); flagged when the weights are random (`gpt2-random`). The pass's peak memory on CUDA
    only: on CPU this process's RSS is the whole session's (memory_probe.py)."""
    def score() -> dict[str, Any]:
        with peak_memory(ctx.device) as mem:
            ppl = perplexity(model, ctx.eval, batch_size)
        return {"perplexity": ppl, "peak_memory_eval_bytes": mem.peak if ctx.device == "cuda" else None}

    return {**reused_or_scored(built, ctx.eval.key, ctx.device, score),
            "perplexity_meaningful": ctx.source.perplexity_meaningful, "eval_windows": len(ctx.eval),
            "eval_tokens": ctx.eval.n_tokens}


QUALITY_FIELDS = ("perplexity", "perplexity_meaningful", "eval_windows", "eval_tokens", "peak_memory_eval_bytes",
                  "scores_reused", "hellaswag_acc", "hellaswag_acc_norm", "hellaswag_examples")


def measured_once(reference: Reference, fields: tuple[str, ...]) -> dict[str, Any]:
    """The reference's own deterministic scores (perplexity, accuracy): its case reuses them, not a second pass."""
    return {name: getattr(reference.record, name) for name in fields}


def gpu_extras(forward: Callable[[], Any], batch_size: int) -> dict[str, Any]:
    """CUDA only: the GPU's own time per call (guards the timer) and, with a power sensor, energy per sample."""
    from .energy import energy_per_sample, gpu_power_source

    gpu_ms = cuda_event_ms(forward, rounds=ROUNDS // 2)
    extras = {"gpu_event_median_ms": statistics.median(gpu_ms), "gpu_event_min_ms": min(gpu_ms)}
    power = gpu_power_source("cuda")
    if power is not None:  # absent, not zero, without a readable sensor
        extras.update(energy_per_sample(forward, power, samples_per_call=batch_size))
    return extras


def forward_memory(built: Built, inputs: Inputs, forward: Callable[[], Any], device: str,
                   warmup: int, probe: bool = True) -> dict[str, Any]:
    """The variant's own forward memory, from its warm-up calls: on CUDA the allocator's peak here (the
    reference is loaded only while paired with it); on CPU a fresh process's (`memory_probe`: this process's RSS
    holds the whole session)."""
    release_memory()  # what a build in this process freed is not this variant's peak
    if device != "cuda":
        time_calls(forward, rounds=0, warmup=warmup)
        if not probe:
            return {"missing": {"peak_memory": "not measured: --no-memory-probe turns the fresh-process probe off"}}
        return fresh_process_memory(built, inputs, warmup)
    with peak_memory(device) as mem:
        time_calls(forward, rounds=0, warmup=warmup)
    return {"peak_memory_forward_bytes": mem.peak, "peak_memory_reserved_bytes": mem.reserved,
            "peak_rss_forward_bytes": mem.rss_peak}


def _no_energy(record: ForwardRecord) -> None:
    if record.energy_per_sample_mj is None:
        record.missing["energy_per_sample"] = ("no GPU power sensor readable (NVML or nvidia-smi)"
                                               if record.device == "cuda" else "energy is measured on CUDA GPUs only")


def forward_reference(ctx: Context, inputs: Inputs, hellaswag: list | None = None, warmup: int = WARMUP,
                      probe: bool = True) -> Reference:
    """fp32 on this device and batch shape: footprint, perplexity (and HellaSwag), peak memory, GPU energy."""
    from ..core.variants import build

    name = reference_of("forward")
    built = build(name, ctx)
    record = ForwardRecord(**identity(built, ctx), **footprint(built), **quality(built, built.model, ctx),
                           **_hellaswag(built.model, ctx, hellaswag), batch_shape=shape_of(inputs))
    forward = forward_callable(built.model, inputs)
    record = dataclasses.replace(record, **forward_memory(built, inputs, forward, ctx.device, warmup, probe))
    if ctx.device == "cuda":
        record = dataclasses.replace(record, **gpu_extras(forward, record.batch_shape[0]))
    return Reference(record, lambda: build(name, ctx).model, inputs)


def _hellaswag(model: Any, ctx: Context, examples: list | None) -> dict[str, Any]:
    if not examples:
        return {}
    from .hellaswag import evaluate

    return evaluate(model, ctx.source.tokenizer, examples, ctx.source.model.config.n_positions)


def forward_record(built: Built, ctx: Context, reference: Reference, runner: Runner = own_runner,
                   hellaswag: list | None = None, rounds: int = ROUNDS, warmup: int = WARMUP,
                   probe: bool = True) -> ForwardRecord:
    """Footprint, perplexity, peak memory (the variant alone), then latency in rounds paired with the reference's.
    An OpenVINO LM is scored on its stateless IR (`engines.scoring_engine`)."""
    inputs = reference.inputs
    model = scoring_engine(built, inputs)
    forward = forward_callable(model, inputs)
    memory = forward_memory(built, inputs, forward, ctx.device, warmup, probe)
    if built.name == reference.record.variant:  # deterministic: the reference's own values, measured once
        scores = measured_once(reference, QUALITY_FIELDS)
    else:
        scores = {**quality(built, model, ctx), **_hellaswag(model, ctx, hellaswag)}
    record = ForwardRecord(**identity(built, ctx), **footprint(built), **scores,
                           batch_shape=shape_of(inputs), **memory)
    paired = paired_latency(record, model, reference, inputs, rounds, warmup, runner)
    if ctx.device == "cuda":
        record = dataclasses.replace(record, **gpu_extras(forward, record.batch_shape[0]))
        timer = unsynchronized_timer(min(paired.times) * 1e3, record.gpu_event_min_ms)
        record.problems += [timer] if timer else []
    _no_energy(record)
    return record.against(dataclasses.replace(reference.record, latency_samples_ms=ms(paired.reference)))


def paired_latency(record: Record, model: Any, reference: Reference, inputs: Any, rounds: int, warmup: int,
                   runner: Runner) -> Paired:
    """The variant's latency rounds, each paired with the reference's call on the same input, into `record`."""
    with reference.loaded() as base:
        paired = alternate(forward_callable(model, inputs), forward_callable(base, inputs), rounds, warmup, runner)
    record.latency_samples_ms = ms(paired.times)
    note_pairing(record, paired)
    return paired


def generate_reference(ctx: Context, prompt: torch.Tensor, new_tokens: int) -> Reference:
    from ..core.variants import build

    name = reference_of("generate")
    built = build(name, ctx)
    record = GenerateRecord(**identity(built, ctx), batch_size=prompt.shape[0], prompt_len=prompt.shape[1],
                            new_tokens=new_tokens)
    return Reference(record, lambda: build(name, ctx).model, (prompt, new_tokens))


def _generate_fields(timings: list) -> dict[str, Any]:
    return {**summarize(timings), "decode_tokens_per_s_samples": [t.decode_tokens_per_s for t in timings]}


def generate_record(built: Built, ctx: Context, reference: Reference, rounds: int,
                    runner: Runner = own_runner, loop: str = "genai") -> GenerateRecord:
    """A warm-up `generate` alone (its peak memory), then `rounds` generates each right after the reference's."""
    prompt, new_tokens = reference.inputs
    engine = generation_engine(built, loop=loop)
    reason = cannot_generate(engine, prompt.shape[0])
    if reason:
        raise StageNotApplicable(reason)
    with peak_memory(ctx.device) as mem:
        timed_generate(engine, prompt, new_tokens)
    timings, base_timings = [], []
    with reference.loaded() as base:
        paired = alternate(lambda: timings.append(timed_generate(engine, prompt, new_tokens)),
                           lambda: base_timings.append(timed_generate(base, prompt, new_tokens)), rounds, GEN_WARMUP,
                           runner)
    timings, base_timings = timings[GEN_WARMUP:], base_timings[GEN_WARMUP:]
    record = GenerateRecord(**{**identity(built, ctx), "runtime": getattr(engine, "runtime", built.runtime)},
                            **_generate_fields(timings), engine_restarts=getattr(engine, "restarts", 0),
                            peak_memory_bytes=mem.peak if ctx.device == "cuda" else None,  # CPU: the session's RSS
                            peak_memory_reserved_bytes=mem.reserved)
    note_pairing(record, paired)
    return record.against(dataclasses.replace(reference.record, **_generate_fields(base_timings)))


def train_record(built: Built, ctx: Context, variant: str, setup: Any, reference: Reference | None) -> TrainRecord:
    """Optimizer steps of `setup` on the built model (`reference` None: this is the reference, measured once).
    Its rounds are the timed optimizer steps (`step_samples_ms`), timed inside `train_steps`."""
    from ..build.data import packed_windows
    from .training import train_steps

    windows = packed_windows(ctx.corpus, ctx.source.tokenizer, ctx.settings.seq_len)
    result = train_steps(built.model, windows, setup)
    record = TrainRecord(
        **{**identity(built, ctx, variant), "precision": setup.precision}, trained_variant=built.name,
        attention=setup.attention, tokens_per_step=result.tokens_per_step, accumulation=result.accumulation,
        micro_batch=setup.micro_batch, steps=setup.steps, train_tokens_per_s=result.tokens_per_s,
        step_ms=statistics.median(result.step_s) * 1e3, step_samples_ms=ms(result.step_s), losses=result.losses,
        peak_memory_train_bytes=result.peak_memory_bytes, peak_memory_reserved_bytes=result.peak_memory_reserved_bytes)
    if not result.learned:
        record.problems.append(f"the loss did not fall over the measured steps: {result.losses}")
    return record.against(reference.record if reference else record)


def classify_reference(cctx: Any) -> Reference:
    """The fp32 classifier: accuracy and F1 on the eval split, size; timed on one right-padded batch."""
    from .classify import CLASSIFY_VARIANTS, evaluate
    from ..core.variants import build

    name = reference_of("classify")
    built = build(name, cctx, CLASSIFY_VARIANTS[name])
    batch = next(cctx.eval.batches(CLASSIFY_BATCH))
    record = ClassifyRecord(**identity(built, cctx), **footprint(built), **_classify_fields(cctx, batch),
                            **evaluate(built.model, cctx.eval, len(cctx.news.classes)))
    return Reference(record, lambda: build(name, cctx, CLASSIFY_VARIANTS[name]).model, batch)


CLASSIFY_BATCH = 16
CLASSIFY_SCORES = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "confusion_matrix", "eval_rows")


def _classify_fields(cctx: Any, batch: dict) -> dict[str, Any]:
    return {"dataset": cctx.news.name, "classes": list(cctx.news.classes), "train_rows": len(cctx.train),
            "seq_len": cctx.settings.seq_len, "batch_size": batch["input_ids"].shape[0]}


def classify_record(built: Built, cctx: Any, reference: Reference, runner: Runner = own_runner) -> ClassifyRecord:
    from .classify import evaluate

    batch = reference.inputs
    if built.name == reference.record.variant:
        scores = measured_once(reference, CLASSIFY_SCORES)
    else:
        scores = evaluate(built.model, cctx.eval, len(cctx.news.classes))
    record = ClassifyRecord(**identity(built, cctx), **footprint(built), **_classify_fields(cctx, batch), **scores)
    paired = paired_latency(record, built.model, reference, batch, CLASSIFY_ROUNDS, CLASSIFY_WARMUP, runner)
    return record.against(dataclasses.replace(reference.record, latency_samples_ms=ms(paired.reference)))


def speed(model: Any, batch: Batch, device: str, rounds: int = 10) -> dict[str, Any]:
    """For scripts (`gpt2compress pipeline`): latency of the variant alone on `batch`, no reference."""
    with peak_memory(device) as mem:
        times = time_calls(forward_callable(model, batch), rounds=rounds)
    return {**latency_stats(times), "peak_memory_forward_bytes": mem.peak, "batch_shape": shape_of(batch)}


def measure_case(kind: str, built: Built, ctx: Context, reference: Reference, runner: Runner,
                 options: dict[str, Any]) -> Record:
    """The one entry point per kind, in the session's process or in an isolated child."""
    if kind == "forward":
        record = forward_record(built, ctx, reference, runner, options.get("hellaswag"),
                                options.get("rounds", ROUNDS), options.get("warmup", WARMUP),
                                options.get("memory_probe", True))
        if options.get("profile"):
            from .profiling import profile_forward

            try:
                profile_forward(options["profile"], f"{ctx.device}-{built.name}", built, reference.inputs)
            except Exception as exc:  # the measured row stays; the case fails, saying why
                record.problems.append(f"--traces failed after the measurement: {type(exc).__name__}: {exc}")
        return record
    if kind == "generate":
        return generate_record(built, ctx, reference, options["rounds"], runner, options.get("loop", "genai"))
    if kind == "train":
        return train_record(built, ctx, options["variant"], options["setup"], reference)
    return classify_record(built, ctx, reference, runner)


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
