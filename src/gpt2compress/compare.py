"""`gpt2compress compare BASE.json NEW.json`: did this commit make any stage slower, bigger or worse?

Every (device, variant) in both runs is compared metric by metric, each with its
direction and a relative threshold. Latency must be worse by more than its
threshold (medians), by more than MIN_CHANGE_MS in absolute terms, and
significantly so (one-sided Mann-Whitney U on the raw timed rounds, p < alpha).
Within-run rounds cannot see process-to-process variation (an A/A pair of a
1 ms model differed by 17 % with p = 4e-8), hence the absolute floor.

Two runs happen in different processes at different times, and a machine's speed
drifts between them (load, clocks, a neighbour: +50 % was seen on an A/A pair). So
a stage's latency is compared relative to the fp32 baseline of its own run — drift
cancels, what the stage costs remains. The baseline's absolute time is shown but
not gated here unless a [[compare]] rule sets a threshold for it: absolute timing
is gated by pytest-benchmark's own history (`bench/run-with-history.sh`).
Thresholds default below and are overridden from the budgets file:

    [[compare]]
    match = "cpu/ov-.*"      # regex on "device/variant"
    metric = "latency"       # or perplexity, peak_memory, size, tokens_per_s
    threshold = 0.20
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from scipy.stats import mannwhitneyu

from .report import BASELINE, FORWARD, Run, summary_row

# metric -> (summary key, +1 if higher is worse / -1 if lower is worse, default relative threshold)
METRICS = {
    "latency": ("median_ms", +1, 0.10),  # relative to the run's fp32; fp32 itself: BASELINE_LATENCY
    "perplexity": ("perplexity", +1, 0.01),
    "peak_memory": ("peak_memory_mb", +1, 0.10),
    "size": ("size_mb", +1, 0.01),
    "tokens_per_s": ("tokens_per_s", -1, 0.10),
}
ALPHA = 0.01
MIN_CHANGE_MS = 1.0  # below this a latency change is timer and allocator noise, whatever its percentage


@dataclass
class Finding:
    device: str
    variant: str
    metric: str
    base: float
    new: float
    change: float  # relative, signed so that > 0 is worse
    threshold: float | None
    p_value: float | None
    regression: bool


def thresholds_from(budgets_path: str | Path | None) -> list[tuple[re.Pattern, str, float]]:
    if not budgets_path:
        return []
    rules = tomllib.loads(Path(budgets_path).read_text()).get("compare", [])
    out = []
    for rule in rules:
        if rule.get("metric") not in METRICS or not isinstance(rule.get("threshold"), (int, float)):
            raise ValueError(f"{budgets_path}: each [[compare]] needs match, metric (one of {', '.join(METRICS)}) "
                             f"and a numeric threshold; got {rule}")
        out.append((re.compile(rule.get("match", ".*")), rule["metric"], float(rule["threshold"])))
    return out


def _threshold(metric: str, where: str, rules, absolute_timing: bool = False) -> float | None:
    """None: shown, not gated (the baseline's absolute timing, unless a rule asks for it)."""
    chosen = None if absolute_timing and metric in ("latency", "tokens_per_s") else METRICS[metric][2]
    for pattern, rule_metric, value in rules:  # the last matching rule wins
        if rule_metric == metric and pattern.fullmatch(where):
            chosen = value
    return chosen


def _relative(run: Run, row: dict) -> tuple[dict, list[float]]:
    """The row's summary and latency samples, timing divided by its own run's fp32 median (fp32: as is)."""
    summary, samples = summary_row(row, None), list(row["samples_ms"])
    base = run.row(row["device"], BASELINE)
    if row["variant"] != BASELINE and base and base.get("median_ms"):
        unit = base["median_ms"]
        summary["median_ms"] /= unit
        summary["tokens_per_s"] = summary["tokens_per_s"] * unit if summary["tokens_per_s"] else None
        samples = [s / unit for s in samples]
    return summary, samples


def compare_runs(base: Run, new: Run, rules=()) -> list[Finding]:
    findings = []
    for row in new.of(FORWARD):  # other kinds are charted, not (yet) compared
        old = base.row(row["device"], row["variant"])
        if old is None:
            continue
        (a, old_samples), (b, new_samples) = _relative(base, old), _relative(new, row)
        p_value = None
        if old_samples and new_samples:
            p_value = mannwhitneyu(new_samples, old_samples, alternative="greater").pvalue
        for metric, (key, direction, _) in METRICS.items():
            if a[key] is None or b[key] is None or a[key] == 0:
                continue
            if metric == "perplexity" and not b["perplexity_meaningful"]:
                continue
            change = direction * (b[key] - a[key]) / a[key]
            where = f"{row['device']}/{row['variant']}"
            limit = _threshold(metric, where, rules, absolute_timing=row["variant"] == BASELINE)
            timed = metric in ("latency", "tokens_per_s")
            worse = limit is not None and change > limit
            if timed:
                change_ms = change * (old.get("median_ms") or 0)
                worse = worse and change_ms > MIN_CHANGE_MS and (p_value is None or p_value < ALPHA)
            findings.append(Finding(row["device"], row["variant"], metric, a[key], b[key], change, limit,
                                    p_value if timed else None, worse))
    return findings


def machine_differences(base: Run, new: Run) -> list[str]:
    keys = ("cpu", "machine", "processor")
    out = [f"{k}: {base.machine.get(k)} → {new.machine.get(k)}" for k in keys if base.machine.get(k) != new.machine.get(k)]
    a, b = base.machine.get("gpt2compress", {}), new.machine.get("gpt2compress", {})
    out += [f"{k}: {a.get(k)} → {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return out


def format_table(findings: list[Finding]) -> str:
    lines = [f"{'device/variant':40} {'metric':13} {'base':>11} {'new':>11} {'change':>8} {'limit':>7} {'p':>8}  verdict"]
    for f in findings:
        p = "" if f.p_value is None else f"{f.p_value:.1e}"
        verdict = "REGRESSION" if f.regression else ("better" if f.change < 0 else "ok")
        limit = "info" if f.threshold is None else f"{f.threshold:.0%}"
        lines.append(f"{f.device + '/' + f.variant:40} {f.metric:13} {f.base:11.4g} {f.new:11.4g} "
                     f"{f.change:+8.1%} {limit:>7} {p:>8}  {verdict}")
    return "\n".join(lines)
