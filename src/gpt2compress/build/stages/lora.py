"""LoRA fine-tuning with peft, optionally with L1-pruned adapters (seed 001, stages 2 and 3).

Low-rank adapters (rank r on GPT-2's Conv1D `c_attn`, `c_proj`, `c_fc`, which store
W as (in, out), hence `fan_in_fan_out=True`) train while the model stays frozen,
then are merged into the weights: the inference variant is a plain GPT-2 of the
same shape and speed, saved and loaded like any other.

Adapter pruning zeroes `sparsity` of every adapter matrix before training and keeps
the mask during it (torch.nn.utils.prune: forward uses weight_orig * mask), then makes
it permanent and checks the resulting sparsity. The mask is L1 (smallest |w| go);
LoRA's B starts at zero, where magnitudes say nothing, so B's mask is random instead.
Sparsity only shrinks the adapter checkpoint (measured: dense safetensors vs a
bitmask + non-zero values encoding vs gzip); the merged model is dense as before.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import peft
import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.nn.utils import prune
from transformers import PreTrainedModel

from ...runtimes.pytorch import notes, record, register_note
from ...core.registry import CPU, CUDA, register_stage
from .finetune import TRAINING_LIBRARIES, FinetuneConfig, run_trainer, training_config

if TYPE_CHECKING:
    from ...core.variants import Context

GPT2_CONV1D = ("c_attn", "c_proj", "c_fc")
SPARSITY_TOLERANCE = 0.005  # per-tensor rounding of the pruned count is far below this


@dataclass(frozen=True)
class AdapterSpec:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = GPT2_CONV1D


@dataclass(frozen=True)
class LoraConfig:
    train: FinetuneConfig
    adapters: AdapterSpec = AdapterSpec()
    sparsity: float = 0.0  # share of every adapter matrix pruned before training
    seed: int = 0  # the random masks of zero-initialised B


def with_adapters(model: PreTrainedModel, spec: AdapterSpec = AdapterSpec()) -> peft.PeftModel:
    """The model, frozen, with trainable LoRA adapters injected in place (peft)."""
    if notes(model.config).get("int8_scratch"):
        raise ValueError("LoRA trains float weights; this model was quantized by int8_scratch. "
                         "Put `lora` before quantization in the chain")
    lora = peft.LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                           target_modules=list(spec.target_modules), fan_in_fan_out=True, task_type="CAUSAL_LM")
    return peft.get_peft_model(model, lora)


def adapter_layers(model: nn.Module) -> list[nn.Linear]:
    """Every LoRA A and B matrix (peft keeps one nn.Linear per adapter name)."""
    return [layer for name, module in model.named_modules() if name.rsplit(".", 1)[-1] in ("lora_A", "lora_B")
            for layer in module.values()]


def prune_adapters(model: nn.Module, sparsity: float, seed: int = 0) -> None:
    """Mask `sparsity` of every adapter matrix; the masks stay on through training (remove with `make_permanent`)."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"adapter sparsity must be in [0, 1); got {sparsity}")
    torch.manual_seed(seed)
    for layer in adapter_layers(model):
        informative = bool(layer.weight.detach().abs().max() > 0)
        (prune.l1_unstructured if informative else prune.random_unstructured)(layer, "weight", amount=sparsity)


def make_permanent(model: nn.Module) -> None:
    for layer in adapter_layers(model):
        if prune.is_pruned(layer):
            prune.remove(layer, "weight")


def adapter_sparsity(model: nn.Module) -> float:
    weights = [layer.weight.detach() for layer in adapter_layers(model)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def adapter_sizes(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Bytes of the adapter checkpoint: dense safetensors (what peft saves), a bitmask + non-zero values
    encoding in safetensors, and the dense file gzipped."""
    dense = safetensors_bytes({k: v.contiguous() for k, v in state.items()})
    sparse = {}
    for name, tensor in state.items():
        nonzero = tensor != 0
        sparse[f"{name}.mask"] = torch.from_numpy(np.packbits(nonzero.flatten().numpy()))
        sparse[f"{name}.values"] = tensor[nonzero].contiguous()
    return {"adapter_dense_bytes": len(dense), "adapter_sparse_bytes": len(safetensors_bytes(sparse)),
            "adapter_gzip_bytes": len(gzip.compress(dense))}


def _check_sparsity(model: nn.Module, wanted: float) -> float:
    measured = adapter_sparsity(model)
    if abs(measured - wanted) > SPARSITY_TOLERANCE:
        raise RuntimeError(f"adapters are {measured:.2%} sparse after training, configured {wanted:.2%}: "
                           "the pruning mask was lost during training")
    return measured


def lora_config(ctx: Context, sparsity: float = 0.0) -> LoraConfig:
    adapters = AdapterSpec(rank=ctx.settings.lora_rank, target_modules=ctx.settings.lora_targets or GPT2_CONV1D)
    return LoraConfig(training_config(ctx, ctx.settings.lora_lr), adapters, sparsity=sparsity)


@register_stage("lora", lora_config, devices=(CPU, CUDA), trains=True,
                libraries=TRAINING_LIBRARIES + ("peft",),
                about="LoRA fine-tuning (peft), adapters merged back into the weights")
@register_stage("lora_pruned", lambda ctx: lora_config(ctx, ctx.settings.adapter_sparsity), devices=(CPU, CUDA),
                trains=True, libraries=TRAINING_LIBRARIES + ("peft",),
                about="LoRA with L1-pruned adapters (mask kept through training), merged back")
def lora_finetune(model: PreTrainedModel, config: LoraConfig) -> PreTrainedModel:
    """Train LoRA adapters on `config.train.data`, then merge them: returns a plain GPT-2."""
    adapted = with_adapters(model, config.adapters)
    trainable, total = adapted.get_nb_trainable_parameters()
    if config.sparsity:
        prune_adapters(adapted, config.sparsity, config.seed)
    state, _ = run_trainer(adapted, config.train)
    make_permanent(adapted)
    sparsity = _check_sparsity(adapted, config.sparsity) if config.sparsity else adapter_sparsity(adapted)
    sizes = adapter_sizes({k: v.detach().cpu() for k, v in peft.get_peft_model_state_dict(adapted).items()})
    losses = [log["loss"] for log in state.log_history if "loss" in log]
    merged = adapted.merge_and_unload()
    merged.requires_grad_(True)  # peft froze the base; a later stage in the chain may train it
    return record(merged.eval(), "lora", {
        "rank": config.adapters.rank, "alpha": config.adapters.alpha,
        "target_modules": list(config.adapters.target_modules),
        "trainable_parameters": trainable, "total_parameters": total, "trainable_percent": 100 * trainable / total,
        "adapter_sparsity": sparsity, **sizes, "steps": state.global_step, "final_loss": losses[-1] if losses else None,
    })


register_note("lora")
