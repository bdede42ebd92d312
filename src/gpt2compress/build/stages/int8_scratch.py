"""From-scratch INT8, as seed 004 built it: per-tensor symmetric weights, no library.

Each weight matrix W becomes q = round(W / s) clipped to [-127, 127] with
s = max|W| / 127, stored as int8 (4x smaller than fp32). The error per weight is
at most s / 2. Weights are dequantized on the fly in forward, so the model's
resident weights stay int8; activations stay in float. Biases and LayerNorms stay
fp32 (they are <0.1 % of GPT-2). The token embedding is quantized too; the LM
head, tied to it in GPT-2, reads the same int8 matrix. A sequence classifier's
`score` head is a plain Linear and is quantized like the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from ...runtimes.pytorch import record
from ...core.registry import CPU, CUDA, register_restorer, register_stage


@dataclass(frozen=True)
class Int8Config:
    embeddings: bool = True  # wte (and the tied LM head) and wpe too


def quantize_tensor(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = weight.detach().abs().max().float().clamp_min(1e-12) / 127
    q = torch.round(weight.detach().float() / scale).clamp(-127, 127).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """y = x (q s)^T + b with q stored as int8, shape (out, in)."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(), requires_grad=False)

    @classmethod
    def from_float(cls, weight_out_in: torch.Tensor, bias: torch.Tensor | None) -> Int8Linear:
        return cls(*quantize_tensor(weight_out_in), bias)

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        return self.qweight.to(dtype) * self.scale.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized(x.dtype), bias)


class Int8Embedding(Int8Linear):
    """An embedding table in int8; only the looked-up rows are dequantized."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor):
        super().__init__(qweight, scale, None)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.qweight).float() * self.scale


class TiedInt8Head(nn.Module):
    """GPT-2's LM head shares the token embedding; it reads the embedding's int8 matrix."""

    def __init__(self, embedding: Int8Embedding):
        super().__init__()
        object.__setattr__(self, "embedding", embedding)  # not a submodule: stored once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.embedding.dequantized(x.dtype))


@register_stage("int8_scratch", lambda ctx: Int8Config(), devices=(CPU, CUDA), precision="int8-w",
                about="from-scratch per-tensor symmetric INT8 weights, dequantized in forward")
def quantize_int8_scratch(model: PreTrainedModel, config: Int8Config = Int8Config()) -> PreTrainedModel:
    model = model.float()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                setattr(parent, name, Int8Linear.from_float(child.weight.t(), child.bias))
            elif isinstance(child, nn.Linear) and child is not model.get_output_embeddings():
                setattr(parent, name, Int8Linear.from_float(child.weight, child.bias))
    if config.embeddings:
        transformer = model.transformer
        head = getattr(model, "lm_head", None)  # a classifier has none: its `score` is a Linear, done above
        tied = head is not None and head.weight is transformer.wte.weight
        transformer.wte = Int8Embedding(*quantize_tensor(transformer.wte.weight))
        transformer.wpe = Int8Embedding(*quantize_tensor(transformer.wpe.weight))
        if head is not None:
            model.lm_head = TiedInt8Head(transformer.wte) if tied else Int8Linear.from_float(head.weight, None)
    record(model, "int8_scratch", {"embeddings": config.embeddings})
    return model.eval()


@register_restorer("int8_scratch")
def _restore_int8(model: PreTrainedModel, recorded: dict) -> PreTrainedModel:
    """The same layers, holding the fp32 weights' INT8 until the saved tensors replace them."""
    return quantize_int8_scratch(model, Int8Config(**recorded))
