"""AG News classification on a handful of AG-News-like rows written here: data, classifier, stages, metrics, budget."""

import csv
import json
import random
from dataclasses import replace

import pytest
import torch

from gpt2compress.core.budgets import Budget, load_budgets
from gpt2compress.cli import main
from gpt2compress.measure.classify import (CLASSIFY_BASELINE, CLASSIFY_VARIANTS, classification_metrics,
                                               classifier_source, classify_context, evaluate, load_ag_news)
from gpt2compress.build.data import DataSourceError
from gpt2compress.core.records import ClassifyRecord
from gpt2compress.build.stages.int8_scratch import Int8Linear
from gpt2compress.core.variants import build

from helpers import ROOT, run_bench

CLASSES = ("World", "Sports", "Business", "Sci/Tech")
WORDS = (("minister", "election", "embassy", "troops"), ("match", "coach", "league", "goal"),
         ("shares", "profit", "market", "bank"), ("software", "space", "chip", "internet"))


def write_agnews(directory, per_class=24, seed=0):
    """AG News' layout (header, labels 1-4, title, description); every class has its own words, so it is learnable."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "test.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["label", "title", "description"])
        for i in range(per_class * 4):
            words = WORDS[i % 4]
            title, body = " ".join(rng.choices(words, k=3)), " ".join(rng.choices(words, k=6))
            out.writerow([i % 4 + 1, title, "News\\today: " + body])
    (directory / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return directory


@pytest.fixture
def news(tmp_path):
    return load_ag_news(write_agnews(tmp_path / "ag_news"), eval_fraction=0.25)


@pytest.fixture
def cctx(ctx, news):
    settings = replace(ctx.settings, finetune_max_steps=24, finetune_samples=None, eval_samples=None,
                       finetune_lr=3e-3)
    return classify_context(ctx.source, news, settings, ctx.corpus)


def test_split_is_stratified_seeded_and_text_is_title_and_description(news, tmp_path):
    assert news.classes == CLASSES and len(news.train.texts) == 72 and len(news.eval.texts) == 24
    assert [news.eval.labels.count(c) for c in range(4)] == [6] * 4
    again = load_ag_news(tmp_path / "ag_news", eval_fraction=0.25)
    assert again.eval == news.eval and again.cache_key == news.cache_key
    assert load_ag_news(tmp_path / "ag_news", eval_fraction=0.25, seed=1).eval != news.eval
    assert all(". News today: " in t for t in news.train.texts)  # backslash line breaks undone


def test_bad_agnews_input_names_the_fix(tmp_path, monkeypatch):
    with pytest.raises(DataSourceError, match="--agnews"):
        load_ag_news(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "test.csv").write_text("label,title,description\nWorld,a,b\n")
    with pytest.raises(DataSourceError, match="labels 1-4"):
        load_ag_news(tmp_path / "bad")
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataSourceError, match="offline, pass --agnews DIR"):
        load_ag_news("ag_news")


def test_classifier_starts_from_the_lm_and_pools_the_last_real_token(ctx, news):
    source = classifier_source(ctx.source, news.classes)
    model = source.model
    lm_state = ctx.source.model.transformer.state_dict()
    assert all(torch.equal(v, lm_state[k]) for k, v in model.transformer.state_dict().items())
    assert model.config.pad_token_id == ctx.source.tokenizer.pad_token_id and model.config.num_labels == 4
    ids = torch.tensor([ctx.source.tokenizer.encode("the market and the bank")])
    padded = torch.cat([ids, torch.full((1, 5), model.config.pad_token_id)], 1)
    mask = torch.cat([torch.ones_like(ids), torch.zeros(1, 5, dtype=torch.long)], 1)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=padded, attention_mask=mask).logits, model(input_ids=ids).logits)


def test_metrics_match_a_hand_count():
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], n_classes=4)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    # per class precision 1/2, 2/3, 1, 0 (no predictions: 0); recall 1/2, 1, 1/2, 0
    assert m["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 1) / 4)
    assert m["recall_macro"] == pytest.approx(2 / 4)


def test_finetuned_classifier_learns_and_int8_keeps_it(cctx):
    """The shipped int8 budget passes a correct quantization and fails one whose scales are wrecked."""
    fp32 = build(CLASSIFY_BASELINE, cctx, CLASSIFY_VARIANTS[CLASSIFY_BASELINE])
    base = evaluate(fp32.model, cctx.eval, 4)["accuracy"]
    assert base >= 0.75  # chance is 0.25
    int8 = build("cls-int8-scratch", cctx, CLASSIFY_VARIANTS["cls-int8-scratch"])
    assert int8.info["precision"] == "int8-w" and isinstance(int8.model.score, Int8Linear)
    limits = load_budgets(ROOT / "bench" / "budgets.toml").budget_for("cpu", "tiny", "cls-int8-scratch").limits
    budget = Budget({"max_accuracy_drop": limits["max_accuracy_drop"]})

    def scored(model) -> ClassifyRecord:
        return ClassifyRecord(variant="cls-int8-scratch", device="cpu", reference_values={"accuracy": base},
                              **evaluate(model, cctx.eval, 4))

    assert budget.violations(scored(int8.model)) == []
    for module in int8.model.modules():
        if isinstance(module, Int8Linear):
            module.scale.mul_(8)
    assert budget.violations(scored(int8.model))[0].startswith("max_accuracy_drop")


def test_bench_gates_accuracy_keeps_the_rows_and_reports_them(tmp_path, local_checkpoint):
    """One bench run: classifiers under a budget one of them breaks, plus fp32's forward scored on HellaSwag."""
    agnews = write_agnews(tmp_path / "ag_news", per_class=12)
    budgets = tmp_path / "b.toml"
    budgets.write_text("version = 1\n[cpu.'*'.cls-int8-scratch]\nmax_size_ratio = 0.01\nmax_accuracy_drop = 0.5\n")
    out = tmp_path / "results.json"
    run = run_bench(local_checkpoint, out, "--agnews", str(agnews), "--budgets", str(budgets), "--stages",
                    "fp32,cls-fp32,cls-int8-scratch,cls-bnb-nf4", "-k", "classify or test_forward",
                    "--hellaswag", str(ROOT / "tests" / "data" / "hellaswag_tiny.jsonl"), suite="")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "max_size_ratio: measured" in run.stdout and "SKIPPED" in run.stdout.upper()
    rows = [b["extra_info"] for b in json.loads(out.read_text())["benchmarks"]]
    classify = {r["variant"]: r for r in rows if r["kind"] == "classify"}
    assert set(classify) == {"cls-fp32", "cls-int8-scratch"}  # bnb: CUDA only, skipped with the reason
    info = classify["cls-int8-scratch"]
    assert info["budget"] == {"max_size_ratio": 0.01, "max_accuracy_drop": 0.5}
    assert len(info["confusion_matrix"]) == 4 and sum(map(sum, info["confusion_matrix"])) == info["eval_rows"]
    assert info["compression"] > 2 and classify["cls-fp32"]["accuracy_drop"] == 0
    forward = next(r for r in rows if r["kind"] == "forward")
    assert forward["hellaswag_examples"] == 8 and 0 <= forward["hellaswag_acc_norm"] <= 1

    assert main(["plot", str(out), "--out", str(tmp_path / "charts")]) == 0
    summary = (tmp_path / "charts" / "summary.md").read_text()
    assert "## Classification (ag_news/test.csv, seed 004)" in summary
    assert "| cls-int8-scratch | finetune → int8_scratch |" in summary
    assert "## HellaSwag" in summary and "| fp32 | cpu |" in summary
    assert (tmp_path / "charts" / "confusion-cpu-cls-int8-scratch.png").stat().st_size > 10_000
