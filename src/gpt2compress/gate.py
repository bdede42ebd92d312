"""`gpt2compress history gate RESULTS --base REF`: this run against the recorded run of its merge base.

The base is the run of `git merge-base HEAD REF` on the same runner class, or of its nearest recorded ancestor
(named in the output). A metric regresses only when it is worse than its threshold (catalog / `[[compare]]`)
and than its noise floor, **and** outside the spread it has shown between processes: the relative range
(max − min) / median of its value over the last SPREAD_RUNS recorded runs of the class on the base's branch,
timing as the paired ratio to fp32. Rounds inside one process do not see that spread, so no in-process p-value
is used. With fewer than MIN_SPREAD_RUNS such runs the spread is unknown and the finding says so.
"""

from __future__ import annotations

import statistics
import subprocess
from dataclasses import dataclass

from .budgets import CompareRule
from .catalog import metrics_of
from .compare import Finding, compare_metric, observed
from .history import HistoryError, Store, StoredRun
from .report import Run

SPREAD_RUNS = 10
MIN_SPREAD_RUNS = 3
ANCESTORS = 200  # how far back to look for a recorded ancestor of the merge base


@dataclass
class GateResult:
    base: StoredRun
    base_note: str  # which commit the base run is, and why
    findings: list[Finding]
    spreads: dict[tuple, float | None]  # (case, metric) -> relative spread over recent runs (None: unknown)
    accepted: str | None = None  # why this commit's regressions were accepted (`history accept`)

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.regression]

    @property
    def failed(self) -> bool:
        return bool(self.regressions) and self.accepted is None


def _git(*args: str) -> list[str]:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return out.split()


def base_run(store: Store, runner: str, base_ref: str, head: str = "HEAD") -> tuple[StoredRun, str]:
    """The recorded run of the merge base (or its nearest recorded ancestor) on this runner class."""
    merge_base = (_git("merge-base", head, base_ref) or _git("rev-parse", base_ref) or [None])[0]
    if merge_base is None:
        raise HistoryError(f"--base {base_ref}: git knows no such ref here (fetch it: git fetch origin {base_ref})")
    recorded = {run.info.commit: run for run in store.runs(runner)}  # a commit recorded twice: its latest run
    for distance, commit in enumerate(_git("rev-list", f"--max-count={ANCESTORS}", merge_base)):
        if commit in recorded:
            note = "the merge base" if distance == 0 else f"{distance} commit(s) before the merge base {merge_base[:12]}"
            return recorded[commit], f"{commit[:12]} ({note})"
    raise HistoryError(f"no run of runner class {runner!r} is recorded for the merge base {merge_base[:12]} of "
                       f"{base_ref} or its {ANCESTORS} ancestors: record one on {base_ref} first "
                       f"(gpt2compress history record results.json)")


def spreads(store: Store, runner: str, ref: str | None, upto: int) -> dict[tuple, list[float]]:
    """(case, metric) -> the values of the last SPREAD_RUNS runs of this class on `ref`, up to run `upto`, from the
    latest accepted regression on (the runs before it measured other code)."""
    accepted = store.accepted(runner)
    runs = [r for r in store.runs(runner) if r.id <= upto and (ref is None or r.info.ref == ref)]
    starts = [i for i, r in enumerate(runs) if r.info.commit in accepted]
    runs = runs[starts[-1] if starts else 0:][-SPREAD_RUNS:]
    values: dict[tuple, list[float]] = {}
    for stored in runs:
        for record in store.load(stored.id).records:
            for m in metrics_of(record.kind):
                value = observed(m, record)
                if value is not None:
                    values.setdefault((record.case, m.name), []).append(value)
    return values


def relative_range(values: list[float]) -> float | None:
    if len(values) < MIN_SPREAD_RUNS or not statistics.median(values):
        return None
    return (max(values) - min(values)) / abs(statistics.median(values))


def gate(store: Store, new: Run, runner: str, base_ref: str, rules: tuple[CompareRule, ...] = (),
         head: str = "HEAD", commit: str | None = None) -> GateResult:
    """`commit`: the gated run's commit (accepted regressions of it pass)."""
    base, note = base_run(store, runner, base_ref, head)
    old = store.load(base.id)
    history = spreads(store, runner, base.info.ref, base.id)
    findings, known = [], {}
    for record in new.records:
        before = old.find(record.case)
        if before is None:
            continue
        for m in metrics_of(record.kind):
            spread = relative_range(history.get((record.case, m.name), []))
            known[(record.case, m.name)] = spread
            finding = compare_metric(m, before, record, rules, spread=spread, in_process_p=False)
            if finding:
                findings.append(finding)
    return GateResult(base, note, findings, known, store.accepted(runner).get(commit) if commit else None)


def annotations(result: GateResult) -> list[str]:
    """GitHub Actions `::error` lines, one per regression (`::warning` once accepted)."""
    level = "warning" if result.accepted else "error"
    return [f"::{level} title=gpt2compress regression::{f.where} {f.metric}: {f.base:.4g} → {f.new:.4g} "
            f"({f.change:+.1%}, limit {f.threshold:.0%}) against {result.base_note}" for f in result.regressions]


def spread_note(result: GateResult) -> str:
    unknown = sum(1 for s in result.spreads.values() if s is None)
    return (f"between-process spread known for {len(result.spreads) - unknown} of {len(result.spreads)} metrics "
            f"(from the last {SPREAD_RUNS} runs of the class; {MIN_SPREAD_RUNS} needed)" + ("" if not unknown else
            "; where unknown, only the threshold and noise floor decide"))

