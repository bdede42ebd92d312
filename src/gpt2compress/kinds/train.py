"""Train (seed 003, and seed 001's LoRA): tokens/s of full optimizer steps per setup and device, peak memory, and
proof that the measured steps learn (the loss falls), since a benchmark of a broken step is worthless. Its rounds
are the optimizer steps, timed inside `measure.training.train_steps`; its ratios divide by the fp32 setup measured
once in the session (not paired: `measure.pairing` says why)."""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any, Callable

from ..build.data import packed_windows
from ..core.cases import Case
from ..core.kinds import Kind, Page, Setting, register_kind
from ..core.metrics import TRAIN
from ..core.records import TrainRecord
from ..core.variants import BASELINE, VARIANTS, Built, Context, build
from ..measure.fields import identity
from ..measure.pairing import Reference, Runner, ms
from ..measure.training import TrainSetup, train_steps
from ..report.throughput_pages import train_charts, train_section

# name: (variant whose model is trained, how it is trained) -- seed 003's setups and seed 001's LoRA
TRAIN_SETUPS: dict[str, tuple[str, TrainSetup]] = {
    BASELINE: (BASELINE, TrainSetup()),
    "fp32-eager": (BASELINE, TrainSetup(attention="eager")),
    "bf16-autocast": (BASELINE, TrainSetup(precision="bf16")),
    "fp16-autocast": (BASELINE, TrainSetup(precision="fp16")),
    "distilled-lora": ("distilled", TrainSetup(lora_rank=8)),  # seed 001: LoRA on the distilled student
}


def train_record(built: Built, ctx: Context, variant: str, setup: TrainSetup,
                 reference: Reference | None) -> TrainRecord:
    """Optimizer steps of `setup` on the built model (`reference` None: this is the reference, measured once)."""
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


def measure(built: Built, ctx: Context, reference: Reference, runner: Runner, options: dict[str, Any]) -> TrainRecord:
    return train_record(built, ctx, options["variant"], options["setup"], reference)


def setup_of(case: Case, option: Callable[[str], Any]) -> TrainSetup:
    """The case's setup at the run's size (`--train-tokens`, `--train-micro-batch`, `--train-steps`)."""
    return dataclasses.replace(case.setup, tokens_per_step=option("--train-tokens"),
                               micro_batch=option("--train-micro-batch"), steps=option("--train-steps"))


def reference_for(s: Setting) -> tuple[tuple, Any]:
    """The fp32 setup, trained once per device; its row is that measurement (`reuse`), not a second one."""
    case = next(c for c in cases() if c.variant == BASELINE)

    def measure_it() -> Reference:
        built = build(case.trains, s.ctx, case.chain)
        return Reference(train_record(built, s.ctx, case.variant, setup_of(case, s.option), None), lambda: None)

    return (), measure_it


def options(case: Case, s: Setting) -> dict[str, Any]:
    return {"variant": case.variant, "setup": setup_of(case, s.option)}


def step_rounds(record: TrainRecord) -> list[float]:
    """Its rounds for pytest-benchmark: the timed optimizer steps, in seconds."""
    return [step / 1e3 for step in record.step_samples_ms]


def cases() -> list[Case]:
    return [Case(TRAIN, name, VARIANTS[v], trains=v, setup=setup) for name, (v, setup) in TRAIN_SETUPS.items()]


KIND = register_kind(Kind(TRAIN, TrainRecord, cases, reference_for, measure,
                          Page(train_section, train_charts), smoke=("bf16-autocast", "fp16-autocast"),
                          tiers={"tour": ("bf16-autocast",)}, options=options, own_rounds=step_rounds))
