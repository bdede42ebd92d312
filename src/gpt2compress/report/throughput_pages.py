"""Generation and training rows in summary.md and charts: decode tokens/s, TTFT, training tokens/s and memory."""

from __future__ import annotations

from pathlib import Path

from ..core.kinds import reference_of
from ..core.metrics import GENERATE, METRICS, PEER_RUNTIMES, TRAIN, kept_pairs, median_ratio_interval
from ..core.records import Record
from .ceiling_table import ceiling_table
from .charts import fmt, metric_bars
from ..history.runs import Run


def _label(record: Record) -> str:
    return f"{record.variant} b{record.batch_size}" if record.kind == GENERATE else record.variant


CHARTS = {  # file stem: (kind, catalog metric, what a bar is)
    "decode_tokens_per_s": (GENERATE, "decode_tokens_per_s", "per stage and batch"),
    "ttft": (GENERATE, "ttft", "per stage and batch (prefill)"),
    "train_tokens_per_s": (TRAIN, "train_tokens_per_s", "per setup"),
    "train_memory": (TRAIN, "train_peak_memory", "per setup"),
}


def _charts(kind: str, runs: list[Run], out: Path) -> list[Path]:
    charts = [metric_bars(runs, out, stem, kind, METRICS[name], per, _label)
              for stem, (of, name, per) in CHARTS.items() if of == kind]
    return [c for c in charts if c]


def generate_charts(runs: list[Run], out: Path) -> list[Path]:
    return _charts(GENERATE, runs, out)


def train_charts(runs: list[Run], out: Path) -> list[Path]:
    return _charts(TRAIN, runs, out)


def generate_section(runs: list[Run]) -> list[str]:
    lines = []
    for run in runs:
        for device, rows in run.by_device(GENERATE):
            first = rows[0]
            lines += [f"## Generate: {run.label} — {device} (prompt {first.prompt_len}, "
                      f"{first.new_tokens} new tokens, greedy, KV cache)", "",
                      "| variant | batch | TTFT ms | ×TTFT | decode ms/token p50 | p90 | p99 "
                      "| decode tokens/s | ×decode |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for r in rows:
                lines.append(f"| {r.variant} | {r.batch_size} | {fmt(r.ttft_ms, '.1f')} "
                             f"| {fmt(r.ratios.get('ttft'))} | {fmt(r.decode_p50_ms, '.2f')} "
                             f"| {fmt(r.decode_p90_ms, '.2f')} | {fmt(r.decode_p99_ms, '.2f')} "
                             f"| {fmt(r.decode_tokens_per_s, ',.1f')} | {fmt(r.ratios.get('decode_tokens_per_s'))} |")
            fastest = fastest_lines(rows)
            lines += ["", *fastest, ""] if fastest else [""]
            lines += ceiling_table(rows, "decode_tokens_per_s")
    return lines


# How a "fastest" line reads for each metric it is drawn for: what is compared, how "ours against the other" is
# said, and the table column the ratios come from.
FASTEST_PHRASES = {"decode_tokens_per_s": ("decode", "is {ratio}× {other}'s", "×decode"),
                   "latency": ("forward", "takes {ratio}× {other}'s time", "×latency")}


def _interval(interval: tuple[float, float] | None) -> str:
    return f"95 % interval {fmt(interval[0])}–{fmt(interval[1])}" if interval else ""


def fastest_lines(rows: list[Record], metric_name: str = "decode_tokens_per_s") -> list[str]:
    """Per input shape (a decode's batch size, a forward's batch × sequence): our fastest variant against the
    reference, then against each peer engine's. Against the reference the ratio is the record's × column, the
    median of its per-round ratios, and the 95 % interval says whether a target such as "≤ 0.15× fp32" holds
    beyond the rounds' noise. Against a peer, each side is its own ratio to fp32 rounds interleaved with it, so
    the two are compared as measured side by side, not across a run's drift."""
    lines = []
    metric = METRICS[metric_name]
    what, says, column = FASTEST_PHRASES[metric_name]
    fastest = max if metric.better == "higher" else min
    for shape in sorted({r.shape for r in rows}):
        rated = [r for r in rows if r.shape == shape and r.ratios.get(metric.name)]
        ours = [r for r in rated if r.runtime not in PEER_RUNTIMES]
        if not ours:
            continue
        best = fastest(ours, key=lambda r: r.ratios[metric.name])
        best_ratio, best_pairs = best.ratios[metric.name], kept_pairs(metric, best)
        head = f"- b{' × '.join(map(str, shape))}: our fastest {what}, {best.variant},"
        if best.variant != (reference := reference_of(best.kind)):
            spread = _interval(median_ratio_interval(best_pairs))
            lines.append(f"{head} {says.format(ratio=fmt(best_ratio), other=reference)}"
                         + (f" ({spread})" if spread else ""))
        for peer in (r for r in rated if r.runtime in PEER_RUNTIMES):
            spread = _interval(median_ratio_interval(best_pairs, kept_pairs(metric, peer)))
            peer_ratio = peer.ratios[metric.name]
            lines.append(f"{head} {says.format(ratio=fmt(best_ratio / peer_ratio), other=peer.variant)} "
                         f"({spread + '; ' if spread else ''}{column} {fmt(best_ratio)} vs {fmt(peer_ratio)})")
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
