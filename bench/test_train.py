"""Training throughput per setup and device (seed 003): tokens/s of full optimizer steps, peak memory,
and proof that the measured steps learn (the loss falls), since a benchmark of a broken step is worthless."""

from __future__ import annotations

import dataclasses
import statistics

import pytest

from gpt2compress.data import packed_windows
from gpt2compress.measure import provenance
from gpt2compress.stages.precision import native_bf16
from gpt2compress.training import TrainSetup, train_steps
from gpt2compress.variants import BASELINE, build

# name: (variant whose model is trained, how it is trained)
TRAIN_CASES: dict[str, tuple[str, TrainSetup]] = {
    "fp32": (BASELINE, TrainSetup()),
    "fp32-eager": (BASELINE, TrainSetup(attention="eager")),
    "bf16-autocast": (BASELINE, TrainSetup(precision="bf16")),
    "fp16-autocast": (BASELINE, TrainSetup(precision="fp16")),
    "distilled-lora": ("distilled", TrainSetup(lora_rank=8)),  # seed 001: LoRA on the distilled student
}
SMOKE_CASES = ("fp32", "bf16-autocast", "fp16-autocast")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Cases on the baseline always run; a case that trains another variant runs when --stages selects it."""
    if "train_case" in metafunc.fixturenames:
        smoke, chosen = metafunc.config.getoption("--smoke"), metafunc.config.getoption("--stages")
        cases = [c for c, (variant, _) in TRAIN_CASES.items()
                 if (not smoke or c in SMOKE_CASES) and (variant == BASELINE or not chosen or variant in chosen.split(","))]
        metafunc.parametrize("train_case", cases)


def unsupported(setup: TrainSetup, device: str) -> str | None:
    if setup.precision == "fp16" and device != "cuda":
        return "fp16 autocast with a GradScaler is the T4 recipe; CPUs train in bf16 autocast"
    if setup.precision == "bf16":
        return native_bf16(device)
    return None


def test_train(benchmark, train_case, device, session, gate, pytestconfig):
    variant, setup = TRAIN_CASES[train_case]
    opt = pytestconfig.getoption
    setup = dataclasses.replace(setup, tokens_per_step=opt("--train-tokens"), micro_batch=opt("--train-micro-batch"),
                                steps=opt("--train-steps"))
    reason = unsupported(setup, device)
    if reason:
        pytest.skip(f"{train_case}: {reason}")
    ctx = session.ctx
    built = build(variant, ctx)
    model = built.model
    windows = packed_windows(ctx.corpus, ctx.source.tokenizer, ctx.settings.seq_len)
    result = benchmark.pedantic(train_steps, args=(model, windows, setup), rounds=1, iterations=1)
    if train_case == "fp32":
        session.train = {"tokens_per_s": result.tokens_per_s, "peak_memory_bytes": result.peak_memory_bytes}

    info = benchmark.extra_info
    info.update({
        "kind": "train", "variant": train_case, "trained_variant": variant, "device": device, "model": opt("--model"),
        "precision": setup.precision, "attention": setup.attention, "tokens_per_step": result.tokens_per_step,
        "accumulation": result.accumulation, "micro_batch": setup.micro_batch, "steps": setup.steps,
        "train_tokens_per_s": result.tokens_per_s, "step_ms": statistics.median(result.step_s) * 1e3,
        "step_samples_ms": [s * 1e3 for s in result.step_s], "losses": result.losses,
        "peak_memory_train_bytes": result.peak_memory_bytes, "peak_memory_reserved_bytes": result.peak_memory_reserved_bytes,
        "build": provenance(built),
    })
    if session.train:
        info["ratios"] = {"train_tokens_per_s_ratio": result.tokens_per_s / session.train["tokens_per_s"],
                          "train_memory_ratio": result.peak_memory_bytes / session.train["peak_memory_bytes"]}
    learned = None if result.learned else f"the loss did not fall over the measured steps: {result.losses}"
    gate(info, info.get("ratios", {}), extra=(learned,))
