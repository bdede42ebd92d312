"""`gpt2compress plot` and `compare`: one run's charts and pages, two runs side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def plot(args: argparse.Namespace) -> int:
    from ..report.gains_table import check_pair
    from ..history.runs import load_run
    from ..report.stage_charts import plot as draw

    runs = [load_run(p) for p in args.results]
    pair = tuple(args.gains.split(",")) if args.gains else None
    if pair is not None:
        if len(pair) != 2:
            raise ValueError("--gains takes two variants, A,B (e.g. fp32,distilled-lora-pruned-int8); "
                             f"got {args.gains!r}")
        check_pair(runs, pair)
    for path in draw(runs, args.out, pair):
        print(path)
    return 0


def compare_rules(budgets: str | None) -> tuple:
    """The [[compare]] rules of a budgets file (its variant tables are the bench's to check: that imports torch)."""
    from ..core.budgets import load_budgets

    return load_budgets(budgets, variant_names=False).compare if budgets else ()


def compare(args: argparse.Namespace) -> int:
    from ..history.compare import compare_runs, format_markdown, format_table, machine_differences
    from ..history.coverage import coverage
    from ..history.runs import load_run

    base, new = load_run(args.base), load_run(args.new)
    for difference in machine_differences(base, new):
        print(f"warning: machines differ, compare with care: {difference}", file=sys.stderr)
    rules = compare_rules(args.budgets)
    bounds, where = _process_bounds(args, new)
    findings = compare_runs(base, new, rules, bounds)
    cases = coverage(base, new)
    print(format_markdown(findings) if args.markdown else format_table(findings))
    for line in cases.lines():
        print(line)
    regressions, unsure = [f for f in findings if f.regression], [f for f in findings if f.unsure]
    print(f"\n{len(regressions)} regression(s) in {len(findings)} comparisons" + (
        f"; {len(cases.failures)} case(s) the base measured are missing" if cases.failures else ""))
    if unsure:
        print(f"{len(unsure)} change(s) past their threshold in timing or peak memory, which move between processes "
              f"of the same code: {where}")
    return 1 if regressions or cases.failures else 0


def _process_bounds(args: argparse.Namespace, new) -> tuple[dict, str]:
    """Each between-process metric's bound from the runner class's recorded runs, and a line saying where it came
    from, or why two files cannot judge those metrics (the change detectable there is unknown)."""
    import os

    from ..history.store import HISTORY_ENV, default_location, open_store, runner_class
    from ..history.gate import MIN_SPREAD_RUNS, spread_bound, spreads

    runner = args.runner_class or runner_class(new.machine)
    location = args.history or default_location()
    if not (args.history or os.environ.get(HISTORY_ENV) or Path(location).is_file()):
        return {}, (f"unsure, not failed: their detectable change is unknown without a spread (pass --history with "
                    f"≥ {MIN_SPREAD_RUNS} recorded runs of runner class {runner})")
    store = open_store(location)
    try:  # main's runs, as the gate reads them, where the class has any; else every ref's
        runs = store.runs(runner)
        ref = args.ref if any(r.info.ref == args.ref for r in runs) else None
        history = spreads(store, runner, ref, max([r.id for r in runs], default=0))
    finally:
        store.close()
    bounds = {key: bound for key, values in history.items() if (bound := spread_bound(values)) is not None}
    if not bounds:
        return {}, (f"unsure, not failed: the history holds fewer than {MIN_SPREAD_RUNS} passing runs of runner class "
                    f"{runner} to tell their spread (record more, or name the class with --runner-class)")
    return bounds, (f"judged against the spread of runner class {runner}'s recorded runs where they show one; these "
                    f"they do not (fewer than {MIN_SPREAD_RUNS} runs measured them): unsure, not failed")


def add_commands(commands) -> None:
    charts = commands.add_parser("plot", help="charts and summary.md from benchmark JSON")
    charts.add_argument("results", nargs="+")
    charts.add_argument("--out", default="charts")
    charts.add_argument("--gains", default=None, metavar="A,B",
                        help="gains table between these variants (default: fp32 vs the full stack in the run)")
    charts.set_defaults(func=plot)
    gate = commands.add_parser("compare", help="fail (exit 1) when NEW regresses against BASE")
    gate.add_argument("base")
    gate.add_argument("new")
    gate.add_argument("--budgets", default=None, help="budgets TOML whose [[compare]] entries override thresholds")
    gate.add_argument("--markdown", action="store_true", help="the table as GitHub-flavoured markdown (job summary)")
    gate.add_argument("--history", default=None, metavar="PATH|URL",
                      help="the recorded runs whose between-process spread judges timing and peak memory (default: "
                           "$GPT2COMPRESS_HISTORY or ~/.cache/gpt2compress/history.sqlite when it exists; without "
                           "one, such changes are reported unsure, not failed)")
    gate.add_argument("--runner-class", default=None, help="the class whose spread applies (default: NEW's hardware)")
    gate.add_argument("--ref", default="refs/heads/main",
                      help="the branch whose recorded runs give the spread (default refs/heads/main; every ref's "
                           "when it has none)")
    gate.set_defaults(func=compare)
