"""One forward pass per variant and device: timed by pytest-benchmark, measured, gated by budgets."""

from __future__ import annotations

import statistics

import pytest

from gpt2compress.budgets import budget_for
from gpt2compress.measure import footprint, quality
from gpt2compress.metrics import forward_callable, latency_stats, peak_memory
from gpt2compress.profiling import profile_forward
from gpt2compress.variants import BASELINE

ROUNDS, WARMUP = 20, 3


def test_forward(benchmark, variant, device, built, session, baseline, batch, budgets, pytestconfig):
    forward = forward_callable(built.model, batch)
    benchmark.group = f"forward-{device}"
    with peak_memory(device) as mem:
        benchmark.pedantic(forward, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    profile_forward(pytestconfig.getoption("--profile"), f"{device}-{variant}", built, forward)

    samples = benchmark.stats.stats.data
    median_ms = statistics.median(samples) * 1e3
    if variant == BASELINE:
        session.baseline["median_ms"] = median_ms  # later ratios divide by the benchmark's own median
    info = benchmark.extra_info
    info.update(footprint(built))
    info.update(quality(built, session.ctx))
    info.update({f"latency_{k}": v for k, v in latency_stats(samples).items()})
    info["latency_samples_ms"] = [s * 1e3 for s in samples]  # raw rounds: `gpt2compress compare` tests on them
    info.update({
        "kind": "forward", "variant": variant, "device": device, "model": pytestconfig.getoption("--model"),
        "batch_shape": list(batch["input_ids"].shape), "median_ms": median_ms,
        "tokens_per_s": batch["input_ids"].numel() / (median_ms / 1e3),
        "peak_memory_forward_bytes": mem.peak, "peak_memory_reserved_bytes": mem.reserved,
    })
    info["ratios"] = {
        "perplexity_ratio": info["perplexity"] / baseline["perplexity"],
        "latency_ratio": median_ms / session.baseline["median_ms"],
        "size_ratio": info["size_on_disk_bytes"] / baseline["size_on_disk_bytes"],
        "tokens_per_s_ratio": session.baseline["median_ms"] / median_ms,
    }

    measured = {**info["ratios"], "peak_memory_mb": max(mem.peak, info["peak_memory_eval_bytes"]) / 2**20,
                "size_mb": info["size_on_disk_bytes"] / 2**20}
    budget = budget_for(budgets, device, pytestconfig.getoption("--model"), variant)
    info["budget"] = {k: v for k, v in budget.__dict__.items() if v is not None}
    broken = budget.violations(measured, info["perplexity_meaningful"])
    if broken:
        pytest.fail(f"{variant} on {device} is over budget:\n  " + "\n  ".join(broken), pytrace=False)
