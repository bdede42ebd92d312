"""`gpt2compress compare BASE NEW`: did this commit make any case slower, bigger or worse — every kind?

Each case in both runs (kind, device, variant, shape) is compared on every metric of its kind
(`catalog.metrics_of`): forward latency, tokens/s, perplexity, size, memory, energy, HellaSwag;
generate TTFT, decode tokens/s and its p99; training tokens/s and peak memory; classification
accuracy and F1 (a value scored on another eval set than the base's is not compared: `Metric.same`).
A metric regresses when it is worse by more than its threshold (the catalog's
default, or a `[[compare]]` rule of the budgets file), by more than its noise floor in absolute
terms (1 ms of latency; for accuracy two standard errors of the eval set, 2·sqrt(p(1−p)/n)),
and — where both runs have at least MIN_SAMPLES rounds — significantly (one-sided Mann-Whitney
U, p < ALPHA).

Timing is compared as each run's ratio to its own reference (paired rounds: fp32 ran just before
each of the variant's), so a machine that is faster or slower as a whole cancels. The reference
itself is compared in absolute time, shown but not gated unless a rule sets a threshold for it.
Rounds inside one process do not see how another process differs, so the p-value is a floor on
evidence, not proof; `history gate` (issue 14) measures the spread across processes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..budgets import CompareRule
from ..catalog import Metric, metrics_of, pair_ratios, reference_of
from ..records import Record
from .runs import SESSION_KEYS, Run

ALPHA = 0.01
MIN_SAMPLES = 5  # with fewer rounds a side, a one-sided Mann-Whitney test cannot reach p < ALPHA at all


@dataclass
class Finding:
    where: str  # kind/device/variant[-bN]
    metric: str
    base: float
    new: float
    change: float  # relative, signed so that > 0 is worse
    threshold: float | None  # None: shown, not gated
    p_value: float | None
    regression: bool
    compared_as: str  # "ratio to the run's reference" or "value"


def _is_reference(record: Record) -> bool:
    return record.variant == reference_of(record.kind)


def _observed(m: Metric, record: Record) -> tuple[float | None, list[float]]:
    """The value compared and its rounds: timing as the ratio to the run's reference (per-pair ratios as rounds)."""
    if m.timing and not _is_reference(record):
        rounds = pair_ratios(getattr(record, m.samples), record.reference_rounds.get(m.samples)) if m.samples else []
        return record.ratios.get(m.name), rounds
    return m.value(record), list(getattr(record, m.samples, None) or []) if m.samples else []


def observed(m: Metric, record: Record) -> float | None:
    """The value a gate compares: timing as the paired ratio to the run's reference, the rest as measured."""
    return record.ratios.get(m.name) if m.timing and not _is_reference(record) else m.value(record)


def _threshold(m: Metric, record: Record, rules: tuple[CompareRule, ...]) -> float | None:
    chosen = None if m.timing and _is_reference(record) else m.threshold
    for rule in rules:  # the last matching rule wins
        if rule.matches(record, m.name):
            chosen = rule.threshold
    return chosen


def _p_value(m: Metric, old: list[float], new: list[float]) -> float | None:
    if len(old) < MIN_SAMPLES or len(new) < MIN_SAMPLES:
        return None
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(new, old, alternative="greater" if m.direction > 0 else "less").pvalue)


def compare_metric(m: Metric, old: Record, new: Record, rules: tuple[CompareRule, ...] = (),
                   spread: float | None = None, in_process_p: bool = True) -> Finding | None:
    """`spread`: the relative change this metric has shown between processes with unchanged code (the history
    gate's); a change inside it is not a regression. `in_process_p`: also require a significant Mann-Whitney
    test on the rounds (compare does; the history gate, which knows the between-process spread, does not)."""
    (a, old_rounds), (b, new_rounds) = _observed(m, old), _observed(m, new)
    if a is None or b is None or a == 0 or m.ungated(new) or m.scored_on(old) != m.scored_on(new):
        return None
    change = m.worsening(a, b)
    limit = _threshold(m, new, rules)
    absolute = abs(change) * abs(m.value(old) or 0) if m.timing else abs(b - a)  # in the metric's unit
    p = _p_value(m, old_rounds, new_rounds) if in_process_p else None
    worse = (limit is not None and change > limit and absolute > m.floor(old) and (p is None or p < ALPHA)
             and (spread is None or change > spread))
    compared_as = "ratio to the run's reference" if m.timing and not _is_reference(new) else "value"
    return Finding(new.where(), m.name, a, b, change, limit, p, worse, compared_as)


def compare_runs(base: Run, new: Run, rules: tuple[CompareRule, ...] = ()) -> list[Finding]:
    findings = []
    for record in new.records:
        old = base.find(record.case)
        if old is not None:
            findings += [f for m in metrics_of(record.kind) if (f := compare_metric(m, old, record, rules))]
    return findings


def machine_differences(base: Run, new: Run) -> list[str]:
    keys = ("cpu", "machine", "processor")
    out = [f"{k}: {base.machine.get(k)} → {new.machine.get(k)}" for k in keys
           if base.machine.get(k) != new.machine.get(k)]
    a, b = base.machine.get("gpt2compress", {}), new.machine.get("gpt2compress", {})
    out += [f"{k}: {a.get(k)} → {b.get(k)}" for k in sorted(set(a) | set(b))
            if k not in SESSION_KEYS and a.get(k) != b.get(k)]
    return out


def _cells(f: Finding) -> list[str]:
    verdict = "REGRESSION" if f.regression else ("better" if f.change < 0 else "ok")
    return [f.where, f.metric, f"{f.base:.4g}", f"{f.new:.4g}", f"{f.change:+.1%}",
            "info" if f.threshold is None else f"{f.threshold:.0%}", "" if f.p_value is None else f"{f.p_value:.1e}",
            verdict]


HEADER = ["kind/device/variant", "metric", "base", "new", "change", "limit", "p", "verdict"]


def format_table(findings: list[Finding]) -> str:
    widths = (44, 20, 11, 11, 8, 7, 8, 0)
    lines = [" ".join(f"{h:{w}}" for h, w in zip(HEADER, widths)).rstrip()]
    lines += [" ".join(f"{c:{w}}" for c, w in zip(_cells(f), widths)).rstrip() for f in findings]
    return "\n".join(lines)


def format_markdown(findings: list[Finding]) -> str:
    """GitHub-flavoured markdown (for $GITHUB_STEP_SUMMARY): regressions first, then the rest."""
    ordered = sorted(findings, key=lambda f: not f.regression)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("REGRESSION", "**REGRESSION**") for c in _cells(f)) + " |" for f in ordered]
    return "\n".join(lines)
