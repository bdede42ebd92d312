"""Half precision: fp16 on CUDA (T4 tensor cores), bf16 on CPUs with native bf16 (AVX-512 BF16/AMX)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from ..hardware import has_native_bf16

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class PrecisionConfig:
    dtype: str = "fp32"


def native_bf16(device: str) -> str | None:
    """None if `device` computes bf16 natively, else the reason (emulated bf16 is slower than fp32)."""
    import torch

    if device == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        return None if ok else "this GPU has no native bf16 (needs compute capability >= 8.0; a T4 is 7.5)"
    if has_native_bf16():
        return None
    return "this CPU has no native bf16 (avx512_bf16 or amx_bf16): it would be emulated, slower than fp32"


def cast(model: PreTrainedModel, config: PrecisionConfig) -> PreTrainedModel:
    if config.dtype not in DTYPES:
        raise ValueError(f"unknown dtype {config.dtype!r}; choose one of {sorted(DTYPES)}")
    return model.to(DTYPES[config.dtype])
