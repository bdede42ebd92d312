"""Generation and training rows in summary.md and charts: decode tokens/s, TTFT, training tokens/s and memory."""

from __future__ import annotations

from pathlib import Path

from .charts import bar_panels, fmt
from .report import BASELINE, Run, mb

GENERATE, TRAIN = "generate", "train"


def _label(row: dict) -> str:
    return f"{row['variant']} b{row['batch_size']}"


def _generate_values(key: str):
    def values(run: Run, device: str) -> dict[str, float]:
        return {_label(r): r[key] for r in run.of(GENERATE) if r["device"] == device and r.get(key) is not None}

    return values


def _train_values(key: str, scale=lambda v: v):
    def values(run: Run, device: str) -> dict[str, float]:
        return {r["variant"]: scale(r[key]) for r in run.of(TRAIN) if r["device"] == device and r.get(key) is not None}

    return values


def throughput_charts(runs: list[Run], out: Path) -> list[Path]:
    charts = [
        bar_panels(runs, out, "decode_tokens_per_s", "decode tokens/s per stage and batch (higher is better)",
                   "tokens/s", _generate_values("decode_tokens_per_s")),
        bar_panels(runs, out, "ttft", "time to first token per stage and batch (prefill; lower is better)", "ms",
                   _generate_values("ttft_ms")),
        bar_panels(runs, out, "train_tokens_per_s", "training tokens/s per setup (higher is better)", "tokens/s",
                   _train_values("train_tokens_per_s")),
        bar_panels(runs, out, "train_memory", "peak training memory per setup", "MiB",
                   _train_values("peak_memory_train_bytes", mb)),
    ]
    return [c for c in charts if c]


def _ratio(row: dict, base: dict | None, key: str) -> float | None:
    return row[key] / base[key] if base and base.get(key) else None


def generate_section(runs: list[Run]) -> list[str]:
    lines = []
    for run in runs:
        for device, rows in run.by_device(GENERATE):
            first = rows[0]
            lines += [f"## Generate: {run.label} — {device} (prompt {first['prompt_len']}, "
                      f"{first['new_tokens']} new tokens, greedy, KV cache)", "",
                      "| variant | batch | TTFT ms | ×TTFT | decode ms/token p50 | p90 | p99 | decode tokens/s | ×decode |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for r in rows:
                base = next((b for b in rows if b["variant"] == BASELINE and b["batch_size"] == r["batch_size"]), None)
                lines.append(f"| {r['variant']} | {r['batch_size']} | {fmt(r['ttft_ms'], '.1f')} "
                             f"| {fmt(_ratio(r, base, 'ttft_ms'))} | {fmt(r['decode_p50_ms'], '.2f')} "
                             f"| {fmt(r['decode_p90_ms'], '.2f')} | {fmt(r['decode_p99_ms'], '.2f')} "
                             f"| {fmt(r['decode_tokens_per_s'], ',.1f')} | {fmt(_ratio(r, base, 'decode_tokens_per_s'))} |")
            lines.append("")
    return lines


def train_section(runs: list[Run]) -> list[str]:
    lines = []
    for run in runs:
        for device, rows in run.by_device(TRAIN):
            base = next((r for r in rows if r["variant"] == BASELINE), None)
            lines += [f"## Train: {run.label} — {device}", "",
                      "| setup | precision | attention | tokens/step (accumulation) | step ms | tokens/s | ×tokens/s "
                      "| peak MiB | loss first → last |", "|---|---|---|---|---|---|---|---|---|"]
            for r in rows:
                lines.append(f"| {r['variant']} | {r['precision']} | {r['attention']} | {r['tokens_per_step']} "
                             f"({r['accumulation']}) | {fmt(r['step_ms'], '.0f')} | {fmt(r['train_tokens_per_s'], ',.0f')} "
                             f"| {fmt(_ratio(r, base, 'train_tokens_per_s'))} | {fmt(mb(r['peak_memory_train_bytes']), '.0f')} "
                             f"| {r['losses'][0]:.3f} → {r['losses'][-1]:.3f} |")
            lines.append("")
    return lines
