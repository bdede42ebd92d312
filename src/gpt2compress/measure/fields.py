"""The parts of a record every kind fills alike: which code built the variant, its footprint, its perplexity,
its forward memory, and (on CUDA) GPU time and energy."""

from __future__ import annotations

import statistics
from typing import Any, Callable

from ..core.fingerprint import project_commit
from ..core.variants import Built, Context
from .memory import peak_memory, release_memory, size_on_disk
from .memory_probe import fresh_process_memory
from .pairing import ROUNDS, Reference
from .perplexity import perplexity
from .scores import reused_or_scored
from .timing import Batch, Inputs, cuda_event_ms, forward_callable, latency_stats, shape_of, time_calls


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
    if ctx.settings.eval_protocol == "documents":
        return document_quality(built, model, ctx)

    def score() -> dict[str, Any]:
        with peak_memory(ctx.device) as mem:
            ppl = perplexity(model, ctx.eval, batch_size)
        return {"perplexity": ppl, "peak_memory_eval_bytes": mem.peak if ctx.device == "cuda" else None}

    return {**reused_or_scored(built, ctx.eval.key, ctx.device, score),
            "perplexity_meaningful": ctx.source.perplexity_meaningful, "eval_windows": len(ctx.eval),
            "eval_tokens": ctx.eval.n_tokens, "eval_protocol": "windows"}


def document_quality(built: Built, model: Any, ctx: Context) -> dict[str, Any]:
    """`--eval-protocol documents`: lm-eval's wikitext protocol on the eval text's articles (the first
    `--eval-samples` of them): `perplexity` is its word perplexity, beside byte perplexity and bits per byte."""
    from ..build.data import tokenizer_key
    from .documents import documents, score

    pages = documents(ctx.corpus.eval_text)[:ctx.settings.eval_samples]
    limit = ctx.source.model.config.n_positions
    key = f"documents:{ctx.corpus.cache_key}:{tokenizer_key(ctx.source.tokenizer)}:{len(pages)}:{limit}"

    def scored() -> dict[str, Any]:
        result = score(model, ctx.source.tokenizer, pages, limit)
        return {"perplexity": result.word_perplexity, "byte_perplexity": result.byte_perplexity,
                "bits_per_byte": result.bits_per_byte, "eval_tokens": result.words, "peak_memory_eval_bytes": None}

    return {**reused_or_scored(built, key, ctx.device, scored), "perplexity_meaningful":
            ctx.source.perplexity_meaningful, "eval_windows": len(pages), "eval_protocol": "documents"}


QUALITY_FIELDS = ("perplexity", "perplexity_meaningful", "eval_windows", "eval_tokens", "eval_protocol",
                  "byte_perplexity", "bits_per_byte", "peak_memory_eval_bytes",
                  "scores_reused", "hellaswag_acc", "hellaswag_acc_norm", "hellaswag_acc_stderr",
                  "hellaswag_acc_norm_stderr", "hellaswag_examples")


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


def speed(model: Any, batch: Batch, device: str, rounds: int = 10) -> dict[str, Any]:
    """For scripts (`gpt2compress pipeline`): latency of the variant alone on `batch`, no reference."""
    with peak_memory(device) as mem:
        times = time_calls(forward_callable(model, batch), rounds=rounds)
    return {**latency_stats(times), "peak_memory_forward_bytes": mem.peak, "batch_shape": shape_of(batch)}

