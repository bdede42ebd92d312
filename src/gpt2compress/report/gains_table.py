"""End-to-end gains between two variants: seed 001's table (training memory ↓66 %, throughput ×3, Δppl +0.9).

One table per run and device, variant A (default: the fp32 baseline) against B (default:
the full stack present on that device). Every number comes from rows the suite already
wrote: forward (memory, tokens/s, latency, perplexity), generate (decode tokens/s and
latency, TTFT, per batch size) and train. A variant is trained by the train case of its
own name, else of the longest prefix of it: quantizing after training does not change
training, so `distilled-lora-pruned-int8` trains as `distilled-lora`. A number missing
from the JSON shows "–", never zero.
"""

from __future__ import annotations

from typing import Callable

from ..core.kinds import reference_of
from ..core.metrics import FORWARD, GENERATE, TRAIN
from ..core.records import Record
from .charts import fmt
from ..history.runs import Run

STACKS = ("distilled-lora-pruned-int8", "distilled-lora-pruned-nf4")  # default B: the first one on the device

Change = Callable[[float, float], str]


def percent(a: float, b: float) -> str:
    return f"{(b / a - 1) * 100:+.0f} %"


def times(a: float, b: float) -> str:
    return f"×{b / a:.2f}"


def difference(a: float, b: float) -> str:
    return f"{b - a:+.2f}"


def trained_as(run: Run, device: str, variant: str) -> Record | None:
    """The train row for `variant`: its own case, else the case named by the longest prefix of its name."""
    rows = {r.variant: r for r in run.of(TRAIN, device)}
    parts = variant.split("-")
    return next((rows["-".join(parts[:n])] for n in range(len(parts), 0, -1) if "-".join(parts[:n]) in rows), None)


def default_pair(run: Run, device: str) -> tuple[str, str] | None:
    present = {r.variant for r in run.records if r.device == device}
    stack = next((s for s in STACKS if s in present), None)
    return (reference_of(FORWARD), stack) if stack else None


def _measures(run: Run, device: str, variant: str) -> dict[str, float | None]:
    """Label -> value for one variant; labels that depend on the batch size carry it."""
    forward, train = run.record(device, variant), trained_as(run, device, variant)
    out = {
        "training peak memory, MiB": getattr(train, "peak_memory_train_mb", None),
        "training tokens/s": getattr(train, "train_tokens_per_s", None),
        "inference peak memory, MiB": getattr(forward, "peak_memory_mb", None),
        "forward tokens/s": getattr(forward, "tokens_per_s", None),
        "forward latency, median ms": getattr(forward, "median_ms", None),
    }
    for r in run.of(GENERATE, device):
        if r.variant == variant:
            b = r.batch_size
            out[f"generation decode tokens/s (batch {b})"] = r.decode_tokens_per_s
            out[f"generation latency, ms/token p50 (batch {b})"] = r.decode_p50_ms
            out[f"time to first token, ms (batch {b})"] = r.ttft_ms
    out["perplexity"] = getattr(forward, "perplexity", None)
    return out


def _change_for(label: str) -> Change:
    if label == "perplexity":
        return difference
    return times if "tokens/s" in label else percent


def gains_rows(run: Run, device: str, a: str, b: str) -> list[tuple[str, float | None, float | None, str]]:
    """(measure, A's value, B's value, change) for every measure either variant has."""
    of_a, of_b = _measures(run, device, a), _measures(run, device, b)
    rows = []
    for label in dict.fromkeys([*of_a, *of_b]):
        va, vb = of_a.get(label), of_b.get(label)
        change = _change_for(label)(va, vb) if va and vb is not None else "–"
        rows.append((label, va, vb, change))
    return rows


def _training_note(run: Run, device: str, a: str, b: str) -> str:
    cases = [trained_as(run, device, v) for v in (a, b)]
    return " vs ".join(c.variant if c else "–" for c in cases)


def gains_section(runs: list[Run], pair: tuple[str, str] | None = None) -> list[str]:
    lines = []
    for run in runs:
        for device in run.devices:
            a, b = pair or default_pair(run, device) or (None, None)
            present = {r.variant for r in run.records if r.device == device}
            if a not in present or b not in present:
                continue
            lines += [f"## Gains: {run.label} — {device}: {a} → {b}", "",
                      f"Training rows: train cases {_training_note(run, device, a, b)}. "
                      "Δ % and × are B against A; perplexity is the absolute difference.", "",
                      f"| measure | {a} | {b} | change |", "|---|---|---|---|"]
            lines += [f"| {label} | {fmt(va, '.4g')} | {fmt(vb, '.4g')} | {change} |"
                      for label, va, vb, change in gains_rows(run, device, a, b)]
            lines.append("")
    return lines


def check_pair(runs: list[Run], pair: tuple[str, str]) -> None:
    """`--gains A,B` naming a variant no run holds is a typo, not an empty table."""
    known = {r.variant for run in runs for r in run.of(FORWARD)}
    missing = [v for v in pair if v not in known]
    if missing:
        raise ValueError(f"--gains: no forward rows for {', '.join(missing)}; variants in the results: "
                         f"{', '.join(sorted(known))}")
