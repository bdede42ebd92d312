"""Stage charts and summary.md from one or more benchmark JSON files (several files = runs side by side).

PNGs, one panel per device: latency per stage (box plot of the timed rounds),
perplexity, peak memory and size per stage, and a Pareto chart (latency vs
perplexity) with the frontier marked.
"""

from __future__ import annotations

from pathlib import Path

from ..core.kinds import Page, kind_of, kinds
from ..core.metrics import FORWARD, METRICS
from ..core.records import ForwardRecord, mib
from .charts import fmt as _fmt, metric_bars, offsets, panels as _panels, save as _save
from .ceiling_table import ceiling_table
from .gains_table import gains_section
from .results_csv import write_results_csv
from ..history.runs import Run, measured_on
from .task_pages import hellaswag_section
from .throughput_pages import fastest_lines

BARS = {"perplexity": "perplexity", "peak_memory": "peak_memory", "size": "size", "energy": "energy_per_sample"}
# file stem: catalog metric
LATENCY, PERPLEXITY = METRICS["latency"], METRICS["perplexity"]


def _variants(runs: list[Run], device: str) -> list[str]:
    seen: list[str] = []
    for run in runs:
        seen += [r.variant for r in run.of(FORWARD, device) if r.variant not in seen]
    return seen


def latency_chart(runs: list[Run], out: Path) -> Path:
    fig, panels = _panels(runs, "forward latency per stage (batch × seq from the run; box = timed rounds)")
    width, shifts = offsets(len(runs))
    for device, ax in panels:
        variants = _variants(runs, device)
        for i, run in enumerate(runs):
            rows = {r.variant: r for r in run.of(FORWARD, device)}
            data = [rows[v].latency_samples_ms if v in rows else [] for v in variants]
            positions = [x + shifts[i] for x in range(len(variants))]
            kept = [(p, d) for p, d in zip(positions, data) if d]
            if kept:
                box = ax.boxplot([d for _, d in kept], positions=[p for p, _ in kept], widths=width * 0.9,
                                 patch_artist=True, showfliers=False)
                for patch in box["boxes"]:
                    patch.set_facecolor(f"C{i}")
                ax.plot([], [], color=f"C{i}", label=run.label, linewidth=6)
        ax.set_xticks(range(len(variants)), variants, rotation=35, ha="right")
        ax.set_ylabel(f"latency, {LATENCY.unit}")
        ax.set_title(device)
        ax.legend()
    return _save(fig, out, "latency")


def bar_chart(runs: list[Run], out: Path, stem: str) -> Path | None:
    """One bar per stage; devices where nothing was measured (energy on a CPU) get no panel, not zeros."""
    metric = METRICS[BARS[stem]]

    def note(run: Run, device: str) -> str | None:
        random = any(not r.perplexity_meaningful for r in run.of(FORWARD, device))
        return "random weights: perplexity not meaningful" if metric.name == "perplexity" and random else None

    return metric_bars(runs, out, stem, FORWARD, metric, "per stage", note=note)


def pareto_frontier(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points no other point beats on both latency and perplexity (lower is better for both)."""
    frontier, best = [], float("inf")
    for point in sorted(points):
        if point[1] < best:
            frontier.append(point)
            best = point[1]
    return frontier


def pareto_chart(runs: list[Run], out: Path) -> Path:
    fig, panels = _panels(runs, "latency vs perplexity (frontier: nothing is both faster and better)")
    for device, ax in panels:
        for i, run in enumerate(runs):
            points = [(x, y, r.variant) for r in run.of(FORWARD, device)
                      if (x := LATENCY.value(r)) and (y := PERPLEXITY.value(r))]
            if not points:
                continue
            ax.scatter([p[0] for p in points], [p[1] for p in points], color=f"C{i}", label=run.label)
            for x, y, name in points:
                ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            front = pareto_frontier(points)
            ax.plot([p[0] for p in front], [p[1] for p in front], "--", color=f"C{i}", label=f"{run.label} frontier")
        ax.set_xlabel(LATENCY.label)
        ax.set_ylabel(PERPLEXITY.label)
        ax.set_title(device)
        ax.legend()
    return _save(fig, out, "pareto")


def _heads(heads: list[int] | None) -> str:
    if not heads:
        return "–"
    return f"{heads[0]} × {len(heads)} layers" if len(set(heads)) == 1 else ",".join(map(str, heads))


def _cells(*cells: object) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _forward_row(r: ForwardRecord) -> str:
    """Values from the record; every × is its ratio to the run's reference (`record.ratios`), never divided here."""
    ppl = _fmt(r.perplexity, ".2f") + ("" if r.perplexity_meaningful else " (random)")
    return _cells(r.variant, " → ".join(r.chain) or "(baseline)", r.precision, ppl, _fmt(r.ratios.get("perplexity")),
                  _fmt(r.median_ms, ".2f"), _fmt(r.latency_std_ms, ".2f"), _fmt(r.ratios.get("latency")),
                  _fmt(r.latency_p99_ms, ".2f"),
                  _fmt(r.tokens_per_s, ",.0f"), _fmt(r.size_mb, ".2f"), _fmt(r.ratios.get("size")),
                  _fmt(r.peak_memory_mb, ".0f"), _fmt(r.parameters, ","), _heads(r.heads_per_layer))


def forward_section(runs: list[Run]) -> list[str]:
    lines = []
    for run in runs:
        for device, rows in run.by_device(FORWARD):
            lines += [f"## Forward: {run.label} — {device}", "",
                      "| variant | chain | precision | perplexity | ×ppl | median ms | std ms | ×latency | p99 ms "
                      "| tokens/s | size MiB | ×size | peak MiB | params | heads/layer |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
            lines += [_forward_row(r) for r in rows]
            fastest = fastest_lines(rows, "latency")
            lines += ["", *fastest, ""] if fastest else [""]
            lines += ceiling_table(rows, "latency")
            lines += _gpu_table([r for r in rows if r.peak_memory_reserved_bytes is not None or r.energy_per_sample_mj])
    return lines


def _energy_efficiency(r: ForwardRecord) -> float | None:
    """The reference's energy over this record's: its energy ratio turned over for display, higher is better."""
    ratio = r.ratios.get("energy_per_sample")
    return 1 / ratio if ratio else None


def _gpu_table(rows: list[ForwardRecord]) -> list[str]:
    """CUDA rows: device memory reserved and, with a power sensor, energy (absent, not zero, elsewhere)."""
    if not rows:
        return []
    lines = ["| variant | peak allocated MiB | reserved MiB | mean power W | energy mJ/sample | ×energy efficiency |",
             "|---|---|---|---|---|---|"]
    lines += [_cells(r.variant, _fmt(r.peak_memory_mb, ".0f"), _fmt(mib(r.peak_memory_reserved_bytes), ".0f"),
                     _fmt(r.mean_power_w, ".1f"), _fmt(r.energy_per_sample_mj, ".3g"), _fmt(_energy_efficiency(r)))
              for r in rows]
    return lines + [""]


def forward_charts(runs: list[Run], out: Path) -> list[Path]:
    if not any(run.of(FORWARD) for run in runs):
        return []
    bars = [bar_chart(runs, out, stem) for stem in BARS]
    return [latency_chart(runs, out), *(p for p in bars if p), pareto_chart(runs, out)]


def pages() -> list[Page]:
    """Each kind's page (`Kind.page`, in registration order; a kind absent from the runs adds nothing), then the
    pages across kinds: HellaSwag beside the forward rows and seed 001's end-to-end gains table, which closes the
    summary and alone takes the `--gains` pair."""
    own = [kind_of(name).page for name in kinds()]
    return [p for p in own if p] + [Page(hellaswag_section)]


def summary_markdown(runs: list[Run], gains: tuple[str, str] | None = None) -> str:
    """`gains`: the two variants of the gains table (default: fp32 vs the full stack in the run)."""
    lines = ["# gpt2compress summary", "", *(f"Measured on {line}." for line in measured_on(runs)), ""]
    for page in pages():
        lines += page.section(runs)
    lines += gains_section(runs, gains)
    lines.append("Ratios (×) divide by the reference of the same run, device and shape (fp32; the fp32 classifier for "
                 "classification). Timing ratios are the median of per-round ratios, each of the variant's rounds "
                 "timed right after one of the reference's; the gains table compares its two variants' medians.")
    return "\n".join(lines) + "\n"


def plot(runs: list[Run], out: str | Path, gains: tuple[str, str] | None = None) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [path for page in pages() for path in page.charts(runs, out)]
    summary = out / "summary.md"
    summary.write_text(summary_markdown(runs, gains))
    return paths + [summary, write_results_csv(runs, out)]
