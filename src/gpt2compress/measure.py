"""One variant's measurements in one dict: what the CLI prints and the bench records.

Latency here is for scripts (`time_calls`); the bench suite times with
pytest-benchmark and calls `footprint`/`quality` for everything else.
"""

from __future__ import annotations

from typing import Any

from .fingerprint import project_commit
from .metrics import fixed_batch, forward_callable, latency_stats, peak_memory, perplexity, size_on_disk, time_calls
from .variants import Built, Context


def footprint(built: Built) -> dict[str, Any]:
    return {
        "size_on_disk_bytes": size_on_disk(built.path),
        "parameters": built.info["parameters"],
        "heads_per_layer": built.info["heads_per_layer"],
        "precision": built.info["precision"],
        "runtime": built.runtime,
        "chain": list(built.chain),
        "stage_notes": built.info.get("stage_notes", {}),
        "build": provenance(built),
    }


def provenance(built: Built) -> dict[str, Any]:
    """Which code built the measured model (key, code fingerprints, library versions, git commit), and which
    commit measured it: a warm cache can hold builds of an older commit whose code fingerprint still matches."""
    return {**built.info.get("build", {}), "measured_with_commit": project_commit()}


def quality(built: Built, ctx: Context, batch_size: int = 8) -> dict[str, Any]:
    """Perplexity on the eval windows; flagged when the weights are random (`gpt2-random`)."""
    with peak_memory(ctx.device) as mem:
        ppl = perplexity(built.model, ctx.eval, batch_size)
    return {
        "perplexity": ppl,
        "perplexity_meaningful": ctx.source.perplexity_meaningful,
        "eval_windows": len(ctx.eval),
        "eval_tokens": ctx.eval.n_tokens,
        "peak_memory_eval_bytes": mem.peak,
    }


def speed(built: Built, ctx: Context, batch_size: int = 1, rounds: int = 10) -> dict[str, Any]:
    batch = fixed_batch(ctx.eval, batch_size, ctx.settings.seq_len)
    forward = forward_callable(built.model, batch)
    with peak_memory(ctx.device) as mem:
        times = time_calls(forward, rounds=rounds)
    stats = latency_stats(times)
    return {**stats, "tokens_per_s": batch["input_ids"].numel() / (stats["mean_ms"] / 1e3),
            "peak_memory_forward_bytes": mem.peak, "batch_shape": list(batch["input_ids"].shape)}
