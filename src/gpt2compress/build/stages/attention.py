"""Attention implementation as a stage: eager (explicit softmax(QK^T)V), PyTorch SDPA, or FlashAttention-2.

transformers picks SDPA by default, so the fp32 baseline is SDPA; `attn_eager`
shows what the fused kernel buys and `attn_flash2` what FlashAttention-2 adds
(seed 001's FlashAttention stage). The choice is not part of the saved config
in transformers 5, so it is recorded for `io.load_model`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from ...runtimes.pytorch import record
from ...core.registry import CPU, CUDA, register_restorer, register_stage

IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")


@dataclass(frozen=True)
class AttentionConfig:
    implementation: str = "sdpa"


def flash_attention_2(device: str) -> str | None:
    """None if FlashAttention-2 can run here, else why not and what to install."""
    if device != "cuda" or not torch.cuda.is_available():
        return "FlashAttention-2 needs a CUDA GPU"
    if importlib.util.find_spec("flash_attn") is None:
        return "flash-attn is not installed: pip install -e '.[flash]' (Ampere or newer GPU)"
    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        return f"FlashAttention-2 needs compute capability >= 8.0 (Ampere); this GPU is {major}.{minor} (a T4 is 7.5)"
    return None


@register_stage("attn_eager", lambda ctx: AttentionConfig("eager"), devices=(CPU, CUDA),
                about="explicit softmax(QK^T)V attention instead of the default SDPA kernel")
@register_stage("attn_flash2", lambda ctx: AttentionConfig("flash_attention_2"), devices=(CUDA,),
                about="FlashAttention-2 kernels (Ampere+, half precision)", unsupported=flash_attention_2,
                libraries=("flash-attn",))
def set_attention(model: PreTrainedModel, config: AttentionConfig) -> PreTrainedModel:
    if config.implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown attention {config.implementation!r}; choose one of {IMPLEMENTATIONS}")
    model.set_attn_implementation(config.implementation)
    return record(model, "attn_implementation", config.implementation)


@register_restorer("attn_implementation")
def _restore_attention(model: PreTrainedModel, implementation: str) -> PreTrainedModel:
    return set_attention(model, AttentionConfig(implementation))
