"""`gpt2compress` command line.

    gpt2compress pipeline [--model tiny] [--data DIR] [--variants a,b,...]
        build each variant (cached) and print perplexity, size and latency per stage.
    gpt2compress plot results.json [more.json ...] --out charts/ [--gains A,B]
        stage charts (PNG) and summary.md; several files = runs side by side;
        --gains: the end-to-end gains table between variants A and B (default: fp32 vs the full stack).
    gpt2compress compare BASE.json NEW.json [--budgets bench/budgets.toml] [--markdown]
        regression check of every kind (forward, generate, train, classify); exit 1 on a regression.
        Either file may be a session's journal (results.jsonl), which survives a crash.
    gpt2compress history record results.json [--commit SHA] [--ref REF] [--runner-class CLASS]
    gpt2compress history import .benchmarks/ old.json ...   |   gpt2compress history runs
        the saved history (--history PATH|postgresql://..., default $GPT2COMPRESS_HISTORY or
        ~/.cache/gpt2compress/history.sqlite): every run with its commit, runner class and records.
    gpt2compress history gate results.json --base main
        against the recorded run of the merge base (same runner class), outside each metric's spread.
    gpt2compress history trend --out trend/ [--ref refs/heads/main]
        every metric over the recorded runs, per runner class: PNGs and an index.html.
    gpt2compress history accept SHA --reason TEXT
        a deliberate regression becomes the baseline.
    gpt2compress history changes [--ref refs/heads/main]
        change points (E-divisive, apache-otava) per metric and variant, each with its commit range.
    gpt2compress history report results.json --base main --markdown
        the PR page: verdict, regressions, improvements, skipped cases with reasons, links to the charts.
    gpt2compress history error-rates run-*.json
        the gate over N processes of identical code: false alarms, a planted +15 % caught (bench/error-rates.sh).
    gpt2compress variants [--device auto|cpu|cuda]
        every name --stages accepts: what it measures, its chain of stages, and whether it runs here (or why
        not: the device, the CPU, a missing extra); then what each stage does.
    gpt2compress cores 2
        a CPU list of 2 distinct physical cores, for `taskset -c $(gpt2compress cores 2) pytest bench/ ...`
        (a 2-core run on a bigger host, SMT siblings never counted as two).
    gpt2compress cache ls
        every cached build: kind, what it is, size, last used, code fingerprint.
    gpt2compress cache prune --max-size 20G | --older-than 14
        remove least recently used entries (never one a running process uses).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .options import add_cli_options

# torch, transformers and the stages load only in the commands that build models: `history gate` answers in
# seconds on a CI runner.
WALKTHROUGH = ("fp32", "pruned", "pruned-finetuned", "pruned-finetuned-ov-int8-static")


def pipeline(args: argparse.Namespace) -> int:
    import torch

    from . import sources
    from .cache import apply_cap
    from .data import load_corpus
    from .options import resolve_devices
    from .variants import VARIANTS

    unknown = [name for name in args.variants.split(",") if name not in VARIANTS]
    if unknown:  # before minutes of loading and building: a typo must not cost the rows before it
        raise ValueError(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    corpus = load_corpus(args.data)
    source = sources.load_source(args.model, corpus, args.tokenizer)
    rows: list[dict] = []
    try:
        for device in resolve_devices(args.device, torch.cuda.is_available()):
            if device == "cuda" and not torch.cuda.is_available():
                continue  # auto: the CPU only, on a machine without a GPU
            _pipeline_rows(args, source, corpus, device, rows)
    finally:  # the rows measured before a failure are kept
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"model": args.model, "data": corpus.name, "rows": rows}, f, indent=2)
    capped = apply_cap()
    if capped:
        print(capped)
    return 0


def _pipeline_rows(args: argparse.Namespace, source, corpus, device: str, rows: list[dict]) -> None:
    """Appends each variant's row to `rows` as it is measured."""
    from .engines import scoring_engine
    from .measure import footprint, quality, speed
    from .metrics import fixed_batch
    from .options import settings_overrides
    from .stages import StageNotApplicable
    from .variants import Context, ContextSpec, Settings, build

    option = vars(args)
    settings = Settings.for_model(args.model, **settings_overrides(lambda flag: option[flag[2:].replace("-", "_")]))
    spec = ContextSpec(args.model, args.data, args.tokenizer, settings, device)
    ctx = Context(source, corpus, settings, device, spec)
    batch = fixed_batch(ctx.eval, 1, settings.seq_len)  # the b1 batch every variant is timed on
    print(f"{'variant':36} {'ppl':>9} {'size MB':>9} {'b1 ms':>9} {'p90 ms':>9} {'params':>11} heads/layer ({device})")
    for name in args.variants.split(","):
        try:
            built = build(name, ctx)
        except StageNotApplicable as reason:
            print(f"{name:36} skipped: {reason}")
            continue
        model = scoring_engine(built, batch)  # as the bench scores it (an OpenVINO LM: its stateless IR)
        row = {"variant": name, "device": device, **footprint(built), **quality(built, model, ctx),
               **speed(model, batch, ctx.device, rounds=args.rounds)}
        rows.append(row)
        ppl = f"{row['perplexity']:9.2f}" + ("" if row["perplexity_meaningful"] else "*")
        print(f"{name:36} {ppl:>9} {row['size_on_disk_bytes'] / 1e6:9.2f} {row['mean_ms']:9.2f} "
              f"{row['p90_ms']:9.2f} {row['parameters']:11,} {row['heads_per_layer']}", flush=True)
    if not source.perplexity_meaningful:
        print("* random weights: perplexity is not meaningful")


def plot(args: argparse.Namespace) -> int:
    from .report.gains_table import check_pair
    from .report.runs import load_run
    from .report.stage_charts import plot as draw

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


def _compare_rules(budgets: str | None) -> tuple:
    """The [[compare]] rules of a budgets file (its variant tables are the bench's to check: that imports torch)."""
    from .budgets import load_budgets

    return load_budgets(budgets, variant_names=False).compare if budgets else ()


def compare(args: argparse.Namespace) -> int:
    from .report.compare_gate import compare_runs, format_markdown, format_table, machine_differences
    from .report.coverage import coverage
    from .report.runs import load_run

    base, new = load_run(args.base), load_run(args.new)
    for difference in machine_differences(base, new):
        print(f"warning: machines differ, compare with care: {difference}", file=sys.stderr)
    rules = _compare_rules(args.budgets)
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

    from .report.history_store import HISTORY_ENV, default_location, open_store, runner_class
    from .report.merge_base_gate import MIN_SPREAD_RUNS, SPREAD_MARGIN, history_spread, spreads

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
    bounds = {key: s * SPREAD_MARGIN for key, values in history.items() if (s := history_spread(values)) is not None}
    if not bounds:
        return {}, (f"unsure, not failed: the history holds fewer than {MIN_SPREAD_RUNS} passing runs of runner class "
                    f"{runner} to tell their spread (record more, or name the class with --runner-class)")
    return bounds, (f"judged against the spread of runner class {runner}'s recorded runs where they show one; these "
                    f"they do not (fewer than {MIN_SPREAD_RUNS} runs measured them): unsure, not failed")


def history_record(args: argparse.Namespace) -> int:
    from .report.history_store import open_store, record_file

    store = open_store(args.history)
    run_id = record_file(store, args.results, args.runner_class, commit=args.commit, ref=args.ref, pr=args.pr)
    stored = next(r for r in store.runs() if r.id == run_id)
    print(f"recorded run {run_id}: {stored.rows} rows, commit {stored.info.commit}, runner class "
          f"{stored.info.runner_class}, in {store.location if not store.postgres else 'the PostgreSQL history'}"
          + (f"; failed ({stored.failure}): kept for the trend, never a gate's base" if stored.failure else ""))
    return 0


def history_import(args: argparse.Namespace) -> int:
    from .report.history_store import import_files, open_store

    for path, outcome in import_files(open_store(args.history), args.paths, args.runner_class):
        print(f"{path}: {'run ' + str(outcome) if isinstance(outcome, int) else outcome}")
    return 0


def history_gate(args: argparse.Namespace) -> int:
    from .report.compare_gate import format_markdown, format_table
    from .report.merge_base_gate import annotations, blind_spots, gate, spread_note
    from .report.pr_comment import page

    store, new, runner, rules, commit = _gate_inputs(args)
    result = gate(store, new, runner, args.base, rules, commit=commit, reruns=args.reruns, same_job=args.same_job)
    print(f"runner class {runner}; base: run {result.base.id} of {result.base_note}; {spread_note(result)}")
    for line in ([result.rerun_note] if result.rerun_note else []) + blind_spots(result):
        print(line)
    for line in result.coverage.lines() + result.drift.lines() + [p.line() for p in result.paired]:
        print(line)
    print(format_markdown(result.findings) if args.markdown else format_table(result.findings))
    for line in annotations(result):
        print(line)
    print(f"\n{len(result.regressions)} regression(s) in {len(result.findings)} comparisons"
          + (f"; accepted for {commit[:12]}: {result.accepted}" if result.accepted else "")
          + (f"; {len(result.refusals)} refusal(s): {'; '.join(result.refusals)}" if result.refusals else ""))
    if args.report:
        Path(args.report).write_text(page(new, runner, result, args.charts))
    return 1 if result.failed else 0


def _gate_inputs(args: argparse.Namespace) -> tuple:
    from .report.history_store import from_environment, open_store, runner_class
    from .report.runs import load_run

    new = load_run(args.results)
    rules = _compare_rules(args.budgets)
    return (open_store(args.history), new, args.runner_class or runner_class(new.machine), rules,
            from_environment(args.commit)["commit"])


def history_report(args: argparse.Namespace) -> int:
    """The page without the gate's exit status (main runs, or a look at a PR's)."""
    from .report.history_store import HistoryError
    from .report.merge_base_gate import gate
    from .report.pr_comment import page

    store, new, runner, rules, commit = _gate_inputs(args)
    try:
        result = gate(store, new, runner, args.base, rules, commit=commit) if args.base else None
    except HistoryError as err:
        print(f"gpt2compress: note: {err}", file=sys.stderr)
        result = None
    print(page(new, runner, result, args.charts))
    return 0


def history_changes(args: argparse.Namespace) -> int:
    from .report.change_points import change_points
    from .report.history_store import open_store

    found = change_points(open_store(args.history), args.ref, args.max_pvalue, args.last, args.runner_class)
    for c in found:
        print(c.describe())
    print(f"{len(found)} change point(s)")
    return 0


def history_error_rates(args: argparse.Namespace) -> int:
    from .report.merge_base_gate import error_rates, format_error_rates
    from .report.runs import describe_machine, load_run

    runs = [load_run(path) for path in args.results]
    if args.same_job:
        from .report.same_job import format_same_job_rates, same_job_rates

        if len(runs) % 2 or len(runs) // 2 < args.same_job:
            raise ValueError(f"--same-job {args.same_job}: pass the processes as base, PR, base, PR, … in the order "
                             f"they ran, at least {args.same_job} pair(s); got {len(runs)} file(s)")
        where = f"{len(runs) // 2} pairs of processes on {describe_machine(runs[0].machine)}"
        print(format_same_job_rates(same_job_rates(runs[0::2], runs[1::2], args.same_job,
                                                   _compare_rules(args.budgets)), args.same_job, where))
        return 0
    if len(runs) < 4:
        raise ValueError(f"error-rates needs at least 4 runs of identical code (each pair's spread comes from the "
                         f"others), got {len(runs)}: run bench/error-rates.sh")
    rules = _compare_rules(args.budgets)
    where = f"{len(runs)} processes on {describe_machine(runs[0].machine)}"
    print(format_error_rates(error_rates(runs, args.planted, rules=rules), args.planted, where))
    return 0


def history_trend(args: argparse.Namespace) -> int:
    from .report.history_store import open_store
    from .report.trend_charts import trend

    for path in trend(open_store(args.history), args.out, args.ref, args.last, args.runner_class):
        print(path)
    return 0


def history_accept(args: argparse.Namespace) -> int:
    from .report.history_store import Retirement, open_store

    store = open_store(args.history)
    commit = _recorded_commit(store, args.commit)
    if args.revoke and not args.retire:
        raise ValueError("--revoke takes back a retirement: name it with --retire CASE")
    if args.reason is None and not args.revoke:
        raise ValueError("accept needs --reason TEXT: why (kept in the history)")
    if not args.retire:
        runner = args.runner_class or _only_class(store, commit)
        store.accept(commit, runner, args.reason)
        print(f"accepted {commit[:12]} on {runner}: {args.reason}")
        return 0
    runner = args.runner_class or _only_class(store, commit, any_recorded=True)
    commit = _full_sha(commit)  # a retirement applies to the commit's descendants: git must know it
    for case in args.retire:
        if not args.revoke and _recorded_case(store, runner, case) is False:
            raise ValueError(f"--retire {case}: no recorded run of {runner} measured that case; name it as the gate "
                             f"prints it (e.g. {sorted(store.case_names(runner))[0]})")
        if args.revoke:
            if not store.unretire(case, commit, runner):
                raise ValueError(f"no retirement of {case} at {commit[:12]} on {runner} to revoke: check the "
                                 "case and the SHA the retirement named")
            print(f"revoked: {case} is gated again on {runner}")
        else:
            store.retire(Retirement(case, commit, runner, args.reason))
            print(f"retired {case} at {commit[:12]} on {runner}: {args.reason}")
    return 0


def _recorded_commit(store, prefix: str) -> str:
    """The recorded commit a SHA prefix names (`history runs` prints 12 characters); the prefix if none."""
    found = sorted({r.info.commit for r in store.runs() if r.info.commit and r.info.commit.startswith(prefix)})
    if len(found) > 1:
        raise ValueError(f"{prefix} names {len(found)} recorded commits ({', '.join(c[:12] for c in found)}): "
                         "give more of the SHA")
    return found[0] if found else prefix


def _recorded_case(store, runner: str, case: str) -> bool | None:
    """Whether a recorded run of the class measured `case` (as the gate prints it, or kind/device/variant);
    None: the class has no run to tell."""
    known = store.case_names(runner)
    if not known:
        return None
    return any(case == name or case.startswith(f"{name}-b") for name in known)


def _full_sha(commit: str) -> str:
    import subprocess

    found = subprocess.run(["git", "rev-parse", "--verify", "-q", f"{commit}^{{commit}}"], capture_output=True,
                           text=True).stdout.strip()
    if not found:
        raise ValueError(f"git knows no commit {commit} here: retire at a commit of this repository (fetch it first)")
    return found


def _only_class(store, commit: str, any_recorded: bool = False) -> str:
    """The runner class `commit` is recorded on; `any_recorded`: else the store's only class."""
    classes = sorted({r.info.runner_class for r in store.runs() if r.info.commit == commit})
    if not classes and any_recorded:
        classes = sorted({r.info.runner_class for r in store.runs()})
        if len(classes) != 1:
            raise ValueError(f"{commit[:12]} is not recorded and the history holds {len(classes)} runner classes: "
                             "pass --runner-class")
    if not classes:
        raise ValueError(f"no run of commit {commit[:12]} is recorded: `gpt2compress history runs` lists the "
                         "recorded commits")
    if len(classes) != 1:
        raise ValueError(f"{commit[:12]} is recorded on runner classes {', '.join(classes)}: pass --runner-class")
    return classes[0]


def history_runs(args: argparse.Namespace) -> int:
    import time

    from .report.history_store import open_store

    runs = open_store(args.history).runs(args.runner_class)
    width = max([len("runner class"), *(len(run.info.runner_class) for run in runs)])
    print(f"{'id':>5} {'recorded':16} {'runner class':{width}} {'commit':12} {'ref':24} rows")
    for run in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.recorded_at))
        print(f"{run.id:>5} {when:16} {run.info.runner_class:{width}} {(run.info.commit or '-')[:12]:12} "
              f"{(run.info.ref or '-')[:24]:24} {run.rows}")
    return 0


def _history_parser(commands: Any) -> None:
    history = commands.add_parser("history", help="record runs in the saved history, list them, gate against them")
    sub = history.add_subparsers(dest="history_command", required=True)

    def command(name: str, help: str, func) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help)
        parser.add_argument("--history", default=None, metavar="PATH|URL",
                            help="SQLite file or postgresql:// URL (default $GPT2COMPRESS_HISTORY, else "
                                 "~/.cache/gpt2compress/history.sqlite)")
        parser.add_argument("--runner-class", default=None,
                            help="label of comparable machines (default: from the CPU model + ISA, or the GPU)")
        parser.set_defaults(func=func)
        return parser

    record = command("record", "record one results JSON (or journal) as a run", history_record)
    record.add_argument("results")
    record.add_argument("--commit", default=None, help="default: $GITHUB_SHA, else git HEAD")
    record.add_argument("--ref", default=None, help="default: the CI's ref, else the git branch")
    record.add_argument("--pr", type=int, default=None, help="default: from $GITHUB_REF refs/pull/N/...")
    imported = command("import", "record results JSON files / a pytest-benchmark storage folder", history_import)
    imported.add_argument("paths", nargs="+")
    command("runs", "list the recorded runs", history_runs)
    gated = command("gate", "fail (exit 1) when RESULTS regress against the run of the merge base", history_gate)
    gated.add_argument("results")
    gated.add_argument("--base", required=True, help="the branch a PR merges into (its merge base's run is the base)")
    gated.add_argument("--budgets", default=None, help="budgets TOML whose [[compare]] entries override thresholds")
    gated.add_argument("--markdown", action="store_true", help="the table as GitHub-flavoured markdown")
    gated.add_argument("--commit", default=None, help="the gated run's commit (default: $GITHUB_SHA, else git HEAD)")
    gated.add_argument("--reruns", type=int, default=0, metavar="N",
                       help="re-run suspects in N fresh processes where the history is too short to know their "
                            "between-process spread (default 0: threshold and noise floor alone)")
    gated.add_argument("--same-job", type=int, default=0, metavar="PAIRS",
                       help="measure the merge base's code and this run's as PAIRS × (base, PR) alternating fresh "
                            "processes, for the timed cases whose history spread hides a change of their threshold "
                            "(or is unknown): their paired differences decide them (default 0: the history alone)")
    gated.add_argument("--report", default=None, metavar="FILE", help="also write the PR page (markdown) here")
    gated.add_argument("--charts", default=None, metavar="URL", help="link to the charts on the page")
    reported = command("report", "one markdown page: verdict, regressions, improvements, skipped, charts",
                       history_report)
    reported.add_argument("results")
    reported.add_argument("--base", default=None, help="gate against this branch's merge base (default: no base)")
    reported.add_argument("--budgets", default=None)
    reported.add_argument("--commit", default=None)
    reported.add_argument("--charts", default=None, metavar="URL")
    reported.add_argument("--markdown", action="store_true", help="(the page is markdown; kept for symmetry)")
    changes = command("changes", "change points (E-divisive, apache-otava) over each series, with commit ranges",
                      history_changes)
    changes.add_argument("--ref", default=None, help="only runs of this ref (e.g. refs/heads/main; default: all)")
    changes.add_argument("--max-pvalue", type=float, default=1e-4)
    changes.add_argument("--last", type=int, default=250, help="runs per runner class to read (default 250; 0: all)")
    rates = command("error-rates", "the gate's A/A false alarms and planted-slowdown catches over N processes",
                    history_error_rates)
    rates.add_argument("results", nargs="+", help="results JSON of N processes of identical code")
    rates.add_argument("--planted", type=float, default=0.15, help="planted slowdown (default 0.15: +15 %%)")
    rates.add_argument("--budgets", default=None)
    rates.add_argument("--same-job", type=int, default=0, metavar="PAIRS",
                       help="the files alternate base, PR, base, PR (in the order they ran): every choice of PAIRS "
                            "pairs gated as `history gate --same-job PAIRS` decides (bench/same-job-rates.sh)")
    trended = command("trend", "every metric over the recorded runs: PNGs per runner class + index.html",
                      history_trend)
    trended.add_argument("--out", default="trend")
    trended.add_argument("--ref", default=None, help="only runs of this ref (e.g. refs/heads/main; default: all)")
    trended.add_argument("--last", type=int, default=250, help="runs per runner class to draw (default 250; 0: all)")
    accepted = command("accept", "a deliberate regression becomes the baseline (its reason is kept); --retire: a "
                       "case stops being measured on purpose from this commit on", history_accept)
    accepted.add_argument("commit")
    accepted.add_argument("--reason", default=None, help="why (kept in the history; needed except with --revoke)")
    accepted.add_argument("--retire", action="append", default=[], metavar="CASE",
                          help="a case (forward/cpu/ov-int8-static, generate/cpu/fp32-b1) whose absence from this "
                               "commit on passes the gate; the commit need not be recorded (a PR's head will do)")
    accepted.add_argument("--revoke", action="store_true", help="with --retire: take the retirement back")


def cache_ls(args: argparse.Namespace) -> int:
    import time

    from .cache import cache_root, entries, human

    listed = entries()
    print(f"{cache_root()}: {len(listed)} entries, {human(sum(e.size for e in listed))}")
    print(f"{'kind':10} {'size':>10} {'last used':>16} {'fingerprint':16} {'key':16} what")
    for e in reversed(listed):  # most recently used first
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
        print(f"{e.kind:10} {human(e.size):>10} {used:>16} {e.fingerprint or '-':16} {e.path.name:16} {e.label}")
    return 0


def cache_prune(args: argparse.Namespace) -> int:
    from .cache import cache_root, entries, human, parse_size, prune

    if args.max_size is None and args.older_than is None:
        raise ValueError("cache prune needs --max-size SIZE (e.g. 20G) or --older-than DAYS (or both)")
    if args.older_than is not None and not args.older_than > 0:  # NaN too: a cutoff in the future removes everything
        raise ValueError(f"--older-than takes a number of days above 0 (e.g. 14); got {args.older_than}")
    limit = parse_size(args.max_size) if args.max_size is not None else None
    removed, busy = prune(max_size=limit, older_than_days=args.older_than)
    for e in removed:
        print(f"removed {e.kind}/{e.path.name} ({human(e.size)}) {e.label}")
    for e in busy:
        print(f"kept    {e.kind}/{e.path.name} ({human(e.size)}): in use by a running process")
    left = sum(e.size for e in entries())
    print(f"{cache_root()}: freed {human(sum(e.size for e in removed))}, {human(left)} left")
    return 0


def variants(args: argparse.Namespace) -> int:
    """What `--stages` can name, read from the case matrix and the stage registry (the bench's own answers)."""
    from .cases import cases
    from .options import resolve_devices
    from .registry import STAGES

    for device in resolve_devices(args.device, cuda_available=True):  # a listing runs nothing: cuda is listable
        rows: dict[str, tuple[list[str], str, str]] = {}
        for case in cases():
            kinds = rows.get(case.variant, ([], "", ""))[0] + [case.kind]
            why_not = case.unsupported(device)
            rows[case.variant] = (kinds, _chain_text(case), "yes" if why_not is None
                                  else "no: " + why_not.removeprefix(f"{case.variant}: "))
        width = max(len(chain) for _, chain, _ in rows.values())
        print(f"{'name':34} {'measures':26} {'chain':{width}} runs on {device}")
        for name, (kinds, chain, here) in rows.items():
            print(f"{name:34} {', '.join(kinds):26} {chain:{width}} {here}")
        print()
    print(f"{'stage':22} {'devices':10} what it does")
    for stage in sorted(STAGES.values(), key=lambda s: s.name):
        print(f"{stage.name:22} {','.join(stage.devices):10} {stage.about}")
    return 0


def _chain_text(case) -> str:
    """The stages that build the model, and for a train case what its training setup changes."""
    from dataclasses import fields

    text = " > ".join(case.chain) or "source"
    if case.setup is None:
        return text
    changed = [f"{f.name}={getattr(case.setup, f.name)}" for f in fields(case.setup)
               if getattr(case.setup, f.name) != f.default]
    return f"{text}, trained" + (f" with {', '.join(changed)}" if changed else "")


def cores(args: argparse.Namespace) -> int:
    from .hardware import cpu_list, distinct_cores

    print(cpu_list(distinct_cores(args.n)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpt2compress", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("pipeline", help="build variants and print their metrics")
    add_cli_options(run)
    run.add_argument("--variants", default=",".join(WALKTHROUGH),
                     help="comma-separated variant names (README lists them; an unknown one names the known)")
    run.add_argument("--json", default=None, help="also write the rows as JSON here")
    run.set_defaults(func=pipeline)
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
    _history_parser(commands)
    listing = commands.add_parser("variants", help="what --stages can name, and whether each runs here")
    add_cli_options(listing, only=("--device",))
    listing.set_defaults(func=variants)
    pin = commands.add_parser("cores", help="N CPUs on N distinct physical cores, as a list for taskset -c")
    pin.add_argument("n", type=int)
    pin.set_defaults(func=cores)
    cache = commands.add_parser("cache", help="list or prune the build cache ($GPT2COMPRESS_CACHE)")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    cache_commands.add_parser("ls", help="every entry, most recently used first").set_defaults(func=cache_ls)
    trim = cache_commands.add_parser("prune", help="remove least recently used entries")
    trim.add_argument("--max-size", default=None, metavar="SIZE", help="shrink the cache to this size: 500M, 20G")
    trim.add_argument("--older-than", type=float, default=None, metavar="DAYS", help="remove entries unused this long")
    trim.set_defaults(func=cache_prune)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (KeyError, ValueError) as err:  # bad input (DataSourceError, ModelSourceError, HistoryError): one line
        print(f"gpt2compress: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
