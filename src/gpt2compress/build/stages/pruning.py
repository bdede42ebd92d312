"""Attention-head pruning, physically: pruned heads leave the weight matrices.

Scores follow Michel et al. 2019 ("Are Sixteen Heads Really Better than One?"): a
mask m_h multiplies each head's output; importance is |dL/dm_h| summed over data,
L2-normalised per layer. The lowest-scoring heads of every layer are removed.

Rounding: `fraction` of each layer's heads, rounded to the nearest whole head
(half up), at least 0 and at most heads - 1 (a layer always keeps one head).
GPT-2's 12 heads at 20 % -> 2 heads (16.7 %); `tiny`'s 5 heads -> exactly 1.

transformers 5.x dropped `prune_heads`, so slicing is done here: the q, k and v
columns of `c_attn` and the rows of `c_proj` of a pruned head are cut, and the
layer's `num_heads`/`split_size` shrink. Which original heads were removed is
recorded in `config.gpt2compress["pruned_heads"]` so `io.load_model` can rebuild
the shapes before loading the weights.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from ..data import Windows
from ...runtimes.pytorch import notes, record
from ...core.progress import track
from ...core.registry import CPU, CUDA, register_restorer, register_stage


@dataclass(frozen=True)
class PruneConfig:
    data: Windows
    fraction: float = 0.2
    batch_size: int = 8


def attention_layers(model: PreTrainedModel) -> list[nn.Module]:
    return [block.attn for block in model.transformer.h]


def heads_per_layer(model: PreTrainedModel) -> list[int]:
    return [attn.num_heads for attn in attention_layers(model)]


def heads_to_prune_per_layer(n_heads: int, fraction: float) -> int:
    if not 0 <= fraction < 1:
        raise ValueError(f"prune fraction must be in [0, 1); got {fraction}")
    return min(int(fraction * n_heads + 0.5), n_heads - 1)


@contextlib.contextmanager
def head_mask(model: PreTrainedModel, mask: list[torch.Tensor]):
    """Multiply each head's output by mask[layer][head] (a hook on `c_proj`'s input)."""

    def hook_for(layer_mask: torch.Tensor, head_dim: int):
        def scale_heads(module, args):
            (x,) = args
            heads = x.view(*x.shape[:-1], -1, head_dim) * layer_mask.to(x.dtype)[:, None]
            return (heads.view_as(x),)

        return scale_heads

    handles = [
        attn.c_proj.register_forward_pre_hook(hook_for(m, attn.head_dim))
        for attn, m in zip(attention_layers(model), mask)
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def head_importance(model: PreTrainedModel, data: Windows, batch_size: int = 8) -> list[torch.Tensor]:
    """|dL/dm_h| summed over `data`, L2-normalised per layer (Michel et al. 2019)."""
    device = next(model.parameters()).device
    masks = [torch.ones(n, device=device, requires_grad=True) for n in heads_per_layer(model)]
    scores = [torch.zeros(n, device=device) for n in heads_per_layer(model)]
    was_training, grads = model.training, [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        with head_mask(model, masks):
            for batch in track(list(data.batches(batch_size)), "head importance"):
                batch = {k: v.to(device) for k, v in batch.items()}
                labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
                loss = model(**batch, labels=labels).loss
                for score, grad in zip(scores, torch.autograd.grad(loss, masks)):
                    score += grad.abs()
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
        model.train(was_training)
    return [s / s.norm().clamp_min(1e-12) for s in scores]


def _slice_conv1d(layer: Conv1D, index: torch.Tensor, dim: int) -> Conv1D:
    """Conv1D keeps its weight as (in, out): dim=1 cuts outputs, dim=0 cuts inputs."""
    weight = layer.weight.index_select(dim, index).clone()
    bias = layer.bias if dim == 0 else layer.bias.index_select(0, index)
    new = Conv1D(weight.shape[1], weight.shape[0]).to(weight.device, weight.dtype)
    new.weight = nn.Parameter(weight)
    new.bias = nn.Parameter(bias.clone())
    return new


def prune_heads(model: PreTrainedModel, heads: dict[int, list[int]]) -> PreTrainedModel:
    """Remove `heads[layer]` (indices into the layer's *current* heads) in place."""
    pruned = {int(k): list(v) for k, v in notes(model.config).get("pruned_heads", {}).items()}
    for layer, drop in heads.items():
        if not drop:
            continue
        attn = attention_layers(model)[layer]
        if len(set(drop)) >= attn.num_heads or not all(0 <= h < attn.num_heads for h in drop):
            raise ValueError(f"layer {layer} has {attn.num_heads} heads; cannot prune {sorted(drop)}")
        keep = [h for h in range(attn.num_heads) if h not in set(drop)]
        d, width = attn.head_dim, attn.split_size
        index = torch.cat([torch.arange(h * d, (h + 1) * d) for h in keep]).to(attn.c_attn.weight.device)
        attn.c_attn = _slice_conv1d(attn.c_attn, torch.cat([index, index + width, index + 2 * width]), dim=1)
        attn.c_proj = _slice_conv1d(attn.c_proj, index, dim=0)
        original = [h for h in range(model.config.n_head) if h not in pruned.get(layer, [])]
        pruned[layer] = sorted(pruned.get(layer, []) + [original[h] for h in drop])
        attn.num_heads, attn.split_size = len(keep), len(keep) * d
    record(model, "pruned_heads", {str(k): v for k, v in sorted(pruned.items())})
    return model


@register_restorer("pruned_heads")
def restore_pruned_shapes(model: PreTrainedModel, pruned_heads: dict) -> PreTrainedModel:
    """Re-apply a recorded pruning (original head indices) to a freshly built model."""
    record(model, "pruned_heads", {})
    return prune_heads(model, {int(layer): list(heads) for layer, heads in pruned_heads.items()})


@register_stage("prune", lambda ctx: PruneConfig(ctx.calibration, ctx.settings.prune_fraction), devices=(CPU, CUDA),
                about="remove the least important attention heads of every layer (Michel et al. 2019)")
def prune_attention_heads(model: PreTrainedModel, config: PruneConfig) -> PreTrainedModel:
    """The stage: score heads on data, drop the lowest `fraction` of every layer."""
    scores = head_importance(model, config.data, config.batch_size)
    plan = {
        layer: torch.argsort(score)[: heads_to_prune_per_layer(len(score), config.fraction)].tolist()
        for layer, score in enumerate(scores)
    }
    return prune_heads(model, plan)
