"""Generate: autoregressive generation per variant, device and batch size: time to first token and decode
tokens/s, from whole `generate` calls each right after one of fp32's on the same prompts (`measure.generation`
stamps each token inside them). A variant without a KV-cache `generate` is skipped with the reason."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..core.cases import LM_SMOKE, PR_VARIANTS, TOUR_VARIANTS, Case
from ..core.kinds import BadOption, Kind, Page, Setting, register_kind
from ..core.metrics import GENERATE
from ..core.records import GenerateRecord
from ..core.registry import StageNotApplicable, generation_engine
from ..core.variants import BASELINE, VARIANTS, Built, Context, build
from ..measure.fields import identity
from ..measure.generation import cannot_generate, prompt_batch, summarize, timed_generate
from ..measure.memory import peak_memory
from ..measure.roofline import against_ceiling, decode_work, kv_element_bytes
from ..measure.memory import size_on_disk
from ..measure.pairing import Reference, Runner, alternate, note_pairing, own_runner
from ..report.throughput_pages import generate_charts, generate_section

GEN_WARMUP = 1
DEFAULT_PROMPT_LEN = 128


def generate_reference(ctx: Context, prompt: torch.Tensor, new_tokens: int) -> Reference:
    built = build(BASELINE, ctx)
    record = GenerateRecord(**identity(built, ctx), batch_size=prompt.shape[0], prompt_len=prompt.shape[1],
                            new_tokens=new_tokens)
    return Reference(record, lambda: build(BASELINE, ctx).model, (prompt, new_tokens))


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


def measure(built: Built, ctx: Context, reference: Reference, runner: Runner,
            options: dict[str, Any]) -> GenerateRecord:
    """The record, set against this machine's ceiling per decode step (roofline.py)."""
    record = generate_record(built, ctx, reference, options["rounds"], runner, options.get("loop", "genai"))
    work = decode_work(ctx.source.model.config, built.info.get("heads_per_layer"), record.batch_size,
                       record.prompt_len or reference.record.prompt_len, record.new_tokens or reference.inputs[1],
                       size_on_disk(built.path), kv_element_bytes(record.precision))
    against_ceiling(record, work, options.get("ceiling"), torch.get_num_threads())
    return record


def prompt(ctx: Context, batch_size: int, prompt_len: int | None, new_tokens: int) -> tuple[torch.Tensor, int]:
    """`batch_size` prompts of `prompt_len` tokens (default 128, shortened to fit a short-context model and the eval
    windows); a length the model cannot hold is one line naming the options to lower."""
    limit = ctx.source.model.config.n_positions
    if prompt_len is None:
        prompt_len = min(DEFAULT_PROMPT_LEN, limit - new_tokens, ctx.settings.seq_len)
    if prompt_len < 1 or prompt_len + new_tokens > limit:
        raise BadOption(f"--prompt-len {prompt_len} + --new-tokens {new_tokens} exceeds the model's {limit} "
                         "positions: lower one of them")
    return prompt_batch(ctx.eval.input_ids, batch_size, prompt_len), new_tokens


def reference_for(s: Setting) -> tuple[tuple, Any]:
    """fp32 on the run's prompts, keyed by the batch size (the case's `gen_batch_size`)."""
    batch_size = s.fixture("gen_batch_size")
    ids, new_tokens = prompt(s.ctx, batch_size, s.option("--prompt-len"), s.option("--new-tokens"))
    return (batch_size,), lambda: generate_reference(s.ctx, ids, new_tokens)


def options(case: Case, s: Setting) -> dict[str, Any]:
    return {"rounds": s.option("--gen-rounds"), "batch_size": s.fixture("gen_batch_size"),
            "ceiling": s.fixture("ceiling")}


def cases() -> list[Case]:
    return [Case(GENERATE, v, chain) for v, chain in VARIANTS.items()]


KIND = register_kind(Kind(GENERATE, GenerateRecord, cases, reference_for, measure,
                          Page(generate_section, generate_charts), smoke=LM_SMOKE,
                          tiers={"tour": TOUR_VARIANTS, "pr": PR_VARIANTS}, options=options))
