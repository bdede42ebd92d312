"""Base and PR measured in the same job: alternating fresh processes, decided from their paired differences.

A process's state (where its allocations landed, which cores its threads share, which kernels it picked) moves a
variant's ratio to fp32 between processes by more than rounds inside one process show, and by more than a 10 %
threshold for some INT8 variants: the history's spread then hides a slowdown that size. Measuring the merge base's
code and the PR's in the same job, as alternating fresh processes (A B A B …: RMIT's interleaving, duet benchmarking's
shared noise), turns that spread into pairs: the base's code runs from a git worktree of the merge base (its builds
come from the runner's cache, keyed by their fingerprints), the PR's from the checkout, each process with the run's
own options and the selected variants.

A timed metric regresses when the median of its paired differences (each pair's worsening, as `Metric.worsening`
reads it) is past its threshold and noise floor, and the one-sided 95 % lower bound of their mean is above zero
(Student's t over the pairs). The smallest change a run could have seen, per case, is the larger of the threshold and
that bound's half-width: printed on the page, from this run's own pairs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..budgets import CompareRule
from ..catalog import metrics_of, reference_of
from .compare_gate import Finding, observed, threshold_for
from .history_store import HistoryError
from .runs import Run

CONFIDENCE = 0.95


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
        median = statistics.median(self.differences)
        seen = "not gated" if self.detectable is None else f"smallest detectable change +{self.detectable:.1%}"
        return (f"{self.where} {self.metric}: {median:+.1%} median over {len(self.differences)} pair(s) of fresh "
                f"processes ({', '.join(f'{d:+.1%}' for d in self.differences)}); {seen}"
                + ("; REGRESSION" if self.regression else ""))


def half_width(differences: list[float]) -> float | None:
    """The one-sided CONFIDENCE bound's distance below the mean (None with fewer than two pairs)."""
    if len(differences) < 2:
        return None
    from scipy.stats import t

    return float(t.ppf(CONFIDENCE, len(differences) - 1) * statistics.stdev(differences) / len(differences) ** 0.5)


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
        for m in metrics_of(record.kind):
            if not m.timing:
                continue
            values = [(observed(m, a), observed(m, b)) for a, b in sides]
            if any(x is None or y is None or x == 0 for x, y in values):
                continue
            differences = [m.worsening(x, y) for x, y in values]
            limit = threshold_for(m, record, rules)
            width = half_width(differences)
            median = statistics.median(differences)
            absolute = abs(median) * abs(m.value(record) or 0)
            regression = (limit is not None and median > limit and absolute > m.floor(record)
                          and (width is None or statistics.fmean(differences) - width > 0))
            detectable = None if limit is None else max(limit, width or 0.0)
            out.append(Paired(record.where(), m.name, differences, limit, regression, detectable))
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
                           "--same-job out); its drift is shown there")
    probe = subprocess.run([sys.executable, "-c", "import gpt2compress.variants"], cwd=path, capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(path / "src")})
    if probe.returncode != 0:
        remove_worktree(root, path)
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise HistoryError(f"--same-job: the base {commit[:12]}'s code does not import here ({last}): gate this PR "
                           "against the history alone (leave --same-job out)")
    return path


def remove_worktree(root: Path, path: Path) -> None:
    subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(path)], capture_output=True)


def alternate(new: Run, variants: list[str], commit: str, pairs: int) -> tuple[list[Run], list[Run]]:
    """`pairs` × (the base's process, then the PR's), fresh each, the same variants and options."""
    from .merge_base_gate import fresh_process

    root = Path(new.session.get("cwd") or ".")
    base_runs, pr_runs = [], []
    with tempfile.TemporaryDirectory(prefix="gpt2compress-same-job-") as tmp:
        worktree = base_worktree(commit, root, Path(tmp))
        try:
            for i in range(pairs):
                print(f"same job, pair {i + 1}/{pairs}: the base {commit[:12]}, then this run's code "
                      f"({','.join(variants)})", flush=True)
                a = fresh_process(new, variants, Path(tmp) / f"base-{i}.json", worktree)
                b = fresh_process(new, variants, Path(tmp) / f"pr-{i}.json")
                if a is not None and b is not None:
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
