"""Stages that change how an IR runs, not the IR: ov-bf16 (OpenVINO's bf16 inference precision, refused where it
would be emulated) and ov-int8-weights-f32act (no dynamic activation quantization); each kept across the cache."""

import pytest
import torch

from gpt2compress.build.hardware import has_native_bf16
from gpt2compress.core.registry import StageNotApplicable, runtime
from gpt2compress.build.stages import precision
from gpt2compress.core.variants import build


def compiled(ov_model, name: str):
    """The property as the compiled model holds it (an OpenVINO Type for precisions, an int for group sizes)."""
    ov_model.compile()
    return ov_model.request.get_compiled_model().get_property(name)


def hint(ov_model) -> str:
    return compiled(ov_model, "INFERENCE_PRECISION_HINT").to_string()


def test_a_cpu_without_native_bf16_skips_it_with_the_reason(ctx, monkeypatch):
    monkeypatch.setattr(precision, "has_native_bf16", lambda: False)
    monkeypatch.setitem(precision.EMULATED_BF16, "allowed", False)
    with pytest.raises(StageNotApplicable, match="no native bf16"):
        build("ov-bf16", ctx)


@pytest.mark.skipif(not has_native_bf16(), reason="this CPU has no native bf16 (avx512_bf16 or amx_bf16)")
def test_runs_in_bf16_from_the_build_and_from_the_cache_while_ov_fp32_stays_f32(ctx):
    fp32, bf16 = build("ov-fp32", ctx), build("ov-bf16", ctx)
    assert bf16.info["precision"] == "fp32 + bf16 compute"
    assert bf16.info["stage_notes"]["ov_runtime"] == {"INFERENCE_PRECISION_HINT": "bf16"}
    assert hint(bf16.model) == "bf16" and hint(fp32.model) == "f32"
    assert hint(runtime("openvino").load(bf16.path, "cpu")) == "bf16"  # the cached entry, loaded again
    ids = torch.randint(0, 300, (2, 16))
    a, b = fp32.model(input_ids=ids).logits, bf16.model(input_ids=ids).logits
    assert not torch.equal(a, b)  # bf16 really ran ...
    assert torch.allclose(a, b, atol=0.1, rtol=0.05)  # ... and computed the same model


@pytest.mark.skipif(not has_native_bf16(), reason="this CPU has no native bf16 (avx512_bf16 or amx_bf16)")
def test_int8_static_keeps_its_int8_and_runs_the_rest_in_bf16(ctx):
    built = build("ov-int8-static-bf16", ctx)
    assert built.info["precision"] == "int8-wa + bf16 compute" and hint(built.model) == "bf16"


def test_f32_activations_turns_dynamic_quantization_off_from_the_build_and_from_the_cache(ctx):
    default, f32act = build("ov-int8-weights", ctx), build("ov-int8-weights-f32act", ctx)
    assert f32act.info["precision"] == "int8-w + f32 activations"
    assert f32act.info["stage_notes"]["ov_runtime"] == {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}
    assert compiled(default.model, "DYNAMIC_QUANTIZATION_GROUP_SIZE") != 0  # OpenVINO's CPU default is on
    assert compiled(f32act.model, "DYNAMIC_QUANTIZATION_GROUP_SIZE") == 0
    assert compiled(runtime("openvino").load(f32act.path, "cpu"), "DYNAMIC_QUANTIZATION_GROUP_SIZE") == 0
    assert hint(f32act.model) == "f32"  # the pin stays
    ids = torch.randint(0, 300, (2, 16))
    a, b = default.model(input_ids=ids).logits, f32act.model(input_ids=ids).logits
    assert torch.allclose(a, b, atol=0.05, rtol=0.05)  # the same INT8 weights, only the activations' path differs
