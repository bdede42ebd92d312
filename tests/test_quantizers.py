"""OpenVINO (optimum-intel/NNCF) and INC INT8 on small models, pruned ones included: the pipeline's order."""

import pytest
import torch

from gpt2compress.measure.perplexity import perplexity
from gpt2compress.core.variants import build


def logits(model, windows):
    with torch.no_grad():
        return model(input_ids=windows.input_ids, attention_mask=windows.attention_mask).logits


@pytest.mark.parametrize("variant", ["ov-fp32", "ov-int8-weights", "ov-int8-sym-weights", "ov-int4-weights",
                                     "ov-int8-static", "inc-int8", "int8-scratch"])
def test_quantized_variant_tracks_fp32(ctx, variant):
    base = build("fp32", ctx)
    built = build(variant, ctx)
    ppl, ppl_base = perplexity(built.model, ctx.eval), perplexity(base.model, ctx.eval)
    tolerance = {"ov-fp32": 1e-4, "ov-int4-weights": 0.10}.get(variant, 0.05)
    assert abs(ppl / ppl_base - 1) < tolerance, (ppl, ppl_base)
    assert built.info["parameters"] == base.info["parameters"]


def test_openvino_export_of_pruned_finetuned_model_matches_torch(ctx):
    torch_model = build("pruned-finetuned", ctx)
    ov = build("pruned-finetuned-ov-int8-static", ctx, chain=("prune", "finetune", "openvino"))
    assert ov.info["heads_per_layer"] == [4, 4] and ov.runtime == "openvino"
    unpadded = ctx.eval.head(4)
    full = torch.ones_like(unpadded.attention_mask)
    a = torch_model.model(input_ids=unpadded.input_ids, attention_mask=full).logits
    b = ov.model(input_ids=unpadded.input_ids, attention_mask=full).logits
    torch.testing.assert_close(b, a.detach(), atol=1e-4, rtol=1e-4)
    assert (ov.path / "openvino_model.xml").exists()


def test_pipeline_int8_on_pruned_finetuned(ctx):
    before = perplexity(build("pruned-finetuned", ctx).model, ctx.eval)
    for variant in ("pruned-finetuned-ov-int8-static", "pruned-finetuned-inc-int8"):
        built = build(variant, ctx)
        assert built.info["precision"] == "int8-wa" and built.info["heads_per_layer"] == [4, 4]
        assert perplexity(built.model, ctx.eval) / before < 1.05  # INT8 keeps the pruned model it was given


def weight_constants(path) -> list:
    import openvino as ov

    ir = ov.Core().read_model(path / "openvino_model.xml")
    return [op for op in ir.get_ops() if op.get_type_name() == "Constant" and op.get_byte_size() > 1024]


def test_symmetric_int8_weights_are_signed_and_have_no_zero_point(ctx):
    sym, default = ({op.get_element_type().get_type_name() for op in weight_constants(build(variant, ctx).path)}
                    for variant in ("ov-int8-sym-weights", "ov-int8-weights"))
    assert "i8" in sym and "u8" not in sym, sym
    assert "u8" in default, default  # NNCF's default: asymmetric, a u8 zero point per row


def test_int4_weights_are_int4_in_groups_and_the_embedding_stays_int8(ctx):
    from gpt2compress.measure.memory import size_on_disk

    built = build("ov-int4-weights", ctx)
    weights = weight_constants(built.path)
    by_type = {op.get_element_type().get_type_name() for op in weights}
    assert "i4" in by_type and "u8" in by_type, by_type  # INT4 blocks; NNCF's INT8 backup for the embedding/LM head
    groups = {op.get_shape()[-1] for op in weights if op.get_element_type().get_type_name() == "i4"}
    assert groups and max(groups) <= 32, groups  # a scale per 32 weights (Q4_0's block), fewer where 32 won't divide
    assert size_on_disk(built.path) < size_on_disk(build("ov-int8-weights", ctx).path)
