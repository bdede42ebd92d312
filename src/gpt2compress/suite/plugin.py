"""The gpt2compress pytest plugin (registered through the `pytest11` entry point): its options, the one hook that
parametrizes every bench test from the case matrix, and what becomes of each case (the outcome table the JSON and
the journal carry, the gate's coverage reads). The fixtures are `suite.fixtures`. It touches only bench tests: a test
module that names its kind (`KIND`).
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

import pytest
import torch

from ..core.cases import Case, names as case_names, select, tier_of
from ..core.options import resolve_devices
from ..core import progress
from ..core.progress import time_table
from ..build.stages.precision import EMULATED_BF16
from ..build.data import DataSourceError
from ..build.sources import ModelSourceError
from ..core.budgets import BudgetFileError
from ..history import shards
from ..measure.journal import Journal
from .clock import CLOCK

JOURNALS: list[Journal] = []  # the session's journal once opened (`fixtures.journal`): the outcome hooks append to it


def pytest_addoption(parser: pytest.Parser) -> None:
    from ..core.options import add_pytest_options

    add_pytest_options(parser.getgroup("gpt2compress", "GPT-2 compression benchmark"))


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Identity beyond pytest-benchmark's default: library versions, CPU ISA, GPU, driver, CUDA."""
    machine_info["gpt2compress"] = _stack()


def pytest_report_header(config: pytest.Config) -> str:
    """The machine line reports carry (summary.md, charts, the PR page), at the top of the run's output."""
    from ..build.hardware import cpu_generation, cpu_model
    from ..history.runs import describe_machine

    machine = {"cpu": {"brand_raw": cpu_model(), **cpu_generation()}, "gpt2compress": _stack()}
    return f"gpt2compress: {describe_machine(machine)}"


def _stack() -> dict:
    import importlib.metadata as md

    import torch

    versions = {}
    for package in ("torch", "transformers", "openvino", "nncf", "optimum-intel", "neural-compressor-pt",
                    "gpt2compress"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    from ..build.hardware import cpus_allowed, isa_summary

    gpu = {}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "capability": f"{props.major}.{props.minor}",
               "memory_gb": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
               "driver": _nvidia_driver()}
    return {"versions": versions, "cpu_isa": isa_summary(), "torch_cpu_capability":
            torch.backends.cpu.get_cpu_capability(), "gpu": gpu, "threads": torch.get_num_threads(),
            "cpus_allowed": cpus_allowed(), "cpus_online": os.cpu_count(), "python": platform.python_version()}


def _nvidia_driver() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def devices(config: pytest.Config) -> list[str]:
    try:
        return resolve_devices(config.getoption("--devices"), torch.cuda.is_available())
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None


def run_tier(config: pytest.Config) -> str | None:
    """--tier, or the tour when a bare `pytest bench/` names no selection (`--tier nightly`: every case)."""
    return tier_of(config.getoption("--tier"), config.getoption("--smoke"), chosen_stages(config))


def chosen_stages(config: pytest.Config) -> list[str] | None:
    given = config.getoption("--stages")
    if given is None:
        return None
    names = [name.strip() for name in given.split(",") if name.strip()]
    if not names:
        raise pytest.UsageError("--stages names no case; leave it out to run every case, or see "
                                "`gpt2compress variants`")
    unknown = [n for n in names if n not in case_names()]
    if unknown:
        raise pytest.UsageError(f"--stages: unknown variant(s) {unknown}; known: {', '.join(case_names())}")
    return names


@contextlib.contextmanager
def bad_input_ends_the_session():
    """A wrong --model, --data or --budgets fails every case alike: one line that names the fix, not a traceback per
    case. pytest.exit still ends the session normally, so what was measured before reaches the JSON."""
    try:
        yield
    except (BudgetFileError, DataSourceError, ModelSourceError) as err:
        pytest.exit(f"{type(err).__name__}: {err}", returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_configure(config: pytest.Config) -> None:
    """Options that would fail every module fail once, here; the two that set how code below the suite behaves are
    applied here."""
    chosen_stages(config), devices(config)  # a bad --stages or --devices: one line now, not an error per module
    budgets = config.getoption("--budgets")
    if budgets and not Path(budgets).is_file():  # fails before a model trains, not after; the fixture reads the
        from ..core.budgets import load_budgets  # file (a plugin kind's budget keys exist once its module loaded)

        try:
            load_budgets(budgets)
        except BudgetFileError as err:
            raise pytest.UsageError(f"{type(err).__name__}: {err}") from None
    progress.EVERY = config.getoption("--progress-every")
    EMULATED_BF16["allowed"] = config.getoption("--emulated-bf16")


def refuse_what_cannot_time(config: pytest.Config) -> None:
    """The bench times its rounds through pytest-benchmark's fixture: with it off there is nothing to time."""
    if config.getoption("benchmark_disable", False):
        raise pytest.UsageError("bench/ times every case through pytest-benchmark: drop --benchmark-disable "
                                "(--benchmark-skip skips the bench instead)")
    if getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("bench/ cannot run under pytest-xdist (-n): pytest-benchmark turns itself off there, "
                                "and cases timed side by side would slow each other")
    chosen_stages(config), devices(config)  # a bad --stages or --devices: one line now, not an error per module


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The one parametrize hook: cases of the module's kind, generate's batch sizes, devices."""
    kind = getattr(metafunc.module, "KIND", None)
    if kind is None or "case" not in metafunc.fixturenames:
        return
    smoke = metafunc.config.getoption("--smoke")
    tier = run_tier(metafunc.config)
    try:
        chosen = select(kind, chosen_stages(metafunc.config), smoke, tier)
    except KeyError as err:
        raise pytest.UsageError(f"--tier: {err.args[0]}") from None
    metafunc.parametrize("case", chosen, ids=[c.variant for c in chosen])
    if "gen_batch_size" in metafunc.fixturenames:
        sizes = metafunc.config.getoption("--gen-batch-sizes")
        metafunc.parametrize("gen_batch_size", sizes[:1] if smoke or tier in ("pr", "tour") else sizes)
    metafunc.parametrize("device", devices(metafunc.config))



SKIPPED: list[dict] = []  # every skipped bench case of this session, with its reason
DURATIONS: dict[str, float] = {}  # test name -> seconds, setup (builds) + call + teardown: what --shard balances
# test name -> {kind, device, variant[, batch_size], outcome[, reason]}: every selected case and what became of it
# (`report.coverage` names a case the base measured and this run did not by it)
CASES: dict[str, dict] = {}
OURS: set[str] = set()  # node ids of the bench tests collected
FINISHED: dict[str, int] = {}  # {"exitstatus": N} once the session ends
CEILING: dict = {}  # this machine's peaks and bandwidth, once the `ceiling` fixture has probed them


def _name(nodeid: str) -> str:
    return nodeid.split("::", 1)[-1]


def _ours(item: pytest.Item) -> bool:
    """A bench test: its module names the kind it measures (`KIND`); this plugin leaves every other test alone."""
    return getattr(getattr(item, "module", None), "KIND", None) is not None


def pytest_collection_finish(session: pytest.Session) -> None:
    """The selection, after --stages, --tier, --shard, -k: each case starts as `selected` (a crash leaves it so)."""
    for item in session.items:
        params = getattr(item, "callspec", None) and item.callspec.params
        if _ours(item) and params and isinstance(params.get("case"), Case):
            case = params["case"]
            CASES[_name(item.nodeid)] = {"kind": case.kind, "device": params.get("device"), "variant": case.variant,
                                         **({"batch_size": params["gen_batch_size"]} if "gen_batch_size" in params
                                            else {}), "outcome": "selected"}


def _outcome(report: pytest.TestReport) -> tuple[str, str] | None:
    """(outcome, reason) this report settles for its test, None when it settles nothing (a passed setup)."""
    text = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr or "")
    if report.skipped:
        return "skipped", text.removeprefix("Skipped: ")
    if report.failed:
        return ("failed" if report.when == "call" else "error"), (text.strip().splitlines() or [""])[-1][:300]
    return ("passed", "") if report.when == "call" else None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    name = _name(report.nodeid)
    if report.nodeid not in OURS:
        return
    DURATIONS[name] = DURATIONS.get(name, 0.0) + report.duration
    settled = _outcome(report)
    if report.skipped:
        SKIPPED.append({"test": name, "reason": settled[1]})
    if settled and name in CASES and CASES[name]["outcome"] not in ("failed", "error"):
        CASES[name].update(outcome=settled[0], **({"reason": settled[1]} if settled[1] else {}))
        if JOURNALS:
            JOURNALS[0].note({"type": "case", "test": name, **CASES[name]})


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int):
    """The session's exit status, before pytest-benchmark writes the JSON (its own wrapper, inside this one): a
    run whose pytest failed is recorded as failed and never becomes a gate's base."""
    FINISHED["exitstatus"] = int(exitstatus)
    if JOURNALS:
        JOURNALS[0].note({"type": "finished", "exitstatus": int(exitstatus)})
    yield
    _cap_cache(session)


def _cap_cache(session: pytest.Session) -> None:
    """$GPT2COMPRESS_CACHE_MAX: cap the build cache once the session no longer needs its entries."""
    from ..core.cache import apply_cap

    capped = apply_cap()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if capped and reporter is not None:
        reporter.write_line(capped)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each bench test is timed with the suite's clock (`clock.py`, through pytest-benchmark's public marker); --shard
    I/N: keep this runner's share of the bench cases (shards.py), balanced by recorded times."""
    for item in items:
        if _ours(item):
            OURS.add(item.nodeid)
            item.add_marker(pytest.mark.benchmark(timer=CLOCK))
    if OURS:
        refuse_what_cannot_time(config)
    spec = config.getoption("--shard")
    if not spec:
        return
    try:
        index, count = shards.parse(spec)
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    ours = {_name(item.nodeid): item.callspec.params for item in items if _ours(item)}
    cased = {name: p for name, p in ours.items() if isinstance(p.get("case"), Case)}  # (not an empty kind's skip)
    groups = {name: p["case"].build_group for name, p in cased.items()}
    free = frozenset(name for name, p in cased.items() if p["case"].unsupported(p["device"]))
    share = shards.split(list(ours), count, _recorded_seconds(config), groups, free)
    kept = [i for i in items if not _ours(i) or share[_name(i.nodeid)] == index]
    config.hook.pytest_deselected(items=[i for i in items if i not in kept])
    items[:] = kept


def _recorded_seconds(config: pytest.Config) -> dict[str, float]:
    from ..history.store import HISTORY_ENV, from_environment, runner_class

    if not os.environ.get(HISTORY_ENV):
        return {}
    runner = os.environ.get("RUNNER_CLASS")
    if not runner:
        machine = config.hook.pytest_benchmark_generate_machine_info(config=config)
        config.hook.pytest_benchmark_update_machine_info(config=config, machine_info=machine)
        runner = runner_class(machine)
    return shards.recorded_seconds(os.environ[HISTORY_ENV], runner, from_environment()["commit"])


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    """What this session was, beside the machine it ran on: the skips with their reasons (pytest-benchmark keeps
    only the cases that ran), each test's time (the next `--shard` split balances on it), the shard, the tier (the
history gate's base is a run of the same tier where the merge base has one), and the command
    line (`history gate --reruns` re-runs suspects with it). Not in machine_info: pytest-benchmark compares that
    between saved runs, and these differ every run."""
    output_json["gpt2compress"] = {"skipped": SKIPPED, "durations": DURATIONS, "cases": CASES, **FINISHED,
                                   **session_facts(config), **({"ceiling": CEILING} if CEILING else {})}


def session_facts(config: pytest.Config) -> dict[str, Any]:
    """What is known of the session from its start: the JSON and the journal's first line both carry it (`pins`:
    the lock's versions, which tell the gate whether a changed library version is the PR's or drift)."""
    from ..history.drift import pinned

    return {"shard": config.getoption("--shard"), "tier": run_tier(config),
            "argv": list(config.invocation_params.args), "cwd": str(config.invocation_params.dir),
            "pins": pinned(config.rootpath)}



def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lines = time_table()
    if lines:
        terminalreporter.write_sep("-", "gpt2compress: build and measure time per variant")
        for line in lines:
            terminalreporter.write_line(line)
