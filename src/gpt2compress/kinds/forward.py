"""Forward: one forward pass per variant and device: perplexity, size, peak memory, GPU energy, and latency in
rounds that alternate with fp32's on the same batch."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..core.cases import LM_SMOKE, PR_VARIANTS, TOUR_VARIANTS, Case
from ..core.kinds import Kind, Page, Setting, register_kind
from ..core.metrics import FORWARD
from ..core.records import ForwardRecord
from ..core.registry import scoring_engine
from ..core.variants import BASELINE, VARIANTS, Built, Context, build
from ..measure.fields import QUALITY_FIELDS, footprint, forward_memory, gpu_extras, identity, measured_once, quality
from ..measure.roofline import against_ceiling, forward_work
from ..measure.pairing import ROUNDS, WARMUP, Reference, Runner, ms, own_runner, paired_latency
from ..measure.timing import Inputs, first_batch, forward_callable, shape_of, timed_inputs, unsynchronized_timer
from ..report.stage_charts import forward_charts, forward_section


def forward_reference(ctx: Context, inputs: Inputs, hellaswag: list | None = None, warmup: int = WARMUP,
                      probe: bool = True) -> Reference:
    """fp32 on this device and batch shape: footprint, perplexity (and HellaSwag), peak memory, GPU energy."""
    built = build(BASELINE, ctx)
    record = ForwardRecord(**identity(built, ctx), **footprint(built), **quality(built, built.model, ctx),
                           **_hellaswag(built.model, ctx, hellaswag), batch_shape=shape_of(inputs))
    forward = forward_callable(built.model, inputs)
    record = dataclasses.replace(record, **forward_memory(built, inputs, forward, ctx.device, warmup, probe))
    if ctx.device == "cuda":
        record = dataclasses.replace(record, **gpu_extras(forward, record.batch_shape[0]))
    return Reference(record, lambda: build(BASELINE, ctx).model, inputs)


def _hellaswag(model: Any, ctx: Context, examples: list | None) -> dict[str, Any]:
    if not examples:
        return {}
    from ..measure.hellaswag import evaluate

    return evaluate(model, ctx.source.tokenizer, examples, ctx.source.model.config.n_positions)


def _no_energy(record: ForwardRecord) -> None:
    if record.energy_per_sample_mj is None:
        record.missing["energy_per_sample"] = ("no GPU power sensor readable (NVML or nvidia-smi)"
                                               if record.device == "cuda" else "energy is measured on CUDA GPUs only")


def forward_record(built: Built, ctx: Context, reference: Reference, runner: Runner = own_runner,
                   hellaswag: list | None = None, rounds: int = ROUNDS, warmup: int = WARMUP,
                   probe: bool = True) -> ForwardRecord:
    """Footprint, perplexity, peak memory (the variant alone), then latency in rounds paired with the reference's.
    An OpenVINO LM is scored on its stateless IR (its runtime's scorer)."""
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


def measure(built: Built, ctx: Context, reference: Reference, runner: Runner, options: dict[str, Any]) -> ForwardRecord:
    """The case's record, then (`--traces DIR`) its torch.profiler trace: a trace that fails fails the case, saying
    why, and keeps the measured row."""
    record = forward_record(built, ctx, reference, runner, options.get("hellaswag"), options.get("rounds", ROUNDS),
                            options.get("warmup", WARMUP), options.get("memory_probe", True))
    work = (forward_work(ctx.source.model.config, record.heads_per_layer, record.batch_shape,
                         record.size_on_disk_bytes) if record.size_on_disk_bytes else None)
    against_ceiling(record, work, options.get("ceiling"), torch.get_num_threads())
    if options.get("profile"):
        from ..measure.profiling import profile_forward

        try:
            profile_forward(options["profile"], f"{ctx.device}-{built.name}", built, reference.inputs)
        except Exception as exc:
            record.problems.append(f"--traces failed after the measurement: {type(exc).__name__}: {exc}")
    return record


def reference_for(s: Setting) -> tuple[tuple, Any]:
    """fp32 on the run's batch (`--batch-size`, `--cycle-inputs`), keyed by its shape."""
    opt = s.option
    cycle = opt("--rounds") + opt("--warmup") if opt("--cycle-inputs") else 0
    inputs = timed_inputs(s.ctx.eval, opt("--batch-size"), s.ctx.settings.seq_len, cycle)
    key = (tuple(first_batch(inputs)["input_ids"].shape),)
    return key, lambda: forward_reference(s.ctx, inputs, s.fixture("hellaswag"), opt("--warmup"),
                                          not opt("--no-memory-probe"))


def options(case: Case, s: Setting) -> dict[str, Any]:
    opt = s.option
    return {"hellaswag": s.fixture("hellaswag"), "profile": opt("--traces"), "rounds": opt("--rounds"),
            "warmup": opt("--warmup"), "ceiling": s.fixture("ceiling")}


def cases() -> list[Case]:
    return [Case(FORWARD, v, chain) for v, chain in VARIANTS.items()]


KIND = register_kind(Kind(FORWARD, ForwardRecord, cases, reference_for, measure,
                          Page(forward_section, forward_charts), smoke=LM_SMOKE,
                          tiers={"tour": TOUR_VARIANTS, "pr": PR_VARIANTS}, options=options))
