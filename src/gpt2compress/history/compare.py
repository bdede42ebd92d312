"""`gpt2compress compare BASE NEW`: did this commit make any case slower, bigger or worse — every kind?

Each case in both runs (kind, device, variant, shape) is compared on every metric of its kind
(`catalog.metrics_of`): forward latency, tokens/s, perplexity, size, memory, energy, HellaSwag;
generate TTFT, decode tokens/s and its p99; training tokens/s and peak memory; classification
accuracy and F1 (a value scored on another eval set than the base's is not compared: `Metric.same`).
A metric regresses when it is worse by more than its threshold (the catalog's default, or a `[[compare]]` rule of
the budgets file) and by more than its noise floor in absolute terms (1 ms of latency; for accuracy two standard
errors of the eval set, 2·sqrt(p(1−p)/n)).

Timing and peak memory move between processes of the same code (`Metric.between_processes`) by more than rounds
inside one process show: two files alone cannot tell a change in them from that spread. `compare` takes each
metric's spread from the runner class's recorded runs (`--history`, or the default history when it holds them): a
change must then also be beyond SPREAD_MARGIN × that spread, as in `history gate`. Without one, such a change past
its threshold is "unsure", named with what would judge it, and fails nothing. Timing is compared as each run's
ratio to its own reference (paired rounds: fp32 ran just before each of the variant's), so a machine that is faster
or slower as a whole cancels; the reference itself is compared in absolute time, shown but not gated unless a rule
sets a threshold for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.budgets import CompareRule
from ..core.kinds import reference_of
from ..core.metrics import Metric, judged_metrics
from ..core.records import Record
from .runs import SESSION_KEYS, Run

@dataclass
class Finding:
    where: str  # kind/device/variant[-bN]
    metric: str
    base: float
    new: float
    change: float  # relative, signed so that > 0 is worse
    threshold: float | None  # None: shown, not gated
    regression: bool
    compared_as: str  # "ratio to the run's reference" or "value"
    unsure: bool = False  # past its threshold, but inside what processes may differ by (the spread is unknown)

    @property
    def improved(self) -> bool:
        """Better by more than its threshold: what the page counts under Improvements and marks "better"."""
        return self.threshold is not None and -self.change > self.threshold


def _is_reference(record: Record) -> bool:
    return record.variant == reference_of(record.kind)


def observed(m: Metric, record: Record) -> float | None:
    """The value a gate compares: timing as the paired ratio to the run's reference, the rest as measured."""
    return record.ratios.get(m.name) if m.timing and not _is_reference(record) else m.value(record)


def threshold_for(m: Metric, record: Record, rules: tuple[CompareRule, ...]) -> float | None:
    chosen = None if m.timing and _is_reference(record) else m.threshold
    for rule in rules:  # the last matching rule wins
        if rule.matches(record, m.name):
            chosen = rule.threshold
    return chosen


def past_threshold(m: Metric, old: Record, change: float, limit: float | None, difference: float) -> bool:
    """Worse than the threshold and than the noise floor, in the metric's unit (a timing ratio's `difference` is
    read as the change of the base's own time; `difference` is |new − old| of what was compared)."""
    absolute = abs(change) * abs(m.value(old) or 0) if m.timing else difference
    return limit is not None and change > limit and absolute > m.floor(old)


def compare_metric(m: Metric, old: Record, new: Record, rules: tuple[CompareRule, ...] = (),
                   spread: float | None = None) -> Finding | None:
    """`spread`: how far this metric may move between processes of unchanged code (the history's, × its margin); a
    change inside it is not a regression. None for a metric that moves between processes: the change is `unsure`."""
    a, b = observed(m, old), observed(m, new)
    if a is None or b is None or a == 0 or m.ungated(new) or m.scored_on(old) != m.scored_on(new):
        return None
    change = m.worsening(a, b)
    limit = threshold_for(m, new, rules)
    past = past_threshold(m, old, change, limit, abs(b - a))
    unknown = spread is None and m.between_processes
    compared_as = "ratio to the run's reference" if m.timing and not _is_reference(new) else "value"
    return Finding(new.where(), m.name, a, b, change, limit, past and not unknown and change > (spread or 0),
                   compared_as, unsure=past and unknown)


def compare_runs(base: Run, new: Run, rules: tuple[CompareRule, ...] = (),
                 bounds: dict[tuple, float] | None = None) -> list[Finding]:
    """`bounds`: (case, metric, what it was scored on) -> how far that metric may move between processes (from the
    runner class's history); a between-process metric missing there is judged `unsure`."""
    findings = []
    for record in new.records:
        old = base.find(record.case)
        if old is None:
            continue
        for m in judged_metrics(record.kind):
            bound = (bounds or {}).get((record.case, m.name, m.scored_on(record)))
            if (f := compare_metric(m, old, record, rules, bound if m.between_processes else 0.0)) is not None:
                findings.append(f)
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
    """A timing ratio carries its unit (×fp32: what it divides by); a change says which way is worse."""
    verdict = "REGRESSION" if f.regression else "unsure" if f.unsure else "better" if f.improved else "ok"
    unit = f"×{reference_of(f.where.split('/')[0])}" if f.compared_as.startswith("ratio") else ""
    way = "worse" if f.change > 0 else "better" if f.change < 0 else ""
    return [f.where, f.metric, f"{f.base:.4g}{unit}", f"{f.new:.4g}{unit}", f"{f.change:+.1%} {way}".strip(),
            "info" if f.threshold is None else f"{f.threshold:.0%}", verdict]


HEADER = ["kind/device/variant", "metric", "base", "new", "change", "limit", "verdict"]


def format_table(findings: list[Finding]) -> str:
    widths = (44, 20, 16, 16, 14, 7, 0)
    lines = [" ".join(f"{h:{w}}" for h, w in zip(HEADER, widths)).rstrip()]
    lines += [" ".join(f"{c:{w}}" for c, w in zip(_cells(f), widths)).rstrip() for f in findings]
    return "\n".join(lines)


def format_markdown(findings: list[Finding]) -> str:
    """GitHub-flavoured markdown (for $GITHUB_STEP_SUMMARY): regressions first, then the rest."""
    ordered = sorted(findings, key=lambda f: not f.regression)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("REGRESSION", "**REGRESSION**") for c in _cells(f)) + " |" for f in ordered]
    return "\n".join(lines)
