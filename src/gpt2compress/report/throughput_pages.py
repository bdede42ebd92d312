"""Generation and training rows in summary.md and charts: decode tokens/s, TTFT, training tokens/s and memory."""

from __future__ import annotations

from pathlib import Path

from ..catalog import GENERATE, METRICS, PEER_RUNTIMES, TRAIN, kept_pairs, median_ratio_interval
from ..records import Record
from .charts import fmt, metric_bars
from .runs import Run


def _label(record: Record) -> str:
    return f"{record.variant} b{record.batch_size}" if record.kind == GENERATE else record.variant


CHARTS = {  # file stem: (kind, catalog metric, what a bar is)
    "decode_tokens_per_s": (GENERATE, "decode_tokens_per_s", "per stage and batch"),
    "ttft": (GENERATE, "ttft", "per stage and batch (prefill)"),
    "train_tokens_per_s": (TRAIN, "train_tokens_per_s", "per setup"),
    "train_memory": (TRAIN, "train_peak_memory", "per setup"),
}


def throughput_charts(runs: list[Run], out: Path) -> list[Path]:
    charts = [metric_bars(runs, out, stem, kind, METRICS[name], per, _label)
              for stem, (kind, name, per) in CHARTS.items()]
    return [c for c in charts if c]


def generate_section(runs: list[Run]) -> list[str]:
    lines = []
    for run in runs:
        for device, rows in run.by_device(GENERATE):
            first = rows[0]
            lines += [f"## Generate: {run.label} — {device} (prompt {first.prompt_len}, "
                      f"{first.new_tokens} new tokens, greedy, KV cache)", "",
                      "| variant | batch | TTFT ms | ×TTFT | decode ms/token p50 | p90 | p99 | decode tokens/s | ×decode |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for r in rows:
                lines.append(f"| {r.variant} | {r.batch_size} | {fmt(r.ttft_ms, '.1f')} "
                             f"| {fmt(r.ratios.get('ttft'))} | {fmt(r.decode_p50_ms, '.2f')} "
                             f"| {fmt(r.decode_p90_ms, '.2f')} | {fmt(r.decode_p99_ms, '.2f')} "
                             f"| {fmt(r.decode_tokens_per_s, ',.1f')} | {fmt(r.ratios.get('decode_tokens_per_s'))} |")
            peers = peer_lines(rows)
            lines += ["", *peers, ""] if peers else [""]
    return lines


def peer_lines(rows: list[Record]) -> list[str]:
    """Our fastest decode against each peer engine's, per batch size. Each side is its own ratio to fp32 rounds
    interleaved with it, so the two are compared as measured side by side, not across a run's drift; the 95 %
    interval says whether "faster than the peer" survives the rounds' noise."""
    lines = []
    metric = METRICS["decode_tokens_per_s"]
    key = metric.name
    for batch in sorted({r.batch_size for r in rows}):
        rated = [r for r in rows if r.batch_size == batch and r.ratios.get(key)]
        ours = [r for r in rated if r.runtime not in PEER_RUNTIMES]
        if not ours:
            continue
        best = max(ours, key=lambda r: r.ratios[key])
        for peer in (r for r in rated if r.runtime in PEER_RUNTIMES):
            interval = median_ratio_interval(kept_pairs(metric, best), kept_pairs(metric, peer))
            spread = f"95 % interval {fmt(interval[0])}–{fmt(interval[1])}; " if interval else ""
            ours_vs_peer = fmt(best.ratios[key] / peer.ratios[key])
            lines.append(f"- b{batch}: our fastest decode, {best.variant}, is {ours_vs_peer}× {peer.variant}'s "
                         f"({spread}×decode {fmt(best.ratios[key])} vs {fmt(peer.ratios[key])})")
    return lines


def train_section(runs: list[Run]) -> list[str]:
    lines = []
    for run in runs:
        for device, rows in run.by_device(TRAIN):
            lines += [f"## Train: {run.label} — {device}", "",
                      "| setup | precision | attention | tokens/step (accumulation) | step ms | tokens/s | ×tokens/s "
                      "| peak MiB | loss first → last |", "|---|---|---|---|---|---|---|---|---|"]
            for r in rows:
                lines.append(f"| {r.variant} | {r.precision} | {r.attention} | {r.tokens_per_step} "
                             f"({r.accumulation}) | {fmt(r.step_ms, '.0f')} | {fmt(r.train_tokens_per_s, ',.0f')} "
                             f"| {fmt(r.ratios.get('train_tokens_per_s'))} | {fmt(r.peak_memory_train_mb, '.0f')} "
                             f"| {r.losses[0]:.3f} → {r.losses[-1]:.3f} |")
            lines.append("")
    return lines
