"""`gpt2compress history gate RESULTS --base REF`: this run against the recorded run of its merge base.

The base is the run of `git merge-base HEAD REF` on the same runner class, or of its nearest recorded ancestor
(named in the output). A metric regresses only when it is worse than the base by its threshold (catalog /
`[[compare]]`) and its noise floor, **and** outside the spread it has shown between processes: worse than the
median of the last MIN_SPREAD_RUNS runs up to the base by more than SPREAD_MARGIN × the spread of the last
SPREAD_RUNS recorded runs of the class on the base's branch (`history_spread`: their relative range, or the range
their median consecutive step implies when that is smaller, so a real step in the history is not taken for
noise), timing as the paired ratio to fp32. Rounds inside one process do not see that spread, so
no in-process p-value is used. With fewer than MIN_SPREAD_RUNS such runs the spread is unknown: the gate then
re-runs the suspects (cases with a regression past the threshold) in `reruns` fresh processes and a suspect regresses
only if every process confirms it, by more than those processes differ among themselves.

`error_rates` replays the gate over N processes of identical code (every ordered pair i → j, each gated with the
other N − 1 as its history, the base i among them): its A/A false alarms, how often a planted slowdown is caught,
and the smallest slowdown caught in ≥ 90 % of pairs, per variant — the numbers README publishes
(investigations/error-rates.sh).
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..core.budgets import CompareRule
from ..core.kinds import reference_of
from ..core.metrics import METRICS, judged_metrics, metrics_of
from ..core.records import Record
from .compare import Finding, compare_metric, observed, threshold_for
from .coverage import Coverage, coverage
from .drift import Drift, drift
from .store import HistoryError, Retirement, Store, StoredRun
from .processes import fresh_process
from .runs import Run
from .same_job import Paired, alternate, apply, paired

SPREAD_RUNS = 10
MIN_SPREAD_RUNS = 3
SPREAD_MARGIN = 1.5  # × the relative range, beyond the recent median: measured, investigations/error-rates.sh, README
# The expected range of n normal values, in σ (Tippett's d2), for n = 2..SPREAD_RUNS; the median |difference| of
# consecutive values is √2 · 0.674 σ = 0.954 σ. Their ratio puts a history's step-based spread on the range's scale.
RANGE_IN_SIGMAS = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847, 9: 2.970, 10: 3.078}
MEDIAN_STEP_IN_SIGMAS = 0.954
ANCESTORS = 200  # how far back to look for a recorded ancestor of the merge base
History = dict[tuple, list[float]]  # (case, metric, what it was scored on) -> its values in recent runs of the class


@dataclass
class GateResult:
    base: StoredRun
    base_note: str  # which commit the base run is, and why
    findings: list[Finding]
    spreads: dict[tuple, float | None]  # (where, metric) -> relative spread between processes (None: unknown)
    accepted: str | None = None  # why this commit's regressions were accepted (`history accept`)
    rerun_note: str = ""  # which suspects were re-run in fresh processes, how often, and why
    coverage: Coverage = dataclasses.field(default_factory=Coverage)  # cases vanished, new, retired
    drift: Drift = dataclasses.field(default_factory=Drift)  # machine and library differences from the base
    paired: list[Paired] = dataclasses.field(default_factory=list)  # the same job's A B A B verdicts (--same-job)
    undecided: list[str] = dataclasses.field(default_factory=list)  # what --same-job was to decide and could not

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.regression]

    @property
    def refusals(self) -> list[str]:
        """What fails the gate besides regressions, and no `history accept` of regressions passes: a case the base
        measured and this run lost, a retired case back, verdicts a drifted library makes not comparable."""
        return self.coverage.failures + self.drift.failures + self.undecided

    @property
    def failed(self) -> bool:
        return (bool(self.regressions) and self.accepted is None) or bool(self.refusals)


def _git(*args: str) -> list[str]:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return out.split()


def tier_of(machine: dict) -> str | None:
    return machine.get("gpt2compress", {}).get("tier")


def base_run(store: Store, runner: str, base_ref: str, head: str = "HEAD",
             tier: str | None = None) -> tuple[StoredRun, str]:
    """The recorded run of the merge base (or its nearest recorded ancestor) on this runner class. A commit recorded
    twice (a push's `--tier pr` run, then the nightly's): its latest run of `tier`, else its latest run."""
    merge_base = (_git("merge-base", head, base_ref) or _git("rev-parse", base_ref) or [None])[0]
    if merge_base is None:
        if not _git("rev-parse", "--git-dir"):
            raise HistoryError(f"--base {base_ref}: the gate runs in the project's git checkout (this is not one)")
        branch = base_ref.removeprefix("origin/")
        raise HistoryError(f"--base {base_ref}: git knows no such ref here (fetch it: git fetch origin {branch}; "
                           "a CI checkout needs fetch-depth: 0)")
    recorded: dict[str, StoredRun] = {}
    failed: list[StoredRun] = []  # never a base: named where the gate steps over them
    for run in store.runs(runner):  # in id order
        if run.failure:
            failed.append(run)
            continue
        kept = recorded.get(run.info.commit)
        if kept is None or tier_of(run.info.machine) == tier or tier_of(kept.info.machine) != tier:
            recorded[run.info.commit] = run
    ancestry = _git("rev-list", f"--max-count={ANCESTORS}", merge_base)
    for distance, commit in enumerate(ancestry):
        if commit in recorded:
            note = ("the merge base" if distance == 0
                    else f"{distance} commit(s) before the merge base {merge_base[:12]}")
            over = [r for r in failed if r.info.commit in ancestry[:distance + 1]]
            stepped = "".join(f"; stepped over failed run {r.id} of {r.info.commit[:12]} ({r.failure})" for r in over)
            return recorded[commit], f"{commit[:12]} ({note}){stepped}"
    if any(r.info.commit in ancestry for r in failed):
        raise HistoryError(f"every recorded run of runner class {runner!r} for the merge base {merge_base[:12]} of "
                           f"{base_ref} and its ancestors failed (runs {', '.join(str(r.id) for r in failed)}: "
                           f"{failed[-1].failure}): a failed run is never a base; make {base_ref}'s bench pass and "
                           "record it (scripts/ci.sh main)")
    raise HistoryError(f"no run of runner class {runner!r} is recorded for the merge base {merge_base[:12]} of "
                       f"{base_ref} or its {ANCESTORS} ancestors: record one on {base_ref} first "
                       f"(gpt2compress history record results.json)")


def spreads(store: Store, runner: str, ref: str | None, upto: int) -> History:
    """(case, metric) -> the values of the last SPREAD_RUNS runs of this class on `ref`, up to run `upto`, from the
    latest accepted regression on (the runs before it measured other code)."""
    accepted = store.accepted(runner)
    runs = [r for r in store.runs(runner) if r.id <= upto and (ref is None or r.info.ref == ref)]
    starts = [i for i, r in enumerate(runs) if r.info.commit in accepted]  # an accepted run may have failed budgets
    passed = [r for r in runs[starts[-1] if starts else 0:] if not r.failure]
    return history_of([store.load(r.id) for r in passed[-SPREAD_RUNS:]])


def history_of(runs: list[Run]) -> History:
    values: History = {}
    for run in runs:
        for record in run.records:
            for m in metrics_of(record.kind):
                if (value := observed(m, record)) is not None:
                    values.setdefault((record.case, m.name, m.scored_on(record)), []).append(value)
    return values


def relative_range(values: list[float]) -> float | None:
    """(max − min) / median: the spread of processes of the same code (re-runs, the error-rate processes)."""
    if len(values) < MIN_SPREAD_RUNS or not statistics.median(values):
        return None
    return (max(values) - min(values)) / abs(statistics.median(values))


def history_spread(values: list[float]) -> float | None:
    """The between-process spread of a history of different commits: its relative range, or, when smaller, the
    range that the median step between consecutive runs implies (RANGE_IN_SIGMAS / MEDIAN_STEP_IN_SIGMAS × that
    step / the median). A real step in the history (an improvement that landed, a regression reverted) widens the
    range to its own size, which would let the next change of that size pass as noise; it moves one or two of the
    steps and not their median. (investigations/error-rates.sh, README: no more false alarms, and a given-back
    improvement caught.)"""
    spread = relative_range(values)
    if spread is None:
        return None
    steps = [abs(after - before) for before, after in zip(values, values[1:])]
    implied = RANGE_IN_SIGMAS[min(len(values), SPREAD_RUNS)] / MEDIAN_STEP_IN_SIGMAS * statistics.median(steps)
    return min(spread, implied / abs(statistics.median(values)))


def spread_bound(values: list[float]) -> float | None:
    """The largest change from the recent level that a history of `values` calls noise: SPREAD_MARGIN × its spread
    (None: too few runs to tell). The gate's rule, and `compare --history`'s."""
    spread = history_spread(values)
    return None if spread is None else spread * SPREAD_MARGIN


def recent_level(values: list[float]) -> float:
    """The history's level at the base: the median of its last MIN_SPREAD_RUNS runs (the base's and the ones
    before it), so one lucky base run does not decide, and a step earlier in the history does not either."""
    return statistics.median(values[-MIN_SPREAD_RUNS:])


def judge(old: Run, new: Run, history: History, rules: tuple[CompareRule, ...] = (),
          reruns: tuple[Run, ...] = ()) -> tuple[list[Finding], dict[tuple, float | None]]:
    """Every metric of every case in both runs. A regression is worse than the base run by its threshold and worse
    than `history`'s recent level by SPREAD_MARGIN × its spread. Where the spread is unknown and `reruns` (the same
    code, fresh processes) have the case, they must all confirm it, beyond the range among themselves. The second
    value: the history's spread of every metric this run measured (None: unknown)."""
    findings, known = [], {}
    for record in new.records:
        before = old.find(record.case)
        if before is None:
            continue
        confirmations = [again for run in reruns if (again := run.find(record.case)) is not None]
        for m in judged_metrics(record.kind):
            values = history.get((record.case, m.name, m.scored_on(record)), [])
            spread = history_spread(values)
            if observed(m, record) is not None:  # energy on a CPU, say, has no spread to know
                known[(record.where(), m.name)] = spread
            confirm = spread is None and bool(confirmations)
            if confirm:
                spread = relative_range([v for r in (record, *confirmations) if (v := observed(m, r)) is not None])
            bound = spread * SPREAD_MARGIN if confirm and spread is not None else None
            # an unknown spread: the threshold and noise floor decide here (and the re-runs, where there are some)
            finding = compare_metric(m, before, record, rules, spread=bound or 0.0)
            if finding and finding.regression and confirm:
                again = [compare_metric(m, before, r, rules, spread=bound or 0.0) for r in confirmations]
                finding.regression = all(f is not None and f.regression for f in again)
            elif finding and finding.regression and spread is not None:
                finding.regression = m.worsening(recent_level(values), finding.new) > spread * SPREAD_MARGIN
            if finding:
                findings.append(finding)
    return findings, known


def suspects(old: Run, new: Run, history: History, rules: tuple[CompareRule, ...] = ()) -> list[Record]:
    """Cases with a regression past the threshold whose spread the history cannot tell: worth fresh processes."""
    findings, known = judge(old, new, history, rules)
    where = {f.where for f in findings if f.regression and known.get((f.where, f.metric)) is None}
    return [r for r in new.records if r.where() in where]


def rerun(new: Run, records: list[Record], times: int) -> list[Run]:
    """The suspects' variants again, `times` fresh pytest processes with the run's own options (its machine
    info keeps the command line), in the directory it ran in."""
    if not new.session.get("argv") or not records:
        return []
    variants = sorted({r.variant for r in records})
    runs = []
    with tempfile.TemporaryDirectory(prefix="gpt2compress-rerun-") as tmp:
        for i in range(times):
            print(f"re-running {','.join(variants)} ({i + 1}/{times})", flush=True)
            if (again := fresh_process(new, variants, Path(tmp) / f"rerun-{i}.json")) is not None:
                runs.append(again)
    return runs


def gate(store: Store, new: Run, runner: str, base_ref: str, rules: tuple[CompareRule, ...] = (),
         head: str = "HEAD", commit: str | None = None, reruns: int = 0, same_job: int = 0) -> GateResult:
    """`commit`: the gated run's commit (accepted regressions of it pass). `reruns`: fresh processes for the
    suspects whose spread the history cannot tell (0: the threshold and noise floor alone decide them).
    `same_job`: pairs of fresh processes, the merge base's code then this run's, for every timed case whose
    history spread hides a change of its threshold (or is unknown); their paired differences decide those."""
    base, note = base_run(store, runner, base_ref, head, tier_of(new.machine))
    old = store.load(base.id)
    history = spreads(store, runner, base.info.ref, base.id)
    again, rerun_note = [], ""
    if reruns and not same_job and (suspect := suspects(old, new, history, rules)):
        names = sorted({r.where() for r in suspect})
        again = rerun(new, suspect, reruns)
        rerun_note = (f"re-ran {', '.join(names)} in {len(again)} fresh process(es): the history holds fewer than "
                      f"{MIN_SPREAD_RUNS} runs of {runner} to tell their between-process spread")
    findings, known = judge(old, new, history, rules, tuple(again))
    pairs: list[Paired] = []
    short = ""
    if same_job and (variants := blind_variants(new, known, rules)):
        merge_base = (_git("merge-base", head, base_ref) or [base.info.commit])[0]
        base_runs, pr_runs = alternate(new, variants, merge_base, same_job)
        pairs = paired(base_runs, pr_runs, rules)
        findings = apply(findings, pairs)
        rerun_note = (f"measured {', '.join(variants)} in {len(pr_runs)} of {same_job} pair(s) of fresh processes, "
                      f"the merge base {merge_base[:12]}'s code then this run's: their paired differences decide "
                      "those cases' timing")
        if len(pr_runs) < same_job:
            short = (f"--same-job {same_job}: only {len(pr_runs)} pair(s) of processes wrote results (run one by "
                     f"hand: pytest bench/ --stages {','.join(variants)}, in a worktree of {merge_base[:12]} and here, "
                     "and read its error)")
    return GateResult(base, note, findings, known, store.accepted(runner).get(commit) if commit else None,
                      rerun_note, coverage(old, new, retirements_for(store, runner, commit or head)), drift(old, new),
                      pairs, [short] if short else [])


def blind_variants(new: Run, known: dict[tuple, float | None], rules: tuple[CompareRule, ...]) -> list[str]:
    """The variants with a timed case the base measured too (`known`: a new variant is not the base's to run) whose
    history spread (× margin) exceeds its threshold, or is unknown."""
    out = set()
    for record in new.records:
        if record.variant == reference_of(record.kind):
            continue
        for m in metrics_of(record.kind):
            if (record.where(), m.name) not in known:
                continue
            spread, limit = known[(record.where(), m.name)], threshold_for(m, record, rules)
            if m.timing and limit is not None and observed(m, record) is not None and (
                    spread is None or spread * SPREAD_MARGIN > limit):
                out.add(record.variant)
    return sorted(out)


def retirements_for(store: Store, runner: str, commit: str) -> tuple[Retirement, ...]:
    """The retirements that apply to `commit`: those made at it or at one of its ancestors."""
    return tuple(r for r in store.retirements(runner) if _is_ancestor(r.commit, commit))


def _is_ancestor(ancestor: str, commit: str) -> bool:
    try:
        return subprocess.run(["git", "merge-base", "--is-ancestor", ancestor, commit], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def annotations(result: GateResult) -> list[str]:
    """GitHub Actions `::error` lines, one per regression (`::warning` once accepted) and one per refusal."""
    level = "warning" if result.accepted else "error"
    return ([f"::{level} title=gpt2compress regression::{f.where} {f.metric}: {f.base:.4g} → {f.new:.4g} "
             f"({f.change:+.1%}, limit {f.threshold:.0%}) against {result.base_note}" for f in result.regressions]
            + [f"::error title=gpt2compress gate::{line}" for line in result.refusals])


def blind_spots(result: GateResult) -> list[str]:
    """Where this class's between-process spread, not the threshold, decides: the smallest change the gate can
    see there (the README's error-rate table measures it)."""
    out = []
    for f in result.findings:
        spread = result.spreads.get((f.where, f.metric))
        if spread is not None and f.threshold is not None and spread * SPREAD_MARGIN > f.threshold:
            out.append(f"{f.where} {f.metric}: changes under {spread * SPREAD_MARGIN:+.0%} of the recent median are "
                       f"inside its between-process spread ({spread:.0%} over recent runs) and pass unseen")
    return out


def spread_note(result: GateResult) -> str:
    unknown = sum(1 for s in result.spreads.values() if s is None)
    return (f"between-process spread known for {len(result.spreads) - unknown} of {len(result.spreads)} metrics "
            f"(from the last {SPREAD_RUNS} runs of the class; {MIN_SPREAD_RUNS} needed)" + ("" if not unknown else
            "; where unknown, only the threshold and noise floor decide"))



@dataclass
class ErrorRates:
    """One variant's gate over N processes of identical code: every ordered pair (N·(N−1))."""

    where: str
    metric: str
    spread: float  # relative range of the metric over all N processes
    pairs: int
    false_alarms: int  # A/A pairs that failed the gate (any metric of the case)
    caught: int  # pairs that flagged the planted slowdown on `metric`
    detectable: float | None  # smallest planted slowdown caught in ≥ DETECT of pairs (None: none up to the grid's end)


DETECT = 0.9
PLANTS = tuple(p / 100 for p in (5, 7.5, 10, 12.5, 15, 20, 25, 30, 40, 50, 75, 100))  # slowdowns tried


def slower(record: Record, factor: float) -> Record:
    """The record as if every timed round took `factor` × as long (its paired reference rounds unchanged)."""
    return dataclasses.replace(record, latency_samples_ms=[x * factor for x in record.latency_samples_ms],
                               ratios={}).derive_ratios()


def _replace(run: Run, record: Record) -> Run:
    return dataclasses.replace(run, records=[record if r.case == record.case else r for r in run.records])


def error_rates(runs: list[Run], planted: float = 0.15, metric: str = "latency",
                rules: tuple[CompareRule, ...] = ()) -> list[ErrorRates]:
    """Per timed case: A/A false alarms, the planted slowdown caught, and the minimum detectable slowdown, each
    pair (i → j) gated exactly as `history gate` would, with the spread of the other processes as its history."""
    pairs = [(i, j) for i in range(len(runs)) for j in range(len(runs)) if i != j]
    # the others in process order, the base last: as the gate reads its history (runs up to the base)
    histories = {(i, j): history_of([r for k, r in enumerate(runs) if k not in (i, j)] + [runs[i]]) for i, j in pairs}

    def failed(i: int, j: int, new: Run, where: str, metric: str | None = None) -> bool:
        return any(f.regression and f.where == where and metric in (None, f.metric)
                   for f in judge(runs[i], new, histories[i, j], rules)[0])

    @functools.cache
    def caught(case: tuple, where: str, factor: float) -> int:  # the planted slowdown is often one of PLANTS
        return sum(failed(i, j, _replace(runs[j], slower(runs[j].find(case), factor)), where, metric)
                   for i, j in pairs)

    out = []
    for record in runs[0].records:
        if not getattr(record, "latency_samples_ms", None) or record.variant == reference_of(record.kind):
            continue  # untimed rows, and the reference (its paired ratio is 1 by definition)
        if any(r.find(record.case) is None for r in runs):
            continue
        values = [v for r in runs if (v := observed(METRICS[metric], r.find(record.case))) is not None]
        false_alarms = sum(failed(i, j, runs[j], record.where()) for i, j in pairs)
        detectable = next((p for p in PLANTS if caught(record.case, record.where(), 1 + p) >= DETECT * len(pairs)),
                          None)
        out.append(ErrorRates(record.where(), metric, relative_range(values) or 0.0, len(pairs), false_alarms,
                              caught(record.case, record.where(), 1 + planted), detectable))
    return out


def format_error_rates(rates: list[ErrorRates], planted: float, machine: str) -> str:
    lines = [f"| case | {rates[0].metric if rates else 'latency'} spread between processes | A/A false alarms | "
             f"planted +{planted:.0%} caught | smallest slowdown caught in ≥ {DETECT:.0%} of pairs |",
             "|---|---|---|---|---|"]
    lines += [f"| {r.where} | {r.spread:.1%} | {r.false_alarms}/{r.pairs} | {r.caught}/{r.pairs} | "
              f"{'> ' + format(PLANTS[-1], '.0%') if r.detectable is None else '+' + format(r.detectable, '.1%')} |"
              for r in rates]
    return f"{machine}\n\n" + "\n".join(lines)
