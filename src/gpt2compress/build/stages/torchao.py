"""PyTorch's own quantization: torchao's `quantize_(model, config)` (issue 43).

Three of its configs, each a stage:
- `torchao_int8_dynamic`: INT8 weights per output channel and INT8 activations per token, quantized at every call
  (`Int8DynamicActivationInt8WeightConfig`: W8A8 without calibration);
- `torchao_int8_weights`: INT8 weights per output channel, activations as they are (`Int8WeightOnlyConfig`);
- `torchao_int4_weights`: INT4 weights in groups of 32 (`IntxWeightOnlyConfig` on CPU, where torchao has no packed
  INT4 kernel without extra builds; `Int4WeightOnlyConfig`'s tinygemm layout on CUDA).

GPT-2's `Conv1D` layers become `nn.Linear` first (torchao quantizes linear layers). The LM head is quantized too:
at batch 1 its 38.6M weights are a third of what a decode step reads at 124M. It is untied from the token
embedding, which stays fp32 (a lookup reads one row). The model stays a torch model: it runs eagerly, in the
same measurement path as every PyTorch variant; its weights are tensor subclasses, saved with `torch.save` and
loaded with `weights_only=True` (runtimes/pytorch.py) after the restorer below has rebuilt the layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import PreTrainedModel

from ..hardware import has_vnni
from ...core.registry import CPU, CUDA, register_restorer, register_stage
from ...runtimes.pytorch import conv1d_to_linear, record

TORCHAO = ("torchao",)
METHODS = ("int8-dynamic", "int8-weights", "int4-weights")
INT4_GROUP = 32  # llama.cpp's Q4_0 block and ov-int4-weights' group: one scale per 32 weights


@dataclass(frozen=True)
class TorchaoConfig:
    method: str
    device: str = "cpu"  # the INT4 layout depends on it, so it is part of the key


def torchao_config(config: TorchaoConfig):
    """torchao's config object for `method` on `device`."""
    from torchao.quantization import (Int4WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig,
                                      Int8WeightOnlyConfig, IntxWeightOnlyConfig)
    from torchao.quantization.granularity import PerGroup

    if config.method not in METHODS:
        raise ValueError(f"unknown torchao method {config.method!r}; choose one of {METHODS}")
    if config.method == "int8-dynamic":
        return Int8DynamicActivationInt8WeightConfig()
    if config.method == "int8-weights":
        return Int8WeightOnlyConfig()
    if config.device == "cuda":
        return Int4WeightOnlyConfig(group_size=INT4_GROUP)
    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP))


def quantizable(module: torch.nn.Module, config: TorchaoConfig) -> bool:
    """Every linear layer, but for INT4 those whose inputs do not split into whole groups (they stay fp32, as NNCF
    leaves them; GPT-2's 768 and 3072 always split)."""
    if not isinstance(module, torch.nn.Linear):
        return False
    return config.method != "int4-weights" or module.in_features % INT4_GROUP == 0


def int8_matmul_missing(device: str) -> str | None:
    """None where torch's INT8 matmul (`aten::_int_mm`, what dynamic W8A8 runs) has a fast CPU kernel."""
    if device == "cuda" or has_vnni():
        return None
    return ("this CPU has no VNNI (avx512_vnni, avx_vnni or amx_int8): torch's INT8 matmul runs a reference loop "
            "here (1.7 G MAC/s, 16x slower than fp32 at the 124M shape on an AVX2-only Zen 3)")


def _config(method: str):
    return lambda ctx: TorchaoConfig(method, ctx.device)


@register_stage("torchao_int8_dynamic", _config("int8-dynamic"), devices=(CPU, CUDA), precision="int8-wa",
                libraries=TORCHAO, unsupported=int8_matmul_missing,
                about="torchao INT8 weights (per channel) and dynamic INT8 activations (per token)")
@register_stage("torchao_int8_weights", _config("int8-weights"), devices=(CPU, CUDA), precision="int8-w",
                libraries=TORCHAO, about="torchao INT8 weight-only (per output channel)")
@register_stage("torchao_int4_weights", _config("int4-weights"), devices=(CPU, CUDA), precision="int4-w",
                libraries=TORCHAO, about=f"torchao INT4 weight-only, groups of {INT4_GROUP}")
def quantize_torchao(model: PreTrainedModel, config: TorchaoConfig) -> PreTrainedModel:
    from torchao.quantization import quantize_

    model = conv1d_to_linear(model.float().eval().to(config.device))  # CUDA's INT4 layout packs on the GPU
    head = model.get_output_embeddings()
    if head is not None and head.weight is model.get_input_embeddings().weight:
        head.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=False)  # untied: see above
    quantize_(model, torchao_config(config), filter_fn=lambda module, fqn: quantizable(module, config))
    record(model, "torchao", asdict(config))
    return model.eval()


@register_restorer("torchao")
def _restore_torchao(model: PreTrainedModel, recorded: dict) -> PreTrainedModel:
    """The same quantized layers (over the fresh model's weights) for the saved tensors to replace."""
    return quantize_torchao(model, TorchaoConfig(**recorded))
