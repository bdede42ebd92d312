"""`gpt2compress history changes`: where a metric stepped, over the recorded runs of each runner class.

A gate compares one run with its base, so five +8 % steps each pass a 10 % threshold. Change-point detection
looks at the whole series instead: E-divisive means as Apache Otava implements it (Hunter's split/merge over
sliding windows, Student's t-test per candidate; p < MAX_PVALUE, at least MIN_MAGNITUDE), on the value the gate
compares (timing as the paired ratio
to the run's reference). Each change point comes with its commit range: the last run before it, the first after.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.kinds import reference_of
from ..core.metrics import METRICS, metrics_of
from .compare import observed
from .store import Store, StoredRun

# Otava's defaults (p < 0.001, no minimum size) flagged 0.25-0.4 change points per 250-run series of pure Gaussian
# noise (σ 2 %); p < 1e-4 and a 2 % minimum flagged none in 20 such series and still found every +8 % step.
MAX_PVALUE = 1e-4
MIN_MAGNITUDE = 0.02  # relative
WINDOW = 50  # runs per sliding window (Otava's default)
LAST = 250  # runs per runner class that `changes` and `trend` read by default (--last 0: all)

Series = dict[tuple, dict[str, list[tuple[int, float]]]]  # (class, kind, metric) -> line label -> [(x, value)]


def series(store: Store, ref: str | None = None, last: int = LAST,
           runner_class: str | None = None) -> tuple[Series, dict[str, list[StoredRun]]]:
    """Every gated metric per (runner class, kind, metric), one line per device/variant, x = the run's position
    among its class's last `last` runs on `ref` (0: all); one class only if `runner_class` names it. The reference
    has no timing line: its paired ratio is 1 by definition."""
    runs: dict[str, list[StoredRun]] = {}
    for run in store.runs(runner_class):
        if ref is None or run.info.ref == ref:
            runs.setdefault(run.info.runner_class, []).append(run)
    runs = {runner: stored[-last:] if last else stored for runner, stored in runs.items()}
    out: Series = {}
    for runner, stored in runs.items():
        for x, run in enumerate(stored):
            for record in store.load(run.id).records:
                label = record.where().split("/", 1)[1]  # device/variant[-bN]
                for m in metrics_of(record.kind):
                    if m.timing and record.variant == reference_of(record.kind):
                        continue
                    if (value := observed(m, record)) is not None:
                        out.setdefault((runner, record.kind, m.name), {}).setdefault(label, []).append((x, value))
    return out, runs


@dataclass
class ChangePoint:
    runner_class: str
    kind: str
    line: str  # device/variant[-bN]
    metric: str
    x: int  # position of the first run after the change
    after_commit: str | None  # the first run after the change
    before_commit: str | None  # the last run before it
    before: float  # mean of the segment before
    after: float
    change: float  # relative, signed so that > 0 is worse
    p_value: float

    def describe(self) -> str:
        verdict = "worse" if self.change > 0 else "better"
        return (f"{self.runner_class} {self.kind}/{self.line} {self.metric}: {self.before:.4g} → {self.after:.4g} "
                f"({self.change:+.1%}, {verdict}, p={self.p_value:.1e}) between {(self.before_commit or '?')[:12]} "
                f"and {(self.after_commit or '?')[:12]}")


def detect(values: list[float], max_pvalue: float = MAX_PVALUE) -> list[tuple[int, float, float, float]]:
    """(index of the first point after, mean before, mean after, p) per change point of one series."""
    try:
        from otava.analysis import compute_change_points
    except ImportError as err:
        raise ValueError("change points need Apache Otava: pip install 'gpt2compress[history]'") from err

    found, _ = compute_change_points(values, window_len=WINDOW, max_pvalue=max_pvalue, min_magnitude=MIN_MAGNITUDE)
    return [(int(c.index), float(c.stats.mean_1), float(c.stats.mean_2), float(c.stats.pvalue)) for c in found]


def change_points(store: Store, ref: str | None = None, max_pvalue: float = MAX_PVALUE,
                  last: int = LAST, runner_class: str | None = None) -> list[ChangePoint]:
    return changes_in(*series(store, ref, last, runner_class), max_pvalue=max_pvalue)


def changes_in(data: Series, runs: dict[str, list[StoredRun]], max_pvalue: float = MAX_PVALUE) -> list[ChangePoint]:
    out = []
    for (runner, kind, name), lines in sorted(data.items()):
        metric = METRICS[name]
        for line, points in sorted(lines.items()):
            for i, before, after, p in detect([v for _, v in points], max_pvalue):
                x, prev = points[i][0], points[i - 1][0]
                change = metric.worsening(before, after) if before else 0.0
                out.append(ChangePoint(runner, kind, line, name, x, runs[runner][x].info.commit,
                                       runs[runner][prev].info.commit, before, after, change, p))
    return out
