"""Base and PR measured in the same job: alternating fresh processes, decided from their paired differences.

A process's state (where its allocations landed, which cores its threads share, which kernels it picked) moves a
variant's ratio to fp32 between processes by more than rounds inside one process show, and by more than a 10 %
threshold for some INT8 variants: the history's spread then hides a slowdown that size. Measuring the merge base's
code and the PR's in the same job, as alternating fresh processes (A B A B …: RMIT's interleaving, duet benchmarking's
shared noise), turns that spread into pairs: the base's code runs from a git worktree of the merge base (its builds
come from the runner's cache, keyed by their fingerprints), the PR's from the checkout, each process with the run's
own options and the selected variants.

A timed metric regresses when the mean of its paired differences (each pair's worsening, as `Metric.worsening`
reads it) is past FLAG_AT × its threshold and past its noise floor, and the one-sided 95 % lower bound of that mean is
above zero (Student's t over the pairs). Flagging at the threshold itself would catch a change of the threshold's size
in only half the gates; at half of it, with pairs that agree to a few percent, such a change is caught in nine of
ten and identical code stays far below (investigations/same-job-rates.sh measures both; README). The smallest
change a run's
pairs would catch in nine gates of ten, from their own spread, is printed per case.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..core.budgets import CompareRule
from ..core.kinds import reference_of
from ..core.metrics import judged_metrics
from .compare import Finding, observed, past_threshold, threshold_for
from .store import HistoryError
from .processes import fresh_process, toplevel
from .runs import Run

CONFIDENCE = 0.95
FLAG_AT = 0.5  # × the threshold: where the mean paired change starts to count (measured: README)
Z_CAUGHT = 1.2816  # a change this many standard errors past the flag point is caught in 90 % of gates


@dataclass
class Paired:
    """One case's metric over the alternating processes."""

    where: str
    metric: str
    differences: list[float]  # per pair: how much worse the PR's process was than the base's just before it
    threshold: float | None
    regression: bool
    detectable: float | None  # the smallest change this run's pairs could have flagged (None: not gated)

    def line(self) -> str:
        mean = statistics.fmean(self.differences)
        seen = ("not gated" if self.detectable is None else
                f"smallest change these pairs catch in 9 of 10 gates +{self.detectable:.1%}")
        return (f"{self.where} {self.metric}: {mean:+.1%} mean over {len(self.differences)} pair(s) of fresh "
                f"processes ({', '.join(f'{d:+.1%}' for d in self.differences)}); {seen}"
                + ("; REGRESSION" if self.regression else ""))


def half_width(differences: list[float]) -> float | None:
    """The one-sided CONFIDENCE bound's distance below the mean (None with fewer than two pairs)."""
    if len(differences) < 2:
        return None
    from scipy.stats import t

    return float(t.ppf(CONFIDENCE, len(differences) - 1) * statistics.stdev(differences) / len(differences) ** 0.5)


def caught_from(flag_at: float, differences: list[float]) -> float:
    """The true change these pairs' spread would flag in 90 % of gates: past both the flag point and the bound's
    half-width by Z_CAUGHT standard errors (with one pair, no spread is known: the flag point)."""
    if len(differences) < 2:
        return flag_at
    error = statistics.stdev(differences) / len(differences) ** 0.5
    return max(flag_at, half_width(differences) or 0.0) + Z_CAUGHT * error


def paired(base_runs: list[Run], pr_runs: list[Run], rules: tuple[CompareRule, ...] = ()) -> list[Paired]:
    """Every timed metric of every case both sides of every pair measured (the reference's ratio is 1 by
    definition: it is not paired)."""
    out = []
    for record in pr_runs[0].records if pr_runs else []:
        if record.variant == reference_of(record.kind):
            continue
        sides = [(a.find(record.case), b.find(record.case)) for a, b in zip(base_runs, pr_runs)]
        if not sides or any(a is None or b is None for a, b in sides):
            continue
        for m in judged_metrics(record.kind):
            if not m.timing:
                continue
            values = [(observed(m, a), observed(m, b)) for a, b in sides]
            if any(x is None or y is None or x == 0 for x, y in values):
                continue
            differences = [m.worsening(x, y) for x, y in values]
            limit = threshold_for(m, record, rules)
            width, mean = half_width(differences), statistics.fmean(differences)
            flag_at = None if limit is None else limit * FLAG_AT
            regression = past_threshold(m, record, mean, flag_at, 0.0) and (width is None or mean - width > 0)
            out.append(Paired(record.where(), m.name, differences, limit, regression,
                              None if flag_at is None else caught_from(flag_at, differences)))
    return out


def base_worktree(commit: str, root: Path, into: Path) -> Path:
    """A worktree of `commit`, whose code must import here: one line naming the fix when it cannot."""
    from .drift import PINS_FILE

    path = into / f"base-{commit[:12]}"
    done = subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "-f", str(path), commit],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise HistoryError(f"--same-job: git cannot check out the base {commit[:12]} ({done.stderr.strip()}); "
                           "fetch it (a CI checkout needs fetch-depth: 0)")
    ours, theirs = root / PINS_FILE, path / PINS_FILE
    if ours.exists() and theirs.exists() and ours.read_bytes() != theirs.read_bytes():
        remove_worktree(root, path)
        raise HistoryError(f"--same-job: the base {commit[:12]} pins other versions ({PINS_FILE} differs), which this "
                           "environment cannot run side by side: gate this PR against the history alone (leave "
                           "--same-job out: SAME_JOB=0 for scripts/ci.sh); its drift is shown there")
    probe = subprocess.run([sys.executable, "-c", "import gpt2compress.core.variants"], cwd=path, capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(path / "src")})
    if probe.returncode != 0:
        remove_worktree(root, path)
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise HistoryError(f"--same-job: the base {commit[:12]}'s code does not import here ({last}): gate this PR "
                           "against the history alone (leave --same-job out: SAME_JOB=0 for scripts/ci.sh)")
    return path


def remove_worktree(root: Path, path: Path) -> None:
    subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(path)], capture_output=True)


# The job's first pair is run and dropped. Measured at 124M (Intel Xeon with AMX, 2 cores; investigations/
# same-job-rates.sh, 6 rounds): the first round's processes, the first of each code to load (and score) its builds,
# were 12-25 % off the others (ov-int8-static's ratio 0.31 against 0.21-0.23), while rounds 2-6 agreed within 2-5 %;
# with round 1 in, a +10 % slowdown was caught in 10-14 of 20 three-pair gates, without it in 9-10 of 10.
WARMUP_PAIRS = 1


def alternate(new: Run, variants: list[str], commit: str, pairs: int) -> tuple[list[Run], list[Run]]:
    """`pairs` × (the base's process, then the PR's), fresh each, the same variants and options, after
    WARMUP_PAIRS dropped."""
    cwd = Path(new.session.get("cwd") or ".")
    root = toplevel(cwd) or cwd
    base_runs, pr_runs = [], []
    with tempfile.TemporaryDirectory(prefix="gpt2compress-same-job-") as tmp:
        worktree = base_worktree(commit, root, Path(tmp))
        try:
            for i in range(-WARMUP_PAIRS, pairs):
                what = "warm-up pair, dropped" if i < 0 else f"pair {i + 1}/{pairs}"
                print(f"same job, {what}: the base {commit[:12]}, then this run's code ({','.join(variants)})",
                      flush=True)
                a = fresh_process(new, variants, Path(tmp) / f"base-{i}.json", worktree)
                b = fresh_process(new, variants, Path(tmp) / f"pr-{i}.json")
                if i >= 0 and a is not None and b is not None:
                    base_runs.append(a)
                    pr_runs.append(b)
        finally:
            remove_worktree(root, worktree)
    return base_runs, pr_runs


def apply(findings: list[Finding], results: list[Paired]) -> list[Finding]:
    """The history gate's findings, with the paired verdict deciding each metric the same job measured."""
    decided = {(p.where, p.metric): p for p in results}
    for f in findings:
        if (p := decided.get((f.where, f.metric))) is not None:
            f.regression = p.regression
    return findings


@dataclass
class SameJobRates:
    """One case's metric over every same-job gate drawn from a series of aligned (base, PR) process pairs."""

    where: str
    metric: str
    gates: int
    flagged: int  # gates whose paired verdict was a regression
    mean_change: float  # over all pairs
    detectable: float | None  # the median over the gates of the change each one's pairs catch in 9 of 10


def same_job_rates(base_runs: list[Run], pr_runs: list[Run], pairs: int,
                   rules: tuple[CompareRule, ...] = ()) -> list[SameJobRates]:
    """Every choice of `pairs` of the aligned pairs is one gate as `history gate --same-job` decides it (gates
    overlap: C(n, pairs) of them from n pairs, as `error_rates` uses every ordered pair of its processes)."""
    from itertools import combinations

    found: dict[tuple[str, str], list[Paired]] = {}
    for chosen in combinations(range(min(len(base_runs), len(pr_runs))), pairs):
        for p in paired([base_runs[i] for i in chosen], [pr_runs[i] for i in chosen], rules):
            found.setdefault((p.where, p.metric), []).append(p)
    everything = paired(base_runs, pr_runs, rules)
    out = []
    for p in everything:
        gates = found.get((p.where, p.metric), [])
        seen = [g.detectable for g in gates if g.detectable is not None]
        out.append(SameJobRates(p.where, p.metric, len(gates), sum(g.regression for g in gates),
                                statistics.fmean(p.differences), statistics.median(seen) if seen else None))
    return out


def format_same_job_rates(rates: list[SameJobRates], pairs: int, machine: str) -> str:
    lines = [f"| case | metric | mean paired change | gates of {pairs} pair(s) flagged | change caught in 9 of 10 "
             "gates (median) |", "|---|---|---|---|---|"]
    lines += [f"| {r.where} | {r.metric} | {r.mean_change:+.1%} | {r.flagged}/{r.gates} | "
              f"{'-' if r.detectable is None else format(r.detectable, '+.1%')} |" for r in rates]
    return f"{machine}\n\n" + "\n".join(lines)
