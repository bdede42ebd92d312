"""`gpt2compress ceiling`: this machine's multiply-add peaks and memory bandwidth per thread count (what every CPU
forward and decode row is set against), printed, and with `--record` kept in the history with the runner class."""

from __future__ import annotations

import argparse
import json


def machine_now(threads: int) -> dict:
    """This machine as a run's machine info names it (`history.store.runner_class` reads it)."""
    from ..build.hardware import cpu_generation, cpu_model, isa_summary

    return {"cpu": {"brand_raw": cpu_model(), **cpu_generation()},
            "gpt2compress": {"cpu_isa": isa_summary(), "threads": threads}}


def ceiling(args: argparse.Namespace) -> int:
    from ..build.hardware import cpus_allowed
    from ..measure.ceiling import CeilingError, probe

    if args.list:
        return recorded_ceilings(args)
    threads = args.threads or _physical_cores(cpus_allowed())
    try:
        found = probe(threads)
    except CeilingError as err:
        raise ValueError(str(err)) from None
    print(json.dumps(found.to_dict(), indent=1) if args.json else "\n".join(found.lines()))
    if args.record:
        from ..history.store import open_store, runner_class

        runner = args.runner_class or runner_class(machine_now(threads))
        store = open_store(args.history)
        store.record_ceiling(runner, found.to_dict(), "gpt2compress ceiling")
        print(f"recorded for runner class {runner}")
    return 0


def _physical_cores(allowed: list[int]) -> int:
    """How many physical cores of one package this process may use (SMT siblings counted once)."""
    from ..build.hardware import distinct_cores

    n = len(allowed)
    while n > 1:
        try:
            distinct_cores(n, allowed)
            return n
        except ValueError:
            n -= 1
    return 1


def recorded_ceilings(args: argparse.Namespace) -> int:
    import time

    from ..history.store import open_store
    from ..measure.ceiling import Ceiling

    for runner, measured_at, found, source in open_store(args.history).ceilings(args.runner_class):
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(measured_at))
        print(f"{runner} — {stamp} ({source}):")
        print("\n".join("  " + line for line in Ceiling.from_dict(found).lines()))
    return 0


def add_commands(commands) -> None:
    probe = commands.add_parser("ceiling", help="this machine's multiply-add peaks and memory bandwidth")
    probe.add_argument("--threads", type=int, default=None,
                       help="probe 1, 2, 4 … up to this many threads (default: the physical cores allowed)")
    probe.add_argument("--json", action="store_true", help="print the ceiling as JSON")
    probe.add_argument("--record", action="store_true", help="keep it in the history (--history) with the runner class")
    probe.add_argument("--history", default=None, metavar="PATH|URL", help="the history store (as `history` takes)")
    probe.add_argument("--runner-class", default=None, help="name the runner class yourself")
    probe.add_argument("--list", action="store_true",
                       help="print the ceilings the history keeps (of --runner-class, or all) instead of probing")
    probe.set_defaults(func=ceiling)
