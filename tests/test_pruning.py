import pytest
import torch

from gpt2compress.runtimes.pytorch import load_model, save_model
from gpt2compress.measure.memory import parameter_count
from gpt2compress.build.stages.pruning import (PruneConfig, head_importance, head_mask, heads_per_layer,
                                                   heads_to_prune_per_layer, prune_attention_heads, prune_heads)

from helpers import random_gpt2, random_windows

PLAN = {0: [1, 3], 1: [0]}


def logits(model, windows):
    with torch.no_grad():
        return model(input_ids=windows.input_ids, attention_mask=windows.attention_mask).logits


def masks_for(model, plan):
    masks = [torch.ones(n) for n in heads_per_layer(model)]
    for layer, heads in plan.items():
        masks[layer][heads] = 0
    return masks


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_pruned_logits_equal_masked_logits(attn, windows):
    model = random_gpt2()
    model.config._attn_implementation = attn
    with head_mask(model, masks_for(model, PLAN)):
        masked = logits(model, windows)
    unmasked = logits(model, windows)
    prune_heads(model, PLAN)
    pruned = logits(model, windows)
    assert not torch.allclose(masked, unmasked, atol=1e-3)  # the heads mattered
    torch.testing.assert_close(pruned, masked, atol=1e-5, rtol=1e-5)


def test_prune_removes_exactly_the_chosen_heads(model):
    before = {i: blk.attn.c_attn.weight.clone() for i, blk in enumerate(model.transformer.h)}
    n_params = parameter_count(model)
    prune_heads(model, PLAN)
    assert heads_per_layer(model) == [3, 4]
    assert model.config.gpt2compress["pruned_heads"] == {"0": [1, 3], "1": [0]}
    d, width = 8, 40
    # layer 0 keeps heads 0, 2, 4: its q block is exactly those columns of the original q block
    kept = torch.cat([torch.arange(h * d, (h + 1) * d) for h in (0, 2, 4)])
    torch.testing.assert_close(model.transformer.h[0].attn.c_attn.weight[:, : 3 * d], before[0][:, kept])
    torch.testing.assert_close(model.transformer.h[0].attn.c_attn.weight[:, 3 * d : 6 * d], before[0][:, kept + width])
    # 3 heads x (qkv: 3 * 40*8 + 3*8 bias, proj: 8*40 rows) removed
    assert n_params - parameter_count(model) == 3 * (3 * (40 * d + d) + d * 40)


def test_second_pruning_records_original_indices(model):
    prune_heads(model, {0: [0]})
    prune_heads(model, {0: [0]})  # current head 0 is original head 1
    assert model.config.gpt2compress["pruned_heads"]["0"] == [0, 1]


def test_pruned_model_survives_save_load(model, windows, tmp_path):
    prune_heads(model, PLAN)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert heads_per_layer(loaded) == [3, 4]
    torch.testing.assert_close(logits(loaded, windows), logits(model, windows), atol=0, rtol=0)


def test_rounding_keeps_one_head_and_rounds_half_up():
    assert heads_to_prune_per_layer(12, 0.2) == 2
    assert heads_to_prune_per_layer(5, 0.2) == 1
    assert heads_to_prune_per_layer(10, 0.25) == 3  # 2.5 -> 3
    assert heads_to_prune_per_layer(2, 0.9) == 1
    with pytest.raises(ValueError, match="fraction"):
        heads_to_prune_per_layer(12, 1.0)


def test_cannot_prune_every_head(model):
    with pytest.raises(ValueError, match="cannot prune"):
        prune_heads(model, {0: [0, 1, 2, 3, 4]})


def test_importance_finds_a_dead_head(model):
    """A head whose output projection is zero cannot change the loss: lowest score, pruned first."""
    with torch.no_grad():
        model.transformer.h[1].attn.c_proj.weight[2 * 8 : 3 * 8] = 0
    data = random_windows(n=8)
    scores = head_importance(model, data)
    assert int(torch.argmin(scores[1])) == 2 and float(scores[1][2]) == 0.0
    prune_attention_heads(model, PruneConfig(data, fraction=0.2))
    assert model.config.gpt2compress["pruned_heads"]["1"] == [2]
    assert heads_per_layer(model) == [4, 4]
