"""bitsandbytes quantization through transformers: LLM.int8() and 4-bit NF4 (seeds 001 and 004).

The model is written to a temporary checkpoint and loaded back with a
`BitsAndBytesConfig`, the path transformers itself supports (and saves and
reloads pre-quantized). NF4 uses double quantization (the quantization constants
are quantized too) and fp16 compute, as in QLoRA. The LM head stays in half
precision, as transformers keeps it.

bitsandbytes is an optional extra (`pip install -e '.[gpu]'`); the bench runs
these stages on CUDA. Per-layer pruned models cannot be rebuilt by
`from_pretrained`, so they are refused.
"""

from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import dataclass

import torch
from transformers import AutoConfig, BitsAndBytesConfig, PreTrainedModel

from ...runtimes.pytorch import auto_class, notes, save_model
from ...core.registry import CUDA, StageNotApplicable, register_runtime, register_stage

MODES = ("int8", "nf4")


@dataclass(frozen=True)
class BnbConfig:
    mode: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "fp16"
    device: str = "cuda"


def bitsandbytes_missing(device: str) -> str | None:
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed: pip install -e '.[gpu]'"
    return None


def quantization_config(config: BnbConfig) -> BitsAndBytesConfig:
    if config.mode not in MODES:
        raise ValueError(f"unknown bitsandbytes mode {config.mode!r}; choose one of {MODES}")
    if config.mode == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[config.compute_dtype]
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=config.double_quant, bnb_4bit_compute_dtype=compute)


@register_stage("bnb_int8", lambda ctx: BnbConfig("int8", device=ctx.device), devices=(CUDA,), gives="bnb",
                precision="int8-w (LLM.int8)", about="bitsandbytes LLM.int8() weights with fp16 outlier columns",
                unsupported=bitsandbytes_missing)
@register_stage("bnb_nf4", lambda ctx: BnbConfig("nf4", device=ctx.device), devices=(CUDA,), gives="bnb",
                precision="nf4", about="bitsandbytes 4-bit NF4, double quantization, fp16 compute (QLoRA)",
                unsupported=bitsandbytes_missing)
def quantize_bnb(model: PreTrainedModel, config: BnbConfig) -> PreTrainedModel:
    recorded = notes(model.config)
    blocking = sorted(k for k in ("pruned_heads", "int8_scratch", "autocast") if recorded.get(k))
    if blocking:
        raise StageNotApplicable(f"bitsandbytes loads through from_pretrained, which cannot rebuild {blocking}; "
                                 "quantize an unpruned fp32/fp16 model")
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model.half() if config.compute_dtype == "fp16" else model, tmp)
        return auto_class(model.config).from_pretrained(tmp, quantization_config=quantization_config(config),
                                                    device_map={"": config.device}).eval()


def load_bnb(path, device: str) -> PreTrainedModel:
    """A saved bitsandbytes checkpoint: its config carries the quantization, so it loads pre-quantized."""
    return auto_class(AutoConfig.from_pretrained(path)).from_pretrained(path, device_map={"": device}).eval()


register_runtime("bnb", load=load_bnb, libraries=("bitsandbytes", "accelerate"))  # saved pre-quantized
