"""Fixtures: build each variant once per session (from the on-disk cache when warm) and hand it to the tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from gpt2compress.budgets import budget_for, load_budgets
from gpt2compress.data import load_corpus
from gpt2compress.measure import footprint, quality, speed
from gpt2compress.metrics import fixed_batch
from gpt2compress.sources import load_source
from gpt2compress.stages import StageNotApplicable
from gpt2compress.variants import BASELINE, VARIANTS, Built, Context, Settings, build

DEFAULT_BUDGETS = Path(__file__).with_name("budgets.toml")
SMOKE = ("fp32", "pruned", "int8-scratch", "ov-int8-static", "fp16", "bnb-nf4")
SMOKE_EVAL_SAMPLES = 128  # --smoke checks that everything runs; full-corpus perplexity is the main job's
NO_GPU = "no CUDA GPU visible (torch.cuda.is_available() is False): the CUDA cases run on the T4 runners"


def devices(config: pytest.Config) -> list[str]:
    """`auto` lists cuda even without a GPU, so a CPU runner reports every CUDA case as skipped, with the reason."""
    wanted = config.getoption("--device")
    if wanted == "auto":
        return ["cpu", "cuda"]
    chosen = wanted.split(",")
    unknown = [d for d in chosen if d not in ("cpu", "cuda")]
    if unknown:
        raise pytest.UsageError(f"--device: unknown {unknown}; use auto, cpu, cuda or cpu,cuda")
    if "cuda" in chosen and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device cuda: {NO_GPU}; use --device cpu (or auto)")
    return chosen


def variant_names(config: pytest.Config) -> list[str]:
    names = config.getoption("--stages")
    names = names.split(",") if names else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise pytest.UsageError(f"--stages: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    return [n for n in names if n in SMOKE] if config.getoption("--smoke") else names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" in metafunc.fixturenames:
        metafunc.parametrize("variant", variant_names(metafunc.config))
    if "gen_batch_size" in metafunc.fixturenames:
        sizes = [int(b) for b in metafunc.config.getoption("--gen-batch-sizes").split(",")]
        metafunc.parametrize("gen_batch_size", sizes[:1] if metafunc.config.getoption("--smoke") else sizes)
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", devices(metafunc.config))


@dataclass
class Session:
    """What one device's run shares: the context and the baseline's numbers (variants are not kept:
    each test loads its own from the disk cache and frees it, so peak memory is that stage's)."""

    ctx: Context
    baseline: dict = field(default_factory=dict)
    baseline_quality: dict = field(default_factory=dict)
    generate: dict = field(default_factory=dict)  # fp32's generate summary per batch size
    train: dict = field(default_factory=dict)  # fp32's training summary


@pytest.fixture(scope="session")
def budgets(pytestconfig):
    return load_budgets(pytestconfig.getoption("--budgets") or DEFAULT_BUDGETS)


@pytest.fixture(scope="session")
def corpus(pytestconfig):
    return load_corpus(pytestconfig.getoption("--data"))


@pytest.fixture(scope="session")
def source(pytestconfig, corpus):
    return load_source(pytestconfig.getoption("--model"), corpus, pytestconfig.getoption("--tokenizer"))


@pytest.fixture(scope="session")
def sessions(pytestconfig, corpus, source) -> dict[str, Session]:
    opt = pytestconfig.getoption
    eval_samples = opt("--eval-samples") or (SMOKE_EVAL_SAMPLES if opt("--smoke") else None)
    settings = Settings.for_model(opt("--model"), seq_len=opt("--seq-len"), eval_samples=eval_samples,
                                  finetune_max_steps=opt("--finetune-steps"))
    usable = [d for d in devices(pytestconfig) if d == "cpu" or torch.cuda.is_available()]
    return {d: Session(Context(source, corpus, settings, d)) for d in usable}


@contextlib.contextmanager
def memray_capture(directory: str | None, name: str):
    """With --memray DIR: a capture per stage plus its flame-graph HTML."""
    if not directory:
        yield
        return
    import memray

    out = Path(directory) / f"{name}.bin"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with memray.Tracker(out, native_traces=False):
        yield
    subprocess.run([sys.executable, "-m", "memray", "flamegraph", "-f", "-o", str(out.with_suffix(".html")), str(out)],
                   check=False, capture_output=True)


@pytest.fixture
def session(sessions, device) -> Session:
    if device not in sessions:
        pytest.skip(NO_GPU)
    return sessions[device]


@pytest.fixture
def built(session, variant, device, pytestconfig) -> Built:
    """The variant on this device, or a skip that says why it does not apply."""
    try:
        with memray_capture(pytestconfig.getoption("--memray"), f"{device}-{variant}-build"):
            return build(variant, session.ctx)
    except StageNotApplicable as reason:
        pytest.skip(str(reason))


@pytest.fixture
def batch(session, pytestconfig):
    return fixed_batch(session.ctx.eval, pytestconfig.getoption("--batch-size"), session.ctx.settings.seq_len)


@pytest.fixture
def baseline(session, batch) -> dict:
    """fp32's numbers in this session: the reference every ratio divides by."""
    if not session.baseline:
        base = build(BASELINE, session.ctx)
        timing = speed(base, session.ctx, batch_size=batch["input_ids"].shape[0])
        session.baseline_quality = quality(base, session.ctx)  # fp32's test reuses it: perplexity is deterministic
        session.baseline = {**footprint(base), **session.baseline_quality, **timing, "median_ms": timing["p50_ms"]}
    return session.baseline


@pytest.fixture(scope="session")
def hellaswag(pytestconfig):
    """HellaSwag examples with `--hellaswag PATH` (forward rows then carry acc / acc_norm), else None."""
    from gpt2compress.hellaswag import load_hellaswag

    spec = pytestconfig.getoption("--hellaswag")
    return load_hellaswag(spec, pytestconfig.getoption("--hellaswag-samples")) if spec else None


@pytest.fixture
def gate(budgets, pytestconfig):
    """`gate(info, measured)`: record the budget that applies in `info`, then fail on any broken limit.

    Called after `info` (the JSON's extra_info) is complete, so a failing budget never loses the numbers."""

    def check(info: dict, measured: dict, meaningful: bool = True, extra: tuple[str, ...] = ()) -> None:
        budget = budget_for(budgets, info["device"], pytestconfig.getoption("--model"), info["variant"])
        info["budget"] = {k: v for k, v in budget.__dict__.items() if v is not None}
        broken = budget.violations(measured, meaningful) + [e for e in extra if e]
        if broken:
            pytest.fail(f"{info['variant']} on {info['device']} is over budget:\n  " + "\n  ".join(broken),
                        pytrace=False)

    return check
