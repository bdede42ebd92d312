"""A build's perplexity is computed once per everything that makes it, and recomputed when any of that changes."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from gpt2compress.core import fingerprint
from gpt2compress.measure import scores
from gpt2compress.measure.fields import quality
from gpt2compress.core.variants import build


def test_an_unchanged_build_reuses_its_score_and_a_changed_one_does_not(ctx):
    built = build("fp32", ctx)
    first = quality(built, built.model, ctx)
    assert first["scores_reused"] is False and first["perplexity"] > 1
    again = quality(built, built.model, ctx)
    assert again["scores_reused"] is True and again["perplexity"] == first["perplexity"]

    other = build("pruned", ctx)  # another build key
    assert quality(other, other.model, ctx)["scores_reused"] is False
    fewer = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, eval_samples=4))  # other windows
    assert quality(built, built.model, fewer)["scores_reused"] is False
    torch.set_num_threads(torch.get_num_threads() + 1)  # another machine setting
    try:
        assert quality(built, built.model, ctx)["scores_reused"] is False
    finally:
        torch.set_num_threads(torch.get_num_threads() - 1)


def test_the_scoring_code_is_in_the_key(ctx, monkeypatch):
    built = build("fp32", ctx)
    before = scores.score_key(built, ctx.eval.key, "cpu")
    monkeypatch.setattr(scores, "fingerprint", lambda modules, libraries, **_: {"code": "changed", "modules": modules})
    assert scores.score_key(built, ctx.eval.key, "cpu") != before


@pytest.fixture
def keys_after_editing(ctx, monkeypatch):
    """`keys_after_editing(file, *builts)`: each build's score key as if `file`'s code had been edited."""
    real_hash = fingerprint.source_hash

    def keys(name: str, *builts) -> list[str]:
        monkeypatch.setattr(fingerprint, "source_hash", lambda path: "edited" if path.match(name) else real_hash(path))
        fingerprint.code_fingerprint.cache_clear()
        return [scores.score_key(built, ctx.eval.key, "cpu") for built in builts]

    yield keys
    fingerprint.code_fingerprint.cache_clear()  # no edited hash outlives the test


def test_a_score_follows_its_own_runtimes_scorer_not_the_others(ctx, keys_after_editing):
    """Editing the OpenVINO stage or scorer must not re-score an fp32 build; editing perplexity or its loader must."""
    built = build("fp32", ctx)
    before = keys_after_editing("nothing.py", built)
    assert keys_after_editing("build/stages/openvino.py", built) == before
    assert keys_after_editing("runtimes/openvino/scorer.py", built) == before
    assert keys_after_editing("gpt2compress/measure/perplexity.py", built) != before
    assert keys_after_editing("gpt2compress/runtimes/pytorch.py", built) != before


def test_an_openvino_score_follows_its_stateless_scorer(ctx, keys_after_editing):
    """OpenVINO LMs are scored by the runtime's scorer (`Runtime.scorer`), which no OpenVINO build imports."""
    ir, fp32 = SimpleNamespace(runtime="openvino", info={"build": {"key": "an-ir"}}), build("fp32", ctx)
    ir_before, fp32_before = keys_after_editing("nothing.py", ir, fp32)
    ir_after, fp32_after = keys_after_editing("gpt2compress/runtimes/openvino/scorer.py", ir, fp32)
    assert ir_after != ir_before and fp32_after == fp32_before
