"""Task accuracy in summary.md and charts: seed 004's AG News table, its performance and efficiency bars and
confusion matrices, HellaSwag per variant."""

from __future__ import annotations

import re
from pathlib import Path

from ..core.metrics import CLASSIFY, FORWARD, METRICS
from .charts import fmt, machine_footer, metric_bars, save
from ..history.runs import Run

# seed 004's two comparisons: performance (accuracy, F1) and efficiency (size, time per batch); file stem: metric
CLASSIFY_CHARTS = {"classify-accuracy": "accuracy", "classify-f1": "f1_macro", "classify-size": "size",
                   "classify-latency": "latency"}


def classify_section(runs: list[Run]) -> list[str]:
    """Seed 004's results table, one per run and device; Δ and × against the fp32 classifier of that run."""
    lines = []
    for run in runs:
        for device, rows in run.by_device(CLASSIFY):
            first = rows[0]
            lines += [f"## Classification ({first.dataset}, seed 004): {run.label} — {device}", "",
                      f"{first.eval_rows} eval rows, {first.train_rows} fine-tuning rows, {first.seq_len} "
                      f"tokens; latency is one right-padded batch of {first.batch_size}.", "",
                      "| variant | chain | precision | accuracy | F1 | precision (macro) | recall (macro) | size MiB "
                      "| ms/batch | ms/sample | compression × | Δ accuracy (points) |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in rows:
                drop = r.accuracy_drop
                lines.append(
                    f"| {r.variant} | {' → '.join(r.chain)} | {r.precision} | {r.accuracy:.4f} "
                    f"| {r.f1_macro:.4f} | {r.precision_macro:.4f} | {r.recall_macro:.4f} "
                    f"| {fmt(r.size_mb, '.2f')} | {fmt(r.median_ms, '.2f')} "
                    f"| {fmt(r.ms_per_sample, '.3f')} | {fmt(r.compression, '.2f')} "
                    f"| {'–' if drop is None else f'{0.0 - drop:+.2f}'} |")  # 0.0 - : no '-0.00'
            lines.append("")
    return lines


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


def classify_charts(runs: list[Run], out: Path) -> list[Path]:
    """A bar per classifier for each of seed 004's performance and efficiency metrics, then a confusion matrix
    per classifier."""
    bars = [metric_bars(runs, out, stem, CLASSIFY, METRICS[name], "per classifier (AG News)")
            for stem, name in CLASSIFY_CHARTS.items()]
    return [chart for chart in bars if chart] + confusion_charts(runs, out)


def confusion_charts(runs: list[Run], out: Path) -> list[Path]:
    """One PNG per run, device and classifier: rows are the true class, columns the predicted one."""
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    paths = []
    for run in runs:
        for r in run.of(CLASSIFY):
            fig, ax = plt.subplots(figsize=(5.6, 4.8))
            ConfusionMatrixDisplay(np.array(r.confusion_matrix), display_labels=r.classes).plot(
                ax=ax, cmap="Blues", values_format="d", colorbar=False)
            ax.set_title(f"{r.variant} ({r.device}): accuracy {r.accuracy:.3f}, F1 {r.f1_macro:.3f}")
            machine_footer(fig, [run])
            prefix = f"{run.label}-" if len(runs) > 1 else ""
            paths.append(save(fig, out, _slug(f"confusion-{prefix}{r.device}-{r.variant}")))
    return paths


def hellaswag_section(runs: list[Run]) -> list[str]:
    """Forward rows that were scored on HellaSwag (`--hellaswag`); absent otherwise."""
    lines = []
    for run in runs:
        rows = [r for r in run.of(FORWARD) if r.hellaswag_acc is not None]
        if not rows:
            continue
        lines += [f"## HellaSwag (zero-shot, completion scoring, seed 003): {run.label}", "",
                  "| variant | device | acc | acc_norm (per character) | examples |", "|---|---|---|---|---|"]
        lines += [f"| {r.variant} | {r.device} | {r.hellaswag_acc:.4f} | {r.hellaswag_acc_norm:.4f} "
                  f"| {r.hellaswag_examples} |" for r in rows]
        lines.append("")
    return lines
