"""One forward pass per variant and device: timed by pytest-benchmark, measured, gated by budgets."""

from __future__ import annotations

import statistics

from gpt2compress.energy import energy_per_sample, gpu_power_source
from gpt2compress.hellaswag import evaluate as hellaswag_scores
from gpt2compress.measure import footprint, quality
from gpt2compress.metrics import cuda_event_ms, forward_callable, latency_stats, peak_memory, unsynchronized_timer
from gpt2compress.profiling import profile_forward
from gpt2compress.variants import BASELINE

ROUNDS, WARMUP = 20, 3


def gpu_extras(forward, batch_size: int) -> dict:
    """CUDA only: the GPU's own time per call (guards the timer) and, with a power sensor, energy per sample."""
    gpu_ms = cuda_event_ms(forward, rounds=ROUNDS // 2)
    extras = {"gpu_event_median_ms": statistics.median(gpu_ms), "gpu_event_min_ms": min(gpu_ms)}
    power = gpu_power_source("cuda")
    if power is not None:  # absent, not zero, without a readable sensor
        extras.update(energy_per_sample(forward, power, samples_per_call=batch_size))
    return extras


def test_forward(benchmark, variant, device, built, session, baseline, batch, gate, pytestconfig, hellaswag):
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
    info.update(session.baseline_quality if variant == BASELINE else quality(built, session.ctx))
    if hellaswag:
        source = session.ctx.source
        info.update(hellaswag_scores(built.model, source.tokenizer, hellaswag, source.model.config.n_positions))
    info.update({f"latency_{k}": v for k, v in latency_stats(samples).items()})
    info["latency_samples_ms"] = [s * 1e3 for s in samples]  # raw rounds: `gpt2compress compare` tests on them
    info.update({
        "kind": "forward", "variant": variant, "device": device, "model": pytestconfig.getoption("--model"),
        "batch_shape": list(batch["input_ids"].shape), "median_ms": median_ms,
        "tokens_per_s": batch["input_ids"].numel() / (median_ms / 1e3),
        "peak_memory_forward_bytes": mem.peak, "peak_memory_reserved_bytes": mem.reserved,
        "peak_rss_forward_bytes": mem.rss_peak,
    })
    if device == "cuda":
        info.update(gpu_extras(forward, batch["input_ids"].shape[0]))
        if variant == BASELINE and "energy_per_sample_mj" in info:
            session.baseline["energy_per_sample_mj"] = info["energy_per_sample_mj"]
    info["ratios"] = {
        "perplexity_ratio": info["perplexity"] / baseline["perplexity"],
        "latency_ratio": median_ms / session.baseline["median_ms"],
        "size_ratio": info["size_on_disk_bytes"] / baseline["size_on_disk_bytes"],
        "tokens_per_s_ratio": session.baseline["median_ms"] / median_ms,
    }
    if "energy_per_sample_mj" in info and "energy_per_sample_mj" in session.baseline:
        info["ratios"]["energy_efficiency"] = session.baseline["energy_per_sample_mj"] / info["energy_per_sample_mj"]

    measured = {**info["ratios"], "peak_memory_mb": max(mem.peak, info["peak_memory_eval_bytes"]) / 2**20,
                "size_mb": info["size_on_disk_bytes"] / 2**20}
    timer = unsynchronized_timer(min(samples) * 1e3, info["gpu_event_min_ms"]) if "gpu_event_min_ms" in info else None
    gate(info, measured, info["perplexity_meaningful"], extra=(timer,))
