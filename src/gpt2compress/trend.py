"""`gpt2compress history trend --out DIR`: every gated metric over the recorded runs, per runner class.

One PNG per (runner class, kind, metric), one line per variant (and batch shape), runs in the order they were
recorded on the chosen ref, x labelled by commit; timing as the paired ratio to fp32, the value the gate
compares (fp32 itself has no timing line: its ratio is 1 by definition). `index.html` lists them for a person to open. Change points (`history changes`) are to be marked here.
"""

from __future__ import annotations

import html
from pathlib import Path

from .catalog import metrics_of, reference_of
from .charts import axis_label, plt, save
from .compare import observed
from .history import Store, StoredRun

Series = dict[tuple, dict[str, list[tuple[int, float]]]]  # (class, kind, metric) -> line label -> [(x, value)]


def series(store: Store, ref: str | None = None) -> tuple[Series, dict[str, list[StoredRun]]]:
    runs: dict[str, list[StoredRun]] = {}
    for run in store.runs():
        if ref is None or run.info.ref == ref:
            runs.setdefault(run.info.runner_class, []).append(run)
    out: Series = {}
    for runner, stored in runs.items():
        for x, run in enumerate(stored):
            for record in store.load(run.id).records:
                label = record.where().split("/", 1)[1]  # device/variant[-bN]
                for m in metrics_of(record.kind):
                    if m.timing and record.variant == reference_of(record.kind):
                        continue  # its paired ratio is 1 by definition; its absolute time drifts with the machine
                    value = observed(m, record)
                    if value is not None:
                        out.setdefault((runner, record.kind, m.name), {}).setdefault(label, []).append((x, value))
    return out, runs


def _chart(out: Path, key: tuple, lines: dict[str, list[tuple[int, float]]], runs: list[StoredRun]) -> Path:
    from .catalog import METRICS

    runner, kind, name = key
    m = METRICS[name]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for label, points in sorted(lines.items()):
        ax.plot([x for x, _ in points], [v for _, v in points], marker="o", label=label)
    ax.set_xticks(range(len(runs)), [(r.info.commit or f"run {r.id}")[:8] for r in runs], rotation=45, ha="right")
    ax.set_ylabel(f"{m.name}: × {reference_of(kind)}, paired rounds" if m.timing else m.label)
    what = f"{m.name} as a ratio to {reference_of(kind)} ({m.better} is better)" if m.timing else axis_label(m)
    ax.set_title(f"{runner} — {kind}: {what}")
    ax.legend(fontsize=7, ncol=2)
    return save(fig, out, f"{runner}--{kind}--{name}")


def trend(store: Store, out: str | Path, ref: str | None = None) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data, runs = series(store, ref)
    charts = [_chart(out, key, lines, runs[key[0]]) for key, lines in sorted(data.items())]
    index = out / "index.html"
    items = "\n".join(f'<h2>{html.escape(p.stem.replace("--", " · "))}</h2>\n<img src="{html.escape(p.name)}" '
                      f'alt="{html.escape(p.stem)}">' for p in charts)
    index.write_text(f"<!doctype html>\n<meta charset='utf-8'>\n<title>gpt2compress trend</title>\n"
                     f"<h1>gpt2compress trend{' on ' + html.escape(ref) if ref else ''}</h1>\n"
                     f"<p>{sum(len(r) for r in runs.values())} runs, {len(runs)} runner class(es)</p>\n{items}\n")
    return charts + [index]
