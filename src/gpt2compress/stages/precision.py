"""Half precision: fp16 on CUDA (T4 tensor cores), bf16 on CPUs with native bf16 (AVX-512 BF16/AMX)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class PrecisionConfig:
    dtype: str = "fp32"


def cast(model: PreTrainedModel, config: PrecisionConfig) -> PreTrainedModel:
    if config.dtype not in DTYPES:
        raise ValueError(f"unknown dtype {config.dtype!r}; choose one of {sorted(DTYPES)}")
    return model.to(DTYPES[config.dtype])
