"""A build's perplexity is computed once per everything that makes it, and recomputed when any of that changes."""

import dataclasses
from types import SimpleNamespace

import torch

from gpt2compress import fingerprint, scores
from gpt2compress.measure import quality
from gpt2compress.variants import build


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


def test_a_score_follows_its_own_runtimes_scorer_not_the_others(ctx, monkeypatch):
    """Editing the OpenVINO stage must not re-score an fp32 build; editing metrics or engines must."""
    built = build("fp32", ctx)
    real_hash = fingerprint.source_hash

    def key_after_editing(name: str) -> str:
        monkeypatch.setattr(fingerprint, "source_hash", lambda path: "edited" if path.match(name) else real_hash(path))
        fingerprint.code_fingerprint.cache_clear()
        return scores.score_key(built, ctx.eval.key, "cpu")

    try:
        before = key_after_editing("nothing.py")
        assert key_after_editing("stages/openvino.py") == before
        assert key_after_editing("gpt2compress/metrics.py") != before
        assert key_after_editing("gpt2compress/engines.py") != before
    finally:
        fingerprint.code_fingerprint.cache_clear()  # no edited hash outlives the test


def test_an_openvino_score_follows_its_stateless_scorer(ctx, monkeypatch):
    """OpenVINO LMs are scored by ov_scorer (engines.scoring_engine), which no OpenVINO build imports."""
    ir = SimpleNamespace(runtime="openvino", info={"build": {"key": "an-ir"}})
    real_hash = fingerprint.source_hash

    def keys_after_editing(name: str) -> tuple[str, str]:
        monkeypatch.setattr(fingerprint, "source_hash", lambda path: "edited" if path.match(name) else real_hash(path))
        fingerprint.code_fingerprint.cache_clear()
        return scores.score_key(ir, ctx.eval.key, "cpu"), scores.score_key(build("fp32", ctx), ctx.eval.key, "cpu")

    try:
        ir_before, fp32_before = keys_after_editing("nothing.py")
        ir_after, fp32_after = keys_after_editing("gpt2compress/ov_scorer.py")
        assert ir_after != ir_before and fp32_after == fp32_before
    finally:
        fingerprint.code_fingerprint.cache_clear()
