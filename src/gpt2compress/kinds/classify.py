"""Classify (seed 004): AG News classification per compression variant and device: accuracy, macro F1, size,
latency. Each variant is the fp32 classifier (fine-tuned once, cached) put through the same stages as the LM
variants; budgets gate its accuracy drop against that classifier, measured in the same run. Its cases measure
in the `classify_ctx` fixture's context (`measure.classify.classify_context`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..core.cases import Case
from ..core.kinds import Kind, Page, Setting, register_kind
from ..core.metrics import CLASSIFY
from ..core.records import ClassifyRecord
from ..core.variants import Built, build
from ..measure.classify import CLASSIFY_BASELINE, CLASSIFY_VARIANTS, evaluate
from ..measure.fields import footprint, identity, measured_once
from ..measure.pairing import Reference, Runner, ms, own_runner, paired_latency
from ..report.task_pages import classify_charts, classify_section

CLASSIFY_BATCH = 16
CLASSIFY_ROUNDS, CLASSIFY_WARMUP = 10, 2
CLASSIFY_SCORES = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "confusion_matrix", "eval_rows")


def classify_reference(cctx: Any) -> Reference:
    """The fp32 classifier: accuracy and F1 on the eval split, size; timed on one right-padded batch."""
    chain = CLASSIFY_VARIANTS[CLASSIFY_BASELINE]
    built = build(CLASSIFY_BASELINE, cctx, chain)
    batch = next(cctx.eval.batches(CLASSIFY_BATCH))
    record = ClassifyRecord(**identity(built, cctx), **footprint(built), **_classify_fields(cctx, batch),
                            **evaluate(built.model, cctx.eval, len(cctx.news.classes)))
    return Reference(record, lambda: build(CLASSIFY_BASELINE, cctx, chain).model, batch)


def _classify_fields(cctx: Any, batch: dict) -> dict[str, Any]:
    return {"dataset": cctx.news.name, "classes": list(cctx.news.classes), "train_rows": len(cctx.train),
            "seq_len": cctx.settings.seq_len, "batch_size": batch["input_ids"].shape[0]}


def classify_record(built: Built, cctx: Any, reference: Reference, runner: Runner = own_runner) -> ClassifyRecord:
    batch = reference.inputs
    if built.name == reference.record.variant:
        scores = measured_once(reference, CLASSIFY_SCORES)
    else:
        scores = evaluate(built.model, cctx.eval, len(cctx.news.classes))
    record = ClassifyRecord(**identity(built, cctx), **footprint(built), **_classify_fields(cctx, batch), **scores)
    paired = paired_latency(record, built.model, reference, batch, CLASSIFY_ROUNDS, CLASSIFY_WARMUP, runner)
    return record.against(dataclasses.replace(reference.record, latency_samples_ms=ms(paired.reference)))


def measure(built: Built, cctx: Any, reference: Reference, runner: Runner, options: dict[str, Any]) -> ClassifyRecord:
    return classify_record(built, cctx, reference, runner)


def reference_for(s: Setting) -> tuple[tuple, Any]:
    return (), lambda: classify_reference(s.ctx)


def cases() -> list[Case]:
    """`--stages X` selects cls-X too (the classifier put through X's chain)."""
    return [Case(CLASSIFY, v, chain, aliases=(v.removeprefix("cls-"),)) for v, chain in CLASSIFY_VARIANTS.items()]


KIND = register_kind(Kind(CLASSIFY, ClassifyRecord, cases, reference_for, measure,
                          Page(classify_section, classify_charts),
                          smoke=("cls-int8-scratch", "cls-ov-int8-static", "cls-bnb-nf4"),
                          tiers={"tour": ("cls-int8-scratch", "cls-ov-int8-static")}, family="classifier",
                          context="classify_ctx"))
