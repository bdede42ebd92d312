"""GPT-2's activation outliers, planted in any source without changing what it computes (`--model tiny-outliers`,
`--model gpt2-random-outliers`, or any source name with `-outliers` after it).

Real GPT-2 carries a few residual-stream channels far larger than the rest: dimensions 138 and 378 of the 124M model
dominate its hidden states (Timkey & van Schijndel, EMNLP 2021), and LLM.int8() (Dettmers et al., 2022) finds
outlier features of magnitude ≥ 6 where the rest stay near 1, which per-tensor INT8 cannot hold (125M's C4
perplexity: 25.65 fp32, 87.76 per-tensor absmax INT8). The models built here (`tiny`, `gpt2-random`) have none, so a
per-tensor static INT8 recipe looks lossless on them.

The transform multiplies a few channels of each block's two LayerNorms (gain and bias) by `scale` and divides the
matching input rows of the linear layer that reads each (attention's `c_attn` after `ln_1`, the MLP's `c_fc` after
`ln_2`) by the same factor. x·W is unchanged channel by channel, so the logits are unchanged (tested to 1e-5); the
activations an INT8 recipe quantizes per tensor now carry channels `scale`× the rest, as GPT-2's do. The final
LayerNorm is left alone: the LM head is tied to the token embedding, so its rows cannot absorb the factor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedModel

from ..core.cache import content_key
from ..core.fingerprint import fingerprint

if TYPE_CHECKING:
    from .sources import Source

SUFFIX = "-outliers"
# where GPT-2 124M's sit (n_embd 768): 138 and 378 (Timkey & van Schijndel), 447 and 138 (Sun et al. 2024, massive
# activations)
GPT2_OUTLIER_DIMS = (138, 378, 447)


@dataclass(frozen=True)
class OutlierRecipe:
    """Three channels, as GPT-2 124M has. `scale` is a dial, not a measurement of GPT-2: at 150 on `tiny` the plain
    per-tensor static INT8 recipes lose what the field reports for GPT-2 (measured: NNCF without SmoothQuant +23 %,
    Neural Compressor's static +66 % perplexity, between Neural Compressor's validated GPT-2 INT8 at +10 % and
    LLM.int8()'s per-tensor absmax at 125M, +242 %), while SmoothQuant, which undoes any such per-channel factor,
    holds (+0.07 %). At 20 the plain ones lose 0.2-0.4 %, at 60 1.6-2.7 %."""

    scale: float = 150.0
    count: int = 3


def channels(n_embd: int, recipe: OutlierRecipe) -> tuple[int, ...]:
    """GPT-2's own outlier dimensions at its width; elsewhere `count` channels spread over the width."""
    if n_embd == 768 and recipe.count == len(GPT2_OUTLIER_DIMS):
        return GPT2_OUTLIER_DIMS
    return tuple(round((i + 0.5) * n_embd / recipe.count) for i in range(recipe.count))


@torch.no_grad()
def plant_outliers(model: PreTrainedModel, recipe: OutlierRecipe = OutlierRecipe()) -> PreTrainedModel:
    """`model` (a GPT2LMHeadModel), changed in place: same logits, outlier channels in every block's LN outputs."""
    picked = list(channels(model.config.n_embd, recipe))
    for block in model.transformer.h:
        for norm, reader in ((block.ln_1, block.attn.c_attn), (block.ln_2, block.mlp.c_fc)):
            norm.weight[picked] *= recipe.scale
            norm.bias[picked] *= recipe.scale
            reader.weight[picked, :] /= recipe.scale  # Conv1D: weight is (in, out), so a row is one input channel
    return model


def outlier_source(parent: Source, recipe: OutlierRecipe = OutlierRecipe()) -> Source:
    """The parent source with outliers planted; keyed by the parent's key, the recipe and this module's code."""
    code = fingerprint((__name__,), ("torch", "transformers"))
    key = content_key("outliers", parent.key, recipe, code)
    return replace(parent, name=parent.name + SUFFIX, model=plant_outliers(parent.model, recipe), key=key)
