"""torchao's variants (build/stages/torchao.py): quantized where they say, close to fp32, smaller on disk, and read
back from the cache as the model that was built. A GPT-2 of width 64, so that INT4's groups of 32 fit."""

import dataclasses

import pytest
import torch

from gpt2compress.build.sources import Source
from gpt2compress.build.stages import torchao
from gpt2compress.build.stages.torchao import INT4_GROUP
from gpt2compress.core.registry import StageNotApplicable
from gpt2compress.core.variants import build
from gpt2compress.measure.memory import size_on_disk
from gpt2compress.runtimes.pytorch import _stored
from helpers import random_gpt2

VARIANTS = {"torchao-int8-dynamic": ("int8-w", 0.05), "torchao-int8-weights": ("int8-w", 0.05),
            "torchao-int4-weights": ("int8-w", 0.3)}  # INT4 values are stored one per int8 byte on CPU


@pytest.fixture
def wide_ctx(ctx, monkeypatch):
    monkeypatch.setattr(torchao, "has_vnni", lambda: True)  # correctness, not speed (see the last test)
    model = random_gpt2(n_embd=64, n_head=4, vocab_size=ctx.source.model.config.vocab_size)
    for config in (model.config, model.generation_config):
        config.bos_token_id = config.eos_token_id = ctx.source.tokenizer.eos_token_id
    return dataclasses.replace(ctx, source=Source("test64", model, ctx.source.tokenizer, "test-source-64"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_torchao_variant_is_quantized_close_to_fp32_and_loads_back_the_same(wide_ctx, variant):
    precision, tolerance = VARIANTS[variant]
    fp32, made = build("fp32", wide_ctx), build(variant, wide_ctx)
    linears = [m for m in made.model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 4 * 2 + 1  # c_attn, c_proj, c_fc, mlp c_proj per block, and the LM head
    assert all(type(m.weight) is not torch.nn.Parameter for m in linears)  # each one quantized by torchao
    assert made.info["precision"] == precision
    assert made.model.lm_head.weight is not made.model.transformer.wte.weight  # untied: the embedding stays fp32
    batch = next(wide_ctx.eval.batches(4))
    with torch.inference_mode():
        want, got = fp32.model(**batch).logits, made.model(**batch).logits
        assert (got - want).norm() / want.norm() < tolerance
        loaded = build(variant, wide_ctx)
        assert loaded.model is not made.model and torch.equal(loaded.model(**batch).logits, got)
    assert size_on_disk(made.path) < size_on_disk(fp32.path)


def test_int4_leaves_fp32_the_layers_whose_inputs_do_not_split_into_groups(ctx):
    assert ctx.source.model.config.n_embd % INT4_GROUP  # the test model's width, 40
    built = build("torchao-int4-weights", ctx)
    linears = [m for m in built.model.modules() if isinstance(m, torch.nn.Linear)]
    kept = [m for m in linears if m.in_features % INT4_GROUP]
    assert kept and all(type(m.weight) is torch.nn.Parameter for m in kept)
    assert all(t.dtype == torch.int8 for m in linears if m not in kept for t in _stored(m.weight)[:1])


def test_dynamic_int8_is_not_applicable_without_vnni_and_says_why(ctx, monkeypatch):
    monkeypatch.setattr(torchao, "has_vnni", lambda: False)
    with pytest.raises(StageNotApplicable, match="no VNNI .* reference loop"):
        build("torchao-int8-dynamic", ctx)
    assert torchao.int8_matmul_missing("cuda") is None
    monkeypatch.setattr(torchao, "has_vnni", lambda: True)
    assert build("torchao-int8-dynamic", ctx).info["precision"] == "int8-w"
