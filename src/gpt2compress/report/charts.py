"""Chart primitives every report section shares: one panel per device, runs side by side, PNG out."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..core.metrics import Metric  # noqa: E402
from ..core.records import Record  # noqa: E402
from ..history.runs import Run, measured_on  # noqa: E402

Values = Callable[[Run, str], dict[str, float]]  # (run, device) -> {category: value}
LOG_SPAN = 30  # bars spanning more than this factor are drawn on a log axis


def panels(runs: list[Run], title: str, devices: list[str] | None = None):
    devices = devices or sorted({d for run in runs for d in run.devices})
    fig, axes = plt.subplots(1, len(devices), figsize=(7 * len(devices), 4.8), squeeze=False)
    fig.suptitle(title)
    machine_footer(fig, runs)
    return fig, list(zip(devices, axes[0]))


def machine_footer(fig, runs: list[Run]) -> None:
    """What measured the chart, in its corner: a PNG pasted into a PR still names its CPU, ISA and threads."""
    fig.text(0.005, 0.005, "\n".join(measured_on(runs)), fontsize=7, color="dimgray", va="bottom")


def save(fig, out: Path, name: str) -> Path:
    path = out / f"{name}.png"
    fig.tight_layout(rect=(0, 0.05, 1, 1))  # room for the machine footer
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def axis_label(metric: Metric) -> str:
    """A catalog metric's label with its direction, for a chart title."""
    return f"{metric.label} ({metric.better} is better)"


def fmt(value, spec: str = ".3g") -> str:
    return "–" if value is None else format(value, spec)


def offsets(n_runs: int) -> tuple[float, list[float]]:
    """Bar width and each run's offset from the category's tick."""
    width = 0.8 / n_runs
    return width, [(i - (n_runs - 1) / 2) * width for i in range(n_runs)]


def bar_panels(runs: list[Run], out: Path, stem: str, title: str, ylabel: str, values: Values,
               note: Callable[[Run, str], str | None] = lambda run, device: None) -> Path | None:
    """Bars per category, one panel per device that has any value (none: no chart, rather than zeros)."""
    devices = sorted({d for run in runs for d in run.devices if values(run, d)})
    if not devices:
        return None
    fig, axes = panels(runs, title, devices)
    width, shifts = offsets(len(runs))
    for device, ax in axes:
        per_run = [values(run, device) for run in runs]
        categories = list(dict.fromkeys(c for vals in per_run for c in vals))
        for i, (run, vals) in enumerate(zip(runs, per_run)):
            ax.bar([x + shifts[i] for x in range(len(categories))], [vals.get(c, 0) for c in categories], width,
                   label=run.label)
            if note(run, device):
                ax.text(0.5, 0.95, note(run, device), transform=ax.transAxes, ha="center")
        ax.set_xticks(range(len(categories)), categories, rotation=35, ha="right")
        shown = [v for vals in per_run for v in vals.values() if v > 0]
        if shown and max(shown) > LOG_SPAN * min(shown):  # one outlier (emulated bf16) must not flatten the rest
            ax.set_yscale("log")
            ylabel = f"{ylabel} (log scale)"
        ax.set_ylabel(ylabel)
        ax.set_title(device)
        ax.legend()
    return save(fig, out, stem)


def metric_bars(runs: list[Run], out: Path, stem: str, kind: str, metric: Metric, per: str,
                label: Callable[[Record], str] = lambda r: r.variant,
                note: Callable[[Run, str], str | None] = lambda run, device: None) -> Path | None:
    """One catalog metric of one kind's records, a bar per `label`: the metric's label on the axis and its
    direction in the title, the same in every chart."""

    def values(run: Run, device: str) -> dict[str, float]:
        return {label(r): v for r in run.of(kind, device) if (v := metric.value(r)) is not None}

    return bar_panels(runs, out, stem, f"{axis_label(metric)} {per}", metric.label, values, note)
