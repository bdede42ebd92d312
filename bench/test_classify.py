"""AG News classification per compression variant and device (seed 004): accuracy, macro F1, size, latency.

Each variant is the fp32 classifier (fine-tuned once, cached) put through the same stages as the LM variants;
the budget gates its accuracy drop against that fp32 classifier, measured in the same run.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import pytest

from gpt2compress.classify import (CLASSIFY_BASELINE, CLASSIFY_VARIANTS, ClassifyContext, classify_context,
                                   classify_settings, evaluate, load_ag_news)
from gpt2compress.data import DataSourceError
from gpt2compress.measure import footprint
from gpt2compress.metrics import forward_callable, time_calls
from gpt2compress.stages import StageNotApplicable
from gpt2compress.variants import Built, build

ROUNDS, WARMUP, BATCH = 10, 2, 16
SMOKE_CASES = (CLASSIFY_BASELINE, "cls-int8-scratch", "cls-ov-int8-static", "cls-bnb-nf4")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "classify_variant" in metafunc.fixturenames:
        smoke = metafunc.config.getoption("--smoke")
        metafunc.parametrize("classify_variant", [v for v in CLASSIFY_VARIANTS if not smoke or v in SMOKE_CASES])


@dataclass
class ClassifySession:
    ctx: ClassifyContext
    baseline: dict = field(default_factory=dict)  # the fp32 classifier's accuracy, size and median ms


@pytest.fixture(scope="session")
def news(pytestconfig):
    try:
        return load_ag_news(pytestconfig.getoption("--agnews"))
    except DataSourceError as reason:
        pytest.skip(f"no AG News data: {reason}")


@pytest.fixture(scope="session")
def classify_sessions(news) -> dict[str, ClassifySession]:
    """Filled per device on first use (after `news` has skipped the lot if there is no data)."""
    return {}


@pytest.fixture
def classify_session(classify_sessions, session, device, news, pytestconfig) -> ClassifySession:
    if device not in classify_sessions:
        settings = classify_settings(pytestconfig.getoption("--model"))
        ctx = classify_context(session.ctx.source, news, settings, session.ctx.corpus, device)
        classify_sessions[device] = ClassifySession(ctx)
    return classify_sessions[device]


def build_classifier(name: str, ctx: ClassifyContext) -> Built:
    try:
        return build(name, ctx, CLASSIFY_VARIANTS[name])
    except StageNotApplicable as reason:
        pytest.skip(f"{name}: {reason}")


def timing_batch(ctx: ClassifyContext) -> dict:
    """The first BATCH eval rows, right-padded as in inference: latency per batch and per sample."""
    return next(ctx.eval.batches(BATCH))


@pytest.fixture
def classify_baseline(classify_session) -> dict:
    """The fp32 classifier's numbers in this session (its own benchmark replaces the median when it runs)."""
    if not classify_session.baseline:
        ctx = classify_session.ctx
        base = build_classifier(CLASSIFY_BASELINE, ctx)
        classify_session.baseline = {
            **evaluate(base.model, ctx.eval, len(ctx.news.classes)), **footprint(base),
            "median_ms": statistics.median(time_calls(forward_callable(base.model, timing_batch(ctx)))) * 1e3}
    return classify_session.baseline


def test_classify(benchmark, classify_variant, device, classify_session, classify_baseline, gate, pytestconfig):
    ctx = classify_session.ctx
    built = build_classifier(classify_variant, ctx)
    batch = timing_batch(ctx)
    benchmark.group = f"classify-{device}"
    benchmark.pedantic(forward_callable(built.model, batch), rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    samples = benchmark.stats.stats.data
    median_ms = statistics.median(samples) * 1e3
    if classify_variant == CLASSIFY_BASELINE:
        classify_baseline["median_ms"] = median_ms

    info = benchmark.extra_info
    info.update(footprint(built))
    info.update(evaluate(built.model, ctx.eval, len(ctx.news.classes)))
    batch_size = batch["input_ids"].shape[0]
    info.update({
        "kind": "classify", "variant": classify_variant, "device": device, "model": pytestconfig.getoption("--model"),
        "dataset": ctx.news.name, "classes": list(ctx.news.classes), "train_rows": len(ctx.train),
        "seq_len": ctx.settings.seq_len, "batch_size": batch_size, "median_ms": median_ms,
        "ms_per_sample": median_ms / batch_size, "latency_samples_ms": [s * 1e3 for s in samples],
        "accuracy_drop": 100 * (classify_baseline["accuracy"] - info["accuracy"]),  # points
    })
    base_size = classify_baseline["size_on_disk_bytes"]
    info["ratios"] = {"size_ratio": info["size_on_disk_bytes"] / base_size, "latency_ratio": median_ms /
                      classify_baseline["median_ms"], "compression": base_size / info["size_on_disk_bytes"]}
    gate(info, {**info["ratios"], "accuracy_drop": info["accuracy_drop"]})
