"""CTranslate2 and ONNX Runtime peers: built from the same model, they score it as torch does and CTranslate2
generates its greedy tokens on a per-token clock; what they cannot hold is refused with the reason."""

import pytest
import torch

from gpt2compress.measure.generation import cannot_generate, timed_generate
from gpt2compress.measure.perplexity import perplexity
from gpt2compress.core.registry import StageNotApplicable, runtime
from gpt2compress.build.stages.ct2 import CTranslate2Config, to_ctranslate2
from gpt2compress.core.variants import build
from helpers import random_gpt2


@pytest.mark.parametrize("variant, tolerance", [("ct2-int8", 0.05), ("ct2-int8-float32", 0.05),
                                                ("ort-int8-dynamic", 0.05)])
def test_a_peer_scores_the_model_it_was_built_from(ctx, variant, tolerance):
    fp32, peer = build("fp32", ctx), build(variant, ctx)
    windows = ctx.eval
    base, theirs = perplexity(fp32.model, windows), perplexity(peer.model, windows)
    assert theirs == pytest.approx(base, rel=tolerance)
    again = runtime(peer.runtime).load(peer.path, "cpu")  # the cached entry answers the same
    assert perplexity(again, windows) == pytest.approx(theirs, rel=1e-6)


def test_ctranslate2_generates_torchs_greedy_tokens_one_stamp_per_token(ctx):
    peer = build("ct2-int8-float32", ctx)
    timing = timed_generate(peer.model, torch.randint(0, 300, (2, 10)), new_tokens=6)
    assert timing.stamped and len(timing.decode_s) == 5 and all(s > 0 for s in timing.decode_s)
    fp32 = build("fp32", ctx).model
    exact = to_ctranslate2(fp32, CTranslate2Config("float32", tokenizer=ctx.source.tokenizer))
    prompt = torch.randint(0, 300, (3, 10))
    ours = exact.generate(prompt, max_new_tokens=7)
    theirs = fp32.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=7,
                           min_new_tokens=7, pad_token_id=0)
    assert torch.equal(ours, theirs)


def test_ctranslate2_converts_a_model_with_more_rows_than_the_tokenizer_has_tokens(ctx):
    tokenizer = ctx.source.tokenizer   # gpt2-random without --tokenizer: GPT-2's rows, tiny's smaller BPE
    model = random_gpt2(vocab_size=len(tokenizer) + 37)
    peer = to_ctranslate2(model, CTranslate2Config("float32", tokenizer=tokenizer))
    assert len(peer.vocabulary) == len(tokenizer) + 37 and len(tokenizer) == len(ctx.source.tokenizer)
    prompt = torch.randint(0, len(tokenizer), (2, 8))
    theirs = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=5,
                            min_new_tokens=5, pad_token_id=0)
    assert torch.equal(peer.generate(prompt, max_new_tokens=5), theirs)
    assert torch.allclose(peer(prompt).logits, model(prompt).logits, atol=1e-3)


def test_onnxruntime_is_forward_only_and_pruned_models_export(ctx):
    peer = build("pruned-ort", ctx, chain=("prune", "ort_int8_dynamic"))
    assert "no generate()" in cannot_generate(peer.model)
    assert peer.info["heads_per_layer"] == build("pruned", ctx).info["heads_per_layer"]


def test_ctranslate2_refuses_a_pruned_model_with_the_reason(ctx):
    with pytest.raises(StageNotApplicable, match="full, float model"):
        build("pruned-ct2", ctx, chain=("prune", "ct2_int8"))
