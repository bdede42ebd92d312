"""`gpt2compress history …`: record runs, gate a run against its merge base, accept, retire, trend, error rates."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .results import compare_rules


def history_record(args: argparse.Namespace) -> int:
    from ..history.store import open_store, record_file

    store = open_store(args.history)
    run_id = record_file(store, args.results, args.runner_class, commit=args.commit, ref=args.ref, pr=args.pr)
    stored = next(r for r in store.runs() if r.id == run_id)
    print(f"recorded run {run_id}: {stored.rows} rows, commit {stored.info.commit}, runner class "
          f"{stored.info.runner_class}, in {store.location if not store.postgres else 'the PostgreSQL history'}"
          + (f"; failed ({stored.failure}): kept for the trend, never a gate's base" if stored.failure else ""))
    return 0


def history_import(args: argparse.Namespace) -> int:
    from ..history.lifecycle import import_files
    from ..history.store import open_store

    for path, outcome in import_files(open_store(args.history), args.paths, args.runner_class):
        print(f"{path}: {'run ' + str(outcome) if isinstance(outcome, int) else outcome}")
    return 0


def history_gate(args: argparse.Namespace) -> int:
    from ..history.compare import format_markdown, format_table
    from ..history.gate import annotations, blind_spots, gate, spread_note
    from ..history.pr_comment import page

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
        Path(args.report).write_text(page(new, runner, result, args.charts, commit))
    return 1 if result.failed else 0


def _gate_inputs(args: argparse.Namespace) -> tuple:
    from ..history.store import from_environment, open_store, runner_class
    from ..history.runs import load_run

    new = load_run(args.results)
    rules = compare_rules(args.budgets)
    return (open_store(args.history), new, args.runner_class or runner_class(new.machine), rules,
            from_environment(args.commit)["commit"])


def history_report(args: argparse.Namespace) -> int:
    """The page without the gate's exit status (main runs, or a look at a PR's)."""
    from ..history.store import HistoryError
    from ..history.gate import gate
    from ..history.pr_comment import page

    store, new, runner, rules, commit = _gate_inputs(args)
    try:
        result = gate(store, new, runner, args.base, rules, commit=commit) if args.base else None
    except HistoryError as err:
        print(f"gpt2compress: note: {err}", file=sys.stderr)
        result = None
    print(page(new, runner, result, args.charts, commit))
    return 0


def history_changes(args: argparse.Namespace) -> int:
    from ..history.change_points import change_points
    from ..history.store import open_store

    found = change_points(open_store(args.history), args.ref, args.max_pvalue, args.last, args.runner_class)
    for c in found:
        print(c.describe())
    print(f"{len(found)} change point(s)")
    return 0


def history_error_rates(args: argparse.Namespace) -> int:
    from ..history.gate import error_rates, format_error_rates
    from ..history.runs import describe_machine, load_run

    runs = [load_run(path) for path in args.results]
    if args.same_job:
        from ..history.same_job import format_same_job_rates, same_job_rates

        if len(runs) % 2 or len(runs) // 2 < args.same_job:
            raise ValueError(f"--same-job {args.same_job}: pass the processes as base, PR, base, PR, … in the order "
                             f"they ran, at least {args.same_job} pair(s); got {len(runs)} file(s)")
        where = f"{len(runs) // 2} pairs of processes on {describe_machine(runs[0].machine)}"
        print(format_same_job_rates(same_job_rates(runs[0::2], runs[1::2], args.same_job,
                                                   compare_rules(args.budgets)), args.same_job, where))
        return 0
    if len(runs) < 4:
        raise ValueError(f"error-rates needs at least 4 runs of identical code (each pair's spread comes from the "
                         f"others), got {len(runs)}: run investigations/error-rates.sh")
    rules = compare_rules(args.budgets)
    where = f"{len(runs)} processes on {describe_machine(runs[0].machine)}"
    print(format_error_rates(error_rates(runs, args.planted, rules=rules), args.planted, where))
    return 0


def history_trend(args: argparse.Namespace) -> int:
    from ..history.store import open_store
    from ..history.trend_charts import trend

    for path in trend(open_store(args.history), args.out, args.ref, args.last, args.runner_class):
        print(path)
    return 0


def history_accept(args: argparse.Namespace) -> int:
    from ..history.store import Retirement, open_store

    store = open_store(args.history)
    commit = _recorded_commit(store, args.commit)
    if args.revoke and not args.retire:
        from ..history.lifecycle import revoke_acceptance

        runner = args.runner_class or _only_class(store, commit)
        if not revoke_acceptance(store, commit, runner):
            raise ValueError(f"no acceptance of {commit[:12]} on {runner} to revoke: `history decisions` lists them")
        print(f"revoked: {commit[:12]}'s regressions fail the gate again on {runner}")
        return 0
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

    from ..history.store import open_store

    runs = open_store(args.history).runs(args.runner_class)
    runs = runs[-args.limit:] if args.limit else runs
    if args.json:
        from ..history.lifecycle import run_info

        for run in runs:
            print(json.dumps({"id": run.id, "rows": run.rows, **run_info(run.info)}, default=str))
        return 0
    width = max([len("runner class"), *(len(run.info.runner_class) for run in runs)])
    print(f"{'id':>5} {'recorded':16} {'runner class':{width}} {'commit':12} {'ref':24} rows")
    for run in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.recorded_at))
        print(f"{run.id:>5} {when:16} {run.info.runner_class:{width}} {(run.info.commit or '-')[:12]:12} "
              f"{(run.info.ref or '-')[:24]:24} {run.rows}")
    return 0


def history_delete(args: argparse.Namespace) -> int:
    from ..history.lifecycle import delete
    from ..history.store import open_store

    print(f"deleted {delete(open_store(args.history), args.run)} run(s) and their results")
    return 0


def history_prune(args: argparse.Namespace) -> int:
    from ..history.lifecycle import delete, to_prune
    from ..history.store import open_store

    store = open_store(args.history)
    doomed = to_prune(store, args.keep_last, args.older_than, args.runner_class)
    if args.dry_run or not doomed:
        print(f"would delete {len(doomed)} run(s): {' '.join(map(str, doomed)) or '-'}")
        return 0
    print(f"deleted {delete(store, doomed)} run(s): {' '.join(map(str, doomed))}")
    return 0


def history_export(args: argparse.Namespace) -> int:
    from ..history.lifecycle import export
    from ..history.store import open_store

    for line in export(open_store(args.history)):
        print(line)
    return 0


def history_decisions(args: argparse.Namespace) -> int:
    """Every recorded decision the gate follows: accepted regressions and retired cases, per runner class."""
    from ..history.store import open_store

    store = open_store(args.history)
    runners = [args.runner_class] if args.runner_class else sorted({r.info.runner_class for r in store.runs()})
    for runner in runners:
        for commit, reason in store.accepted(runner).items():
            print(f"{runner}  accepted {commit[:12]}  {reason}")
        for retired in store.retirements(runner):
            print(f"{runner}  retired  {retired.commit[:12]}  {retired.case}  {retired.reason}")
    return 0


def history_grant_read(args: argparse.Namespace) -> int:
    from ..history.postgres import grant_read
    from ..history.store import open_store

    store = open_store(args.history)
    if not store.postgres:
        raise ValueError("grant-read is for a PostgreSQL history (--history postgresql://…): an SQLite file is read "
                         "by whoever may read the file")
    for statement in grant_read(store.connection, args.role):
        print(statement)
    return 0


def add_commands(commands) -> None:
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
    listed = command("runs", "list the recorded runs", history_runs)
    listed.add_argument("--limit", type=int, default=0, metavar="N", help="the newest N only (default: all)")
    listed.add_argument("--json", action="store_true", help="one JSON object per run")
    deleted = command("delete", "remove recorded runs (and their results), e.g. a run measured on a broken runner",
                      history_delete)
    deleted.add_argument("run", type=int, nargs="+", help="run ids, as `history runs` lists them")
    pruned = command("prune", "remove old runs: beyond the newest N per runner class and / or older than DAYS",
                     history_prune)
    pruned.add_argument("--keep-last", type=int, default=None, metavar="N")
    pruned.add_argument("--older-than", type=float, default=None, metavar="DAYS")
    pruned.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    command("export", "every run and its records as JSON lines (stdout)", history_export)
    granted = command("grant-read", "PostgreSQL: give an existing role read-only use of the history (what a PR job "
                      "gates with); run with the writer's URL", history_grant_read)
    granted.add_argument("role")
    command("decisions", "list the accepted regressions and retired cases the gate follows", history_decisions)
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
                            "pairs gated as `history gate --same-job PAIRS` decides (investigations/same-job-rates.sh)")
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
    accepted.add_argument("--revoke", action="store_true", help="take the acceptance back (with --retire: the "
                          "retirement)")


