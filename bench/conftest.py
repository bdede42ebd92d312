"""Fixtures: each kind's reference, measured once per session; each case built, measured into its record,
journaled the moment it exists, then gated by its budget.

The case matrix is `gpt2compress.cases`; one hook parametrizes every test from it. A test module names
its kind (`KIND`) and takes `case`, `device` (and, for generate, `gen_batch_size`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from gpt2compress import shards
from gpt2compress.budgets import BudgetFileError, load_budgets
from gpt2compress.cases import Case, names as case_names, select
from gpt2compress.catalog import CLASSIFY, FORWARD, GENERATE, TRAIN
from gpt2compress.data import DataSourceError, load_corpus
from gpt2compress.hardware import cpu_classes
from gpt2compress.isolation import Crashed, run_isolated
from gpt2compress.journal import Journal
from gpt2compress.measure import (Reference, classify_reference, forward_reference, generate_reference,
                                  measure_case, measure_in_child, train_record)
from gpt2compress.metrics import first_batch, timed_inputs
from gpt2compress.options import NO_GPU, classify_overrides, resolve_devices, settings_overrides
from gpt2compress.progress import add_crashed, measuring, report_to, time_table
from gpt2compress.records import Record
from gpt2compress.registry import StageNotApplicable, output_runtime, stage
from gpt2compress.sources import ModelSourceError, load_source
from gpt2compress.variants import Context, ContextSpec, Settings, build

DEFAULT_BUDGETS = Path(__file__).with_name("budgets.toml")
SMOKE_EVAL_SAMPLES = 128  # --smoke checks that everything runs; full-corpus perplexity is the main job's
PR_EVAL_SAMPLES = 512  # --tier pr: the smallest subset whose perplexity ratios tracked the full set's (README)
DEFAULT_PROMPT_LEN = 128


def devices(config: pytest.Config) -> list[str]:
    try:
        return resolve_devices(config.getoption("--device"), torch.cuda.is_available())
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None


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
    """The bench times its rounds through pytest-benchmark's fixture: with it off there is nothing to time. Options
    that would fail every module fail once, here."""
    if config.getoption("benchmark_disable", False):
        raise pytest.UsageError("bench/ times every case through pytest-benchmark: drop --benchmark-disable "
                                "(--benchmark-skip skips the bench instead)")
    if getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("bench/ cannot run under pytest-xdist (-n): pytest-benchmark turns itself off there, "
                                "and cases timed side by side would slow each other")
    chosen_stages(config), devices(config)  # a bad --stages or --device: one line now, not an error per module


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The one parametrize hook: cases of the module's kind, generate's batch sizes, devices."""
    kind = getattr(metafunc.module, "KIND", None)
    if kind is None or "case" not in metafunc.fixturenames:
        return
    smoke = metafunc.config.getoption("--smoke")
    tier = metafunc.config.getoption("--tier")
    try:
        chosen = select(kind, chosen_stages(metafunc.config), smoke, tier)
    except KeyError as err:
        raise pytest.UsageError(f"--tier: {err.args[0]}") from None
    metafunc.parametrize("case", chosen, ids=[c.variant for c in chosen])
    if "gen_batch_size" in metafunc.fixturenames:
        sizes = metafunc.config.getoption("--gen-batch-sizes")
        metafunc.parametrize("gen_batch_size", sizes[:1] if smoke or tier == "pr" else sizes)
    metafunc.parametrize("device", devices(metafunc.config))


@pytest.fixture(scope="session")
def budgets(pytestconfig):
    with bad_input_ends_the_session():
        return load_budgets(pytestconfig.getoption("--budgets") or DEFAULT_BUDGETS)


@pytest.fixture(scope="session")
def corpus(pytestconfig):
    with bad_input_ends_the_session():
        return load_corpus(pytestconfig.getoption("--data"))


@pytest.fixture(scope="session")
def source(pytestconfig, corpus):
    with bad_input_ends_the_session():
        return load_source(pytestconfig.getoption("--model"), corpus, pytestconfig.getoption("--tokenizer"))


@pytest.fixture(scope="session")
def contexts(pytestconfig, corpus, source) -> dict[str, Context]:
    opt = pytestconfig.getoption
    eval_samples = opt("--eval-samples") or (SMOKE_EVAL_SAMPLES if opt("--smoke") else
                                             PR_EVAL_SAMPLES if opt("--tier") == "pr" else None)
    settings = Settings.for_model(opt("--model"), **{**settings_overrides(opt), "eval_samples": eval_samples})
    out = {}
    for device in devices(pytestconfig):
        if device == "cpu" or torch.cuda.is_available():
            spec = ContextSpec(opt("--model"), opt("--data"), opt("--tokenizer"), settings, device)
            out[device] = Context(source, corpus, settings, device, spec)
    return out


@pytest.fixture
def ctx(contexts, case: Case, device: str) -> Context:
    """This device's context, or a skip that says why the case cannot run here (from the stage registry)."""
    if device not in contexts:
        pytest.skip(NO_GPU)
    reason = case.unsupported(device)
    if reason:
        pytest.skip(reason)
    return contexts[device]


@pytest.fixture(scope="session")
def _references() -> dict[tuple, Reference]:
    return {}


def _reference(cache: dict, key: tuple, measure: Callable[[], Reference]) -> Reference:
    """Each reference once per session, whatever `--stages` and `-k` select; never changed afterwards."""
    if key not in cache:
        cache[key] = measure()
    return cache[key]


@pytest.fixture(scope="session")
def hellaswag(pytestconfig):
    """HellaSwag examples with `--hellaswag PATH` (forward rows then carry acc / acc_norm), else None."""
    from gpt2compress.hellaswag import load_hellaswag

    spec = pytestconfig.getoption("--hellaswag")
    return load_hellaswag(spec, pytestconfig.getoption("--hellaswag-samples")) if spec else None


@pytest.fixture
def forward_ref(_references, ctx, pytestconfig, hellaswag) -> Reference:
    opt = pytestconfig.getoption
    cycle = opt("--rounds") + opt("--warmup") if opt("--cycle-inputs") else 0
    inputs = timed_inputs(ctx.eval, opt("--batch-size"), ctx.settings.seq_len, cycle)
    key = (FORWARD, ctx.device, tuple(first_batch(inputs)["input_ids"].shape))
    return _reference(_references, key, lambda: forward_reference(ctx, inputs, hellaswag, opt("--warmup")))


def prompt(ctx: Context, batch_size: int, config: pytest.Config):
    from gpt2compress.generation import prompt_batch

    prompt_len, new_tokens = config.getoption("--prompt-len"), config.getoption("--new-tokens")
    limit = ctx.source.model.config.n_positions
    if prompt_len is None:  # default: 128 tokens, shortened to fit a short-context model and the eval windows
        prompt_len = min(DEFAULT_PROMPT_LEN, limit - new_tokens, ctx.settings.seq_len)
    if prompt_len < 1 or prompt_len + new_tokens > limit:
        pytest.fail(f"--prompt-len {prompt_len} + --new-tokens {new_tokens} exceeds the model's {limit} positions: "
                    "lower one of them", pytrace=False)
    return prompt_batch(ctx.eval.input_ids, batch_size, prompt_len), new_tokens


@pytest.fixture
def generate_ref(_references, ctx, gen_batch_size, pytestconfig) -> Reference:
    ids, new_tokens = prompt(ctx, gen_batch_size, pytestconfig)
    key = (GENERATE, ctx.device, gen_batch_size)
    return _reference(_references, key, lambda: generate_reference(ctx, ids, new_tokens))


def train_setup(case: Case, config: pytest.Config):
    opt = config.getoption
    return dataclasses.replace(case.setup, tokens_per_step=opt("--train-tokens"),
                               micro_batch=opt("--train-micro-batch"), steps=opt("--train-steps"))


@pytest.fixture
def train_ref(_references, ctx, case, pytestconfig) -> Reference:
    from gpt2compress.cases import case as find_case
    from gpt2compress.catalog import reference_of

    reference = find_case(TRAIN, reference_of(TRAIN))

    def measure() -> Reference:
        built = build(reference.trains, ctx, reference.chain)
        record = train_record(built, ctx, reference.variant, train_setup(reference, pytestconfig), None)
        return Reference(record, lambda: None)

    return _reference(_references, (TRAIN, ctx.device), measure)


@pytest.fixture(scope="session")
def news(pytestconfig):
    from gpt2compress.classify import load_ag_news
    from gpt2compress.data import DataSourceError

    try:
        return load_ag_news(pytestconfig.getoption("--agnews"))
    except DataSourceError as reason:
        pytest.skip(f"no AG News data: {reason}")


@pytest.fixture(scope="session")
def _classify_contexts() -> dict:
    return {}


@pytest.fixture
def classify_ctx(_classify_contexts, ctx, news, pytestconfig):
    from gpt2compress.classify import classify_context, classify_settings

    if ctx.device not in _classify_contexts:
        settings = classify_settings(pytestconfig.getoption("--model"), **classify_overrides(pytestconfig.getoption))
        _classify_contexts[ctx.device] = classify_context(ctx.source, news, settings, ctx.corpus, ctx.device, ctx.spec)
    return _classify_contexts[ctx.device]


@pytest.fixture
def classify_ref(_references, classify_ctx) -> Reference:
    return _reference(_references, (CLASSIFY, classify_ctx.device), lambda: classify_reference(classify_ctx))


@contextlib.contextmanager
def memray_capture(directory: str | None, name: str):
    """With --memray DIR: a capture per stage plus its flame-graph HTML."""
    if not directory:
        yield
        return
    import memray

    out = Path(directory) / f"{name}.bin"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with memray.Tracker(out, native_traces=False):
        yield
    subprocess.run([sys.executable, "-m", "memray", "flamegraph", "-f", "-o", str(out.with_suffix(".html")), str(out)],
                   check=False, capture_output=True)


def benchmark_runner(benchmark) -> Callable:
    """measure.Runner on pytest-benchmark: it times the variant's rounds (and owns their statistics); `setup`, the
    reference's paired call, runs untimed by it before each round."""

    def runner(target, setup, rounds, warmup):
        benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)
        return list(benchmark.stats.stats.data)

    return runner


def report_rounds(benchmark, seconds: list[float]) -> None:
    """Rounds timed elsewhere (an isolated child, a reference's fixture) into pytest-benchmark's row: it has no
    public call for that, so this does what its `pedantic` does with each round it times, and marks the fixture
    used as `pedantic` does (else every such row warns "Benchmark fixture was not used at all")."""
    benchmark._mode = "report_rounds(...)"
    stats = benchmark._make_stats(1)
    for s in seconds:
        stats.update(s)


def step_rounds(record: Record) -> list[float]:
    """A train record's rounds for pytest-benchmark: its timed optimizer steps, in seconds (none for other kinds)."""
    return [ms / 1e3 for ms in getattr(record, "step_samples_ms", [])]


@pytest.fixture
def measure(benchmark, case: Case, device: str, pytestconfig) -> Callable[..., Record]:
    """`measure(ctx, reference, **options)`: build the case and measure it into its record — in this process, or,
    for a runtime of native code (`isolated=True`), in a child whose crash fails this case only."""

    def run(ctx: Context, reference: Reference, **options: Any) -> Record:
        benchmark.group = f"{case.kind}-{device}" + (f"-b{options['batch_size']}" if "batch_size" in options else "")
        options.pop("batch_size", None)
        if case.kind == TRAIN:
            options.update(variant=case.variant, setup=train_setup(case, pytestconfig))
        if output_runtime(case.chain).isolated:
            modules = tuple(dict.fromkeys(stage(name).module for name in case.chain))
            start = time.monotonic()
            try:  # the child's progress lines and build / measure times come through run_isolated
                record, rounds = run_isolated(measure_in_child, case.kind, case.trains or case.variant, case.chain,
                                              ctx.spec, reference.record, reference.inputs, options, modules=modules)
            except Crashed as crash:
                add_crashed(f"{device}/{case.variant}", time.monotonic() - start)
                pytest.fail(f"{case.variant} on {device}: {crash}", pytrace=False)
            except StageNotApplicable as reason:
                pytest.skip(str(reason))
            report_rounds(benchmark, rounds or step_rounds(record))
            return _named(record, case)
        try:
            with memray_capture(pytestconfig.getoption("--memray"), f"{device}-{case.variant}-build"):
                built = build(case.trains or case.variant, ctx, case.chain)
            with measuring(f"{device}/{case.variant}"):
                record = measure_case(case.kind, built, ctx, reference, benchmark_runner(benchmark), options)
        except StageNotApplicable as reason:  # the chain, or this kind, does not apply (e.g. no KV-cache generate)
            pytest.skip(str(reason))
        if case.kind == TRAIN:  # timed inside train_steps, one round per optimizer step
            report_rounds(benchmark, step_rounds(record))
        return _named(record, case)

    return run


def _named(record: Record, case: Case) -> Record:
    record.variant = case.variant
    return record


@pytest.fixture(scope="session")
def journal(request) -> Journal | None:
    """Every record, appended as it is measured: `--journal PATH`, default beside `--benchmark-json`."""
    config = request.config
    path = config.getoption("--journal")
    target = config.getoption("--benchmark-json", None)
    if path is None and target is not None:
        path = Path(target).with_suffix(".jsonl")
    if path is None:
        return None
    machine = config.hook.pytest_benchmark_generate_machine_info(config=config)
    config.hook.pytest_benchmark_update_machine_info(config=config, machine_info=machine)
    JOURNALS[:] = [Journal(path, machine, {**session_facts(config), "cases": CASES})]
    return JOURNALS[0]


JOURNALS: list[Journal] = []  # the session's journal once opened: the outcome hooks append to it too


@pytest.fixture
def gate(benchmark, budgets, journal, pytestconfig):
    """`gate(record)`: the record goes into pytest-benchmark's row and the journal first, then its budget is
    checked: a broken budget fails the test without losing a number."""

    def check(record: Record) -> None:
        budget = budgets.budget_for(record.device, pytestconfig.getoption("--model"), record.variant,
                                    cpu_classes() if record.device == "cpu" else ())
        record.budget = budget.of(record.kind)
        benchmark.extra_info.update(record.to_extra_info())
        if journal is not None:
            journal.append(record)
        broken = budget.violations(record)
        if broken:
            pytest.fail(f"{record.where()} is over budget:\n  " + "\n  ".join(broken), pytrace=False)

    return check


@pytest.fixture
def reuse(benchmark) -> Callable[[Reference], Record]:
    """The reference case's own row: the measurement its fixture made once (not a second, different one)."""

    def row(reference: Reference) -> Record:
        record = copy.deepcopy(reference.record)
        benchmark.group = f"{record.kind}-{record.device}"  # beside the rows compared with it, as `measure` groups
        report_rounds(benchmark, step_rounds(record))
        return record

    return row


SKIPPED: list[dict] = []  # every skipped bench case of this session, with its reason
DURATIONS: dict[str, float] = {}  # test name -> seconds, setup (builds) + call + teardown: what --shard balances
# test name -> {kind, device, variant[, batch_size], outcome[, reason]}: every selected case and what became of it
# (`report.coverage` names a case the base measured and this run did not by it)
CASES: dict[str, dict] = {}
FINISHED: dict[str, int] = {}  # {"exitstatus": N} once the session ends


def _name(nodeid: str) -> str:
    return nodeid.split("::", 1)[-1]


def _ours(nodeid: str) -> bool:
    return "bench/" in nodeid.replace("\\", "/")


def pytest_collection_finish(session: pytest.Session) -> None:
    """The selection, after --stages, --tier, --shard, -k: each case starts as `selected` (a crash leaves it so)."""
    for item in session.items:
        params = getattr(item, "callspec", None) and item.callspec.params
        if _ours(item.nodeid) and params and isinstance(params.get("case"), Case):
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
    if not _ours(report.nodeid):
        return
    name = _name(report.nodeid)
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--shard I/N: keep this runner's share of the bench cases (shards.py), balanced by recorded times."""
    spec = config.getoption("--shard")
    if not spec:
        return
    try:
        index, count = shards.parse(spec)
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    ours = {_name(item.nodeid): item.callspec.params for item in items if _ours(item.nodeid)}
    cased = {name: p for name, p in ours.items() if isinstance(p.get("case"), Case)}  # (not an empty kind's skip)
    groups = {name: p["case"].build_group for name, p in cased.items()}
    free = frozenset(name for name, p in cased.items() if p["case"].unsupported(p["device"]))
    share = shards.split(list(ours), count, _recorded_seconds(config), groups, free)
    kept = [i for i in items if not _ours(i.nodeid) or share[_name(i.nodeid)] == index]
    config.hook.pytest_deselected(items=[i for i in items if i not in kept])
    items[:] = kept


def _recorded_seconds(config: pytest.Config) -> dict[str, float]:
    from gpt2compress.report.history_store import HISTORY_ENV, from_environment, runner_class

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
                                   **session_facts(config)}


def session_facts(config: pytest.Config) -> dict[str, Any]:
    """What is known of the session from its start: the JSON and the journal's first line both carry it (`pins`:
    the lock's versions, which tell the gate whether a changed library version is the PR's or drift)."""
    from gpt2compress.report.drift import pinned

    return {"shard": config.getoption("--shard"), "tier": config.getoption("--tier"),
            "argv": list(config.invocation_params.args), "cwd": str(config.invocation_params.dir),
            "pins": pinned(config.rootpath)}


@pytest.fixture(scope="session", autouse=True)
def progress_lines(pytestconfig):
    """Builds and long loops say where they are through pytest's terminal reporter: pytest captures tqdm."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        yield
        return

    def write(line: str) -> None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(line)

    with report_to(write):
        yield


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lines = time_table()
    if lines:
        terminalreporter.write_sep("-", "gpt2compress: build and measure time per variant")
        for line in lines:
            terminalreporter.write_line(line)
