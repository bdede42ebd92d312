"""Seed 001's stack: distillation loss and student, LoRA merge equivalence, pruned adapters' sparsity."""

import json

import pytest
import torch
from transformers import GPT2LMHeadModel

from gpt2compress.core.budgets import load_budgets
from gpt2compress.runtimes.pytorch import load_model, record, save_model
from gpt2compress.measure.fields import footprint
from gpt2compress.core.records import ForwardRecord
from gpt2compress.build.stages.distill import (DistillConfig, distill, distillation_loss, mixed_loss,
                                                   shallow_student)
from gpt2compress.build.stages.finetune import FinetuneConfig, run_trainer
from gpt2compress.build.stages.lora import (AdapterSpec, LoraConfig, _check_sparsity, adapter_layers,
                                                lora_finetune, make_permanent, prune_adapters, with_adapters)
from gpt2compress.core.variants import build

from helpers import ROOT, random_gpt2, random_windows, run_bench

DATA = random_windows(n=16, seq_len=16)


def training(max_steps=2, lr=1e-2):
    return FinetuneConfig(DATA, max_steps=max_steps, learning_rate=lr, batch_size=8, warmup_ratio=0.0,
                          show_progress=False)


def logits(model, windows=DATA):
    with torch.no_grad():
        return model(input_ids=windows.input_ids, attention_mask=windows.attention_mask).logits


def test_distillation_loss_is_zero_on_the_teachers_logits_and_ignores_padding():
    teacher = torch.randn(2, 5, 11)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert distillation_loss(teacher, teacher, mask, 2.0).item() == pytest.approx(0, abs=1e-6)
    student = torch.randn(2, 5, 11)
    loss = distillation_loss(student, teacher, mask, 2.0)
    assert loss > 0
    student[0, 3:] = 100.0  # padding positions: any value, same loss
    torch.testing.assert_close(distillation_loss(student, teacher, mask, 2.0), loss)


def test_student_is_the_teachers_blocks_every_other_one():
    teacher = random_gpt2(n_layer=4)
    student = shallow_student(teacher, (0, 2))
    assert isinstance(student, GPT2LMHeadModel) and student.config.n_layer == 2 and teacher.config.n_layer == 4
    for mine, theirs in [(0, 0), (1, 2)]:
        for (name, a), b in zip(student.transformer.h[mine].state_dict().items(),
                                teacher.transformer.h[theirs].state_dict().values()):
            torch.testing.assert_close(a, b, msg=name)
    torch.testing.assert_close(student.transformer.wte.weight, teacher.transformer.wte.weight)
    assert student.lm_head.weight is student.transformer.wte.weight


@pytest.mark.parametrize("keep,message", [((0, 1, 2, 3), "shallower"), ((0, 9), "distinct teacher blocks"),
                                          ((), "distinct teacher blocks")])
def test_bad_student_layers_are_refused(keep, message):
    with pytest.raises(ValueError, match=message):
        shallow_student(random_gpt2(n_layer=4), keep)


def test_a_pruned_teacher_is_refused_with_the_fix():
    teacher = record(random_gpt2(n_layer=4), "pruned_heads", [[1], [], [], []])
    with pytest.raises(ValueError, match="put `distill` first"):
        distill(teacher, DistillConfig(training()))


def test_distillation_lowers_the_mixed_loss_and_checkpoints_every_epoch(tmp_path):
    teacher = random_gpt2(n_layer=4)
    config = DistillConfig(training(max_steps=4), temperature=2.0, alpha=0.5, checkpoint_dir=str(tmp_path))

    def objective(student):
        batch = {"input_ids": DATA.input_ids, "attention_mask": DATA.attention_mask, "labels": DATA.labels}
        with torch.no_grad():
            return mixed_loss(student(**batch), teacher, batch, config.temperature, config.alpha).item()

    before = objective(shallow_student(teacher, (0, 2)))
    student = distill(teacher, config)
    assert objective(student) < before
    notes = student.config.gpt2compress["distill"]
    assert notes["kept_layers"] == [0, 2] and notes["steps"] == 4
    assert notes["checkpoint_steps"] == [2, 4]  # 16 windows / batch 8 = 2 steps an epoch
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def randomize_b(model):
    """LoRA's B starts at zero, which would make any merge trivially exact."""
    for layer in adapter_layers(model):
        if layer.weight.shape[1] == 4:  # B: (out, rank)
            torch.nn.init.normal_(layer.weight, std=0.5)


def test_merged_lora_gives_the_unmerged_logits():
    model = random_gpt2()
    base = logits(model)
    adapted = with_adapters(model, AdapterSpec(rank=4))
    randomize_b(adapted)
    adapted.eval()
    unmerged = logits(adapted)
    assert not torch.allclose(unmerged, base, atol=1e-3)  # the adapters do change the model
    merged = adapted.merge_and_unload()
    assert isinstance(merged, GPT2LMHeadModel) and not adapter_layers(merged)
    torch.testing.assert_close(logits(merged), unmerged, atol=1e-5, rtol=1e-5)


def test_pruned_lora_stage_merges_and_records_what_it_trained(tmp_path):
    model = random_gpt2()
    merged = lora_finetune(model, LoraConfig(training(), AdapterSpec(rank=4), sparsity=0.8))
    lora = merged.config.gpt2compress["lora"]
    per_layer = 4 * ((40 + 120) + (40 + 40) + (40 + 160) + (160 + 40))  # r · (in + out): c_attn, c_proj, c_fc, c_proj
    assert lora["trainable_parameters"] == 2 * per_layer and lora["steps"] == 2
    assert lora["trainable_percent"] == pytest.approx(100 * 2 * per_layer / (model.num_parameters() + 2 * per_layer))
    assert lora["adapter_sparsity"] == pytest.approx(0.8, abs=0.005)
    assert 0 < lora["adapter_sparse_bytes"] < 0.5 * lora["adapter_dense_bytes"]
    assert isinstance(merged, GPT2LMHeadModel) and not adapter_layers(merged)
    assert all(p.requires_grad for p in merged.parameters())  # a later stage may train it
    loaded = load_model(save_model(merged, tmp_path / "m"))
    torch.testing.assert_close(logits(loaded), logits(merged))


def test_pruned_adapters_keep_their_sparsity_through_training():
    adapted = with_adapters(random_gpt2(), AdapterSpec(rank=4))
    prune_adapters(adapted, 0.8)
    masks = [layer.weight_mask.clone() for layer in adapter_layers(adapted)]
    assert 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks) == pytest.approx(0.8, abs=0.005)
    run_trainer(adapted, training(lr=5e-2))
    make_permanent(adapted)
    for layer, mask in zip(adapter_layers(adapted), masks):
        assert torch.all(layer.weight[mask == 0] == 0)
        assert torch.any(layer.weight[mask == 1] != 0)  # B trained away from zero
    assert _check_sparsity(adapted, 0.8) == pytest.approx(0.8, abs=0.005)


def test_sparsity_check_catches_a_lost_mask():
    with pytest.raises(RuntimeError, match="mask was lost"):
        _check_sparsity(with_adapters(random_gpt2(), AdapterSpec(rank=4)), 0.8)


def test_stack_variant_builds_and_its_notes_reach_the_report(ctx):
    built = build("distilled-lora-pruned", ctx)
    assert built.info["heads_per_layer"] == [5] and built.runtime == "torch"
    assert built.info["parameters"] < ctx.source.model.num_parameters()
    notes = footprint(build("distilled-lora-pruned", ctx))["stage_notes"]  # warm: read back from the cache
    assert notes["distill"]["kept_layers"] == [0] and notes["lora"]["adapter_sparsity"] == pytest.approx(0.8, abs=0.01)


def test_stack_budget_fails_the_bench_and_keeps_the_row(tmp_path, local_checkpoint):
    budgets = tmp_path / "b.toml"
    budgets.write_text("version = 1\n[cpu.'*'.distilled-lora-pruned]\nmax_latency_ratio = 0.01\n")
    out = tmp_path / "results.json"
    run = run_bench(local_checkpoint, out, "--stages", "fp32,distilled-lora-pruned", "--budgets", str(budgets),
                    "--finetune-steps", "4")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "max_latency_ratio: measured" in run.stdout and "allowed ≤ 0.01" in run.stdout
    rows = {b["extra_info"]["variant"]: b["extra_info"] for b in json.loads(out.read_text())["benchmarks"]}
    stack = rows["distilled-lora-pruned"]
    assert stack["chain"] == ["distill", "lora_pruned"] and stack["ratios"]["latency"] > 0.01
    assert stack["stage_notes"]["lora"]["adapter_sparsity"] == pytest.approx(0.8, abs=0.01)
    assert stack["heads_per_layer"] == [5]  # the student: one of the teacher's two blocks


def test_shipped_stack_budgets_gate_quality_and_speed():
    budget = load_budgets(ROOT / "bench" / "budgets.toml").budget_for("cpu", "tiny", "distilled-lora-pruned-int8")
    assert {"max_perplexity_ratio", "max_latency_ratio"} <= set(budget.limits)

    def stack(perplexity: float, latency: float) -> ForwardRecord:
        return ForwardRecord(variant="distilled-lora-pruned-int8", device="cpu", size_on_disk_bytes=1,
                             ratios={"perplexity": perplexity, "latency": latency, "size": 0.2})

    assert budget.violations(stack(1.0, 0.6)) == []
    broken = [v.split(":")[0] for v in budget.violations(stack(1.5, 1.0))]
    assert broken == ["max_perplexity_ratio", "max_latency_ratio"]
