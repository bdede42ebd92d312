"""Each forward and decode row against this machine's ceiling (measure/roofline.py), and per shape how far the
fastest variant is from its floor and which resource binds: what tells a user whether 0.17× fp32 is good here."""

from __future__ import annotations

from ..core.metrics import METRICS, PEER_RUNTIMES
from ..core.records import Record
from .charts import fmt


def _share(r: Record) -> str:
    return f"{100 * r.ceiling_share:.0f} %" if r.ceiling_share is not None else "–"


def ceiling_table(rows: list[Record], metric_name: str) -> list[str]:
    """A table of the rows that carry a roofline, then one line per shape on the fastest of ours; nothing when no
    row does (a GPU run, a probe that could not run: the rows' `missing` says why)."""
    rows = [r for r in rows if r.roofline]
    if not rows:
        return []
    lines = ["Against this machine's ceiling (`gpt2compress ceiling`; a row's floor is the larger of its multiply-adds "
             "at the peak of the unit it computes on and its bytes at the read bandwidth):", "",
             "| variant | computes on | peak G MAC/s | read GB/s | achieved G MAC/s | achieved GB/s | floor ms "
             "| binds | share of ceiling |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        roof = r.roofline
        unit = f"{roof['compute']} ({roof.get('instruction', '')})"
        lines.append(f"| {r.variant} | {unit} | {fmt(roof['peak_gmacs'], ',.1f')} | {fmt(roof['read_gbs'], '.1f')} "
                     f"| {fmt(r.achieved_gmacs, ',.1f')} | {fmt(r.achieved_gbs, '.1f')} | {fmt(r.floor_ms, '.3g')} "
                     f"| {r.binding} | {_share(r)} |")
    return lines + [""] + floor_lines(rows, metric_name) + [""]


def floor_lines(rows: list[Record], metric_name: str) -> list[str]:
    """Per shape: the fastest of our variants (and, where it differs, the fastest that multiplies in INT8), its share
    of the ceiling and what binds it."""
    metric = METRICS[metric_name]
    lines = []
    for shape in sorted({r.shape for r in rows}):
        ours = [r for r in rows if r.shape == shape and r.runtime not in PEER_RUNTIMES and metric.value(r)]
        if not ours:
            continue
        best = (max if metric.better == "higher" else min)(ours, key=metric.value)
        int8 = [r for r in ours if r.roofline["compute"] == "int8"]
        picks = [("fastest", best)] + ([("fastest INT8", i8)] if int8 and (i8 := (
            max if metric.better == "higher" else min)(int8, key=metric.value)) is not best else [])
        for what, r in picks:
            lines.append(f"- b{' × '.join(map(str, shape))}: our {what}, {r.variant}, runs at {_share(r)} of this "
                         f"machine's ceiling ({fmt(r.unit_seconds() * 1e3, '.3g')} ms against a floor of "
                         f"{fmt(r.floor_ms, '.3g')} ms); {r.binding} binds")
    return lines
