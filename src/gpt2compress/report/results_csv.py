"""`plot` also writes results.csv: one row per record, every catalog metric in its unit and as × the reference.

Seeds 002 and 004 hand their results over as CSV, for a spreadsheet or pandas; the JSON stays the source of
truth (this is written from its records, never read back).
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..core.metrics import METRICS
from ..history.runs import Run

IDENTITY = ("run", "kind", "device", "variant", "shape", "chain", "precision", "runtime")


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def write_results_csv(runs: list[Run], out: Path) -> Path:
    metrics = list(METRICS.values())
    header = [*IDENTITY, *(f"{m.name} ({m.unit})" if m.unit else m.name for m in metrics),
              *(f"{m.name} ×reference" for m in metrics)]
    path = out / "results.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for run in runs:
            for r in run.records:
                mine = [r.kind in m.kinds for m in metrics]
                writer.writerow([run.label, r.kind, r.device, r.variant, "x".join(map(str, r.shape)),
                                 " > ".join(r.chain), r.precision or "", r.runtime or "",
                                 *(_cell(m.value(r)) if ok else "" for m, ok in zip(metrics, mine)),
                                 *(_cell(r.ratios.get(m.name)) if ok else "" for m, ok in zip(metrics, mine))])
    return path
