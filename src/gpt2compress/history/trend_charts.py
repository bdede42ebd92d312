"""`gpt2compress history trend --out DIR`: every gated metric over the recorded runs, per runner class.

One PNG per (runner class, kind, metric), one line per variant (and batch shape), runs in the order they were
recorded on the chosen ref, x labelled by commit; timing as the paired ratio to fp32, the value the gate
compares (fp32 itself has no timing line: its ratio is 1 by definition). Change points (`history changes`) are marked
with a dashed line at the first run after them. `index.html` lists the charts and the change points.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..core.kinds import reference_of
from ..core.metrics import METRICS
from .change_points import LAST, ChangePoint, changes_in, series
from ..report.charts import axis_label, plt, save
from .store import Store, StoredRun

MARKERS = 60  # runs up to which each point is marked
TICKS = 40  # commit labels at most
LEGEND_ROWS = 25


def _chart(out: Path, key: tuple, lines: dict[str, list[tuple[int, float]]], runs: list[StoredRun],
           changes: list[ChangePoint]) -> Path:
    runner, kind, name = key
    m = METRICS[name]
    columns = -(-len(lines) // LEGEND_ROWS)  # the legend beside the chart, LEGEND_ROWS entries a column
    fig, ax = plt.subplots(figsize=(9 + 2.2 * columns, 4.8))
    for label, points in sorted(lines.items()):
        (drawn,) = ax.plot([x for x, _ in points], [v for _, v in points], label=label, linewidth=1,
                           marker="o" if len(points) <= MARKERS else None)
        for c in changes:
            if c.line == label:
                ax.axvline(c.x - 0.5, color=drawn.get_color(), linestyle="--", linewidth=1)
                ax.annotate(f"{c.change:+.0%}", (c.x - 0.5, c.after), color=drawn.get_color(), fontsize=7)
    every = max(1, len(runs) // TICKS)  # at most TICKS commit labels
    ax.set_xticks(range(0, len(runs), every), [(r.info.commit or f"run {r.id}")[:8] for r in runs[::every]],
                  rotation=45, ha="right")
    ax.set_ylabel(f"{m.name}: × {reference_of(kind)}, paired rounds" if m.timing else m.label)
    what = f"{m.name} as a ratio to {reference_of(kind)} ({m.better} is better)" if m.timing else axis_label(m)
    ax.set_title(f"{runner} — {kind}: {what}")
    ax.legend(fontsize=7, ncol=columns, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save(fig, out, f"{runner}--{kind}--{name}")


def trend(store: Store, out: str | Path, ref: str | None = None, last: int = LAST,
          runner_class: str | None = None) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data, runs = series(store, ref, last, runner_class)
    changes = changes_in(data, runs)
    charts = [_chart(out, key, lines, runs[key[0]], [c for c in changes if (c.runner_class, c.kind, c.metric) == key])
              for key, lines in sorted(data.items())]
    index = out / "index.html"
    items = "\n".join(f'<h2>{html.escape(p.stem.replace("--", " · "))}</h2>\n<img src="{html.escape(p.name)}" '
                      f'alt="{html.escape(p.stem)}">' for p in charts)
    found = "\n".join(f"<li>{html.escape(c.describe())}</li>" for c in changes) or "<li>none</li>"
    index.write_text(f"<!doctype html>\n<meta charset='utf-8'>\n<title>gpt2compress trend</title>\n"
                     f"<h1>gpt2compress trend{' on ' + html.escape(ref) if ref else ''}</h1>\n"
                     f"<p>{sum(len(r) for r in runs.values())} runs, {len(runs)} runner class(es)"
                     f"{f' (the last {last} of each)' if last else ''}</p>\n"
                     f"<h2>Change points</h2>\n<ul>\n{found}\n</ul>\n{items}\n")
    return charts + [index]
