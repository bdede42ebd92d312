"""NNCF static INT8 without SmoothQuant: the plain recipe `ov_int8_static` improves on (activations per tensor, scaled
as calibrated). On a source with GPT-2's activation outliers (`--model tiny-outliers`, `build/outliers.py`) the two
side by side show what SmoothQuant buys: the outlier channels set each per-tensor scale, and the plain recipe has
nothing to move them into the weights with."""

from __future__ import annotations

from ...core.registry import CPU, register_stage
from ...runtimes.openvino.ir import OV_LIBRARIES
from .openvino import NNCF, StaticInt8Config, quantize_static_int8

NO_SMOOTH_QUANT = -1.0  # NNCF's value for "SmoothQuant off"


@register_stage("ov_int8_static_plain", lambda ctx: StaticInt8Config(ctx.calibration, NO_SMOOTH_QUANT),
                devices=(CPU,), takes="openvino", gives="openvino", precision="int8-wa", libraries=OV_LIBRARIES + NNCF,
                about="NNCF static INT8 without SmoothQuant (per-tensor activation scales as calibrated)")
def quantize_static_int8_plain(ov_model, config: StaticInt8Config):
    return quantize_static_int8(ov_model, config)
