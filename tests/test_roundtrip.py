"""A loaded build is the model that was built: every PyTorch variant that runs on a CPU, built, then read back
from the cache, has the same dtypes, shapes, heads, attention kernel, tied weights and logits."""

import pytest
import torch

from gpt2compress.runtimes.pytorch import is_tied, precision_of
from gpt2compress.measure.fields import footprint
from gpt2compress.core.registry import stage
from gpt2compress.build.stages import torchao
from gpt2compress.build.stages.precision import EMULATED_BF16
from gpt2compress.core.variants import VARIANTS, build

TORCH_ON_CPU = [name for name, chain in VARIANTS.items()
                if all(stage(s).gives == "torch" and "cpu" in stage(s).devices for s in chain)]


def tensors(model: torch.nn.Module) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    return {name: (t.dtype, tuple(t.shape)) for name, t in named}


def test_every_torch_cpu_variant_is_covered():
    assert {"fp32", "bf16", "mixed-bf16", "eager", "pruned", "pruned-finetuned", "int8-scratch",
            "pruned-finetuned-int8-scratch", "pruned-finetuned-bf16", "distilled-lora-pruned", "torchao-int8-dynamic",
            "torchao-int8-weights", "torchao-int4-weights"} <= set(TORCH_ON_CPU)


@pytest.mark.parametrize("variant", TORCH_ON_CPU)
def test_a_cached_build_loads_as_the_model_that_was_built(ctx, variant, monkeypatch):
    monkeypatch.setitem(EMULATED_BF16, "allowed", True)  # correctness, not speed: emulated bf16 is fine here
    monkeypatch.setattr(torchao, "has_vnni", lambda: True)  # ... and torch's INT8 matmul's reference loop too
    made = build(variant, ctx)  # cold: the stages' own output
    loaded = build(variant, ctx)  # warm: read back from the cache
    assert loaded.model is not made.model and loaded.path == made.path
    a, b = made.model, loaded.model
    assert tensors(b) == tensors(a)
    assert b.config._attn_implementation == a.config._attn_implementation
    assert [blk.attn.num_heads for blk in b.transformer.h] == [blk.attn.num_heads for blk in a.transformer.h]
    assert is_tied(b) == is_tied(a)
    assert b.config.use_cache == a.config.use_cache
    batch = next(ctx.eval.batches(4))
    with torch.inference_mode():
        assert torch.equal(b(**batch).logits, a(**batch).logits)
    assert loaded.info["precision"] == precision_of(b) == made.info["precision"]
    assert footprint(loaded) == footprint(made)  # size, parameters, heads and stage notes, as rows record them


@pytest.mark.parametrize("variant,precision", [("bf16", "bf16"), ("mixed-bf16", "mixed-bf16"),
                                               ("int8-scratch", "int8-w"), ("pruned", "fp32")])
def test_precision_is_read_from_the_model(ctx, variant, precision, monkeypatch):
    monkeypatch.setitem(EMULATED_BF16, "allowed", True)
    build(variant, ctx)
    assert build(variant, ctx).info["precision"] == precision
