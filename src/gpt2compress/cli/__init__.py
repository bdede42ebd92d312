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
        the gate over N processes of identical code: false alarms, a planted +15 % caught
        (investigations/error-rates.sh).
    gpt2compress variants [--devices auto|cpu|cuda]
        every name --stages accepts: what it measures, its chain of stages, and whether it runs here (or why
        not: the device, the CPU, a missing extra); then what each stage does.
    gpt2compress ceiling [--threads N] [--record] [--list]
        this machine's multiply-add peaks (fp32, bf16, INT8) and read bandwidth per thread count, probed by
        machine code assembled at run time; every CPU forward and decode row is set against them (summary.md:
        achieved G MAC/s and GB/s, floor, what binds, share of the ceiling). --record: into the history.
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
import os
import sys
from importlib.metadata import version

from . import cache, ceiling, history, models, results

COMMANDS = (models, results, history, cache, ceiling)  # each adds its subcommands: one module per command group


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpt2compress", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('gpt2compress')}")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMANDS:
        group.add_commands(commands)
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a reader that left (`| head`) shows here, inside the try, not at exit
        return code
    except (KeyError, ValueError) as err:  # bad input (DataSourceError, ModelSourceError, HistoryError): one line
        print(f"gpt2compress: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `gpt2compress history report … | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
