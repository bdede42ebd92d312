"""Half precision: fp16 on CUDA (T4 tensor cores), bf16 where it is native, and mixed precision.

`cast` converts the weights. `mixed_precision` keeps fp32 weights and runs the
forward under `torch.autocast` (seed 002's "Mixed"): matmuls in half precision,
reductions and softmax in fp32. The autocast is recorded in the config, so a
saved mixed-precision variant loads back as one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from ..hardware import has_native_bf16
from ...runtimes.pytorch import record
from ...core.registry import CPU, CUDA, register_restorer, register_stage

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
EMULATED_BF16 = {"allowed": False}  # --emulated-bf16 sets it: measure bf16 on a CPU that would emulate it


@dataclass(frozen=True)
class PrecisionConfig:
    dtype: str = "fp32"


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[name]


def native_bf16(device: str) -> str | None:
    """None if `device` computes bf16 natively, else the reason (emulated bf16 is slower than fp32).

    `--emulated-bf16` (EMULATED_BF16) measures emulated bf16 on a CPU anyway.
    """
    if device == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA GPU visible to check for native bf16 (it needs compute capability >= 8.0; a T4 is 7.5)"
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return None
        major, minor = torch.cuda.get_device_capability()
        return f"this GPU has no native bf16: it needs compute capability >= 8.0, this one is {major}.{minor}"
    if has_native_bf16() or EMULATED_BF16["allowed"]:
        return None
    return ("this CPU has no native bf16 (avx512_bf16 or amx_bf16): it would be emulated, slower than fp32 "
            "(--emulated-bf16 measures it anyway)")


@register_stage("bf16", lambda ctx: PrecisionConfig("bf16"), devices=(CPU, CUDA), precision="bf16",
                about="cast weights and compute to bfloat16 (CPU with AVX-512 BF16/AMX; Ampere+ GPUs)",
                unsupported=native_bf16)
@register_stage("fp16", lambda ctx: PrecisionConfig("fp16"), devices=(CUDA,), precision="fp16",
                about="cast weights and compute to float16 (GPU tensor cores)")
def cast(model: PreTrainedModel, config: PrecisionConfig) -> PreTrainedModel:
    return model.to(_dtype(config.dtype))


@register_restorer("autocast")
def enable_autocast(model: PreTrainedModel, dtype: str) -> PreTrainedModel:
    """Wrap `model.forward` (what `model(...)` and `generate` call) in autocast on the model's device."""
    half = _dtype(dtype)
    forward = model.forward

    @functools.wraps(forward)
    def autocast_forward(*args, **kwargs):
        device_type = next(model.parameters()).device.type
        with torch.autocast(device_type=device_type, dtype=half):
            return forward(*args, **kwargs)

    model.forward = autocast_forward
    return record(model, "autocast", dtype)


@register_stage("mixed_fp16", lambda ctx: PrecisionConfig("fp16"), devices=(CUDA,), precision="mixed-fp16",
                about="fp32 weights, forward under torch.autocast(float16) (seed 002's Mixed)")
@register_stage("mixed_bf16", lambda ctx: PrecisionConfig("bf16"), devices=(CPU, CUDA), precision="mixed-bf16",
                about="fp32 weights, forward under torch.autocast(bfloat16)", unsupported=native_bf16)
def mixed_precision(model: PreTrainedModel, config: PrecisionConfig) -> PreTrainedModel:
    """fp32 weights, half-precision compute: the stage seed 002 calls "Mixed"."""
    return enable_autocast(model.float(), config.dtype)
