"""The bench's fixtures: each kind's reference, measured once per session; each case built, measured into its record,
journaled the moment it exists, then gated by its budget. A bench test module names its kind (`KIND`) and takes
`case`, `device` (and, for generate, `gen_batch_size`), parametrized by `suite.plugin`, and `reference`, `measure`
and `gate`, which do what the case's kind (`core.kinds`) says.
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from ..build.data import load_corpus
from ..build.hardware import cpu_classes
from ..build.sources import load_source
from ..core.budgets import load_budgets
from ..core.cases import Case
from ..core.kinds import BadOption, Setting, kind_of
from ..core.options import NO_GPU, classify_overrides, settings_overrides
from ..core.progress import add_crashed, measuring, report_to
from ..core.records import Record
from ..core.registry import StageNotApplicable, output_runtime, stage
from ..core.variants import Context, ContextSpec, Settings, build
from ..measure.isolation import Crashed, run_isolated
from ..measure.journal import Journal
from ..measure.pairing import Reference, measure_case, measure_in_child
from .clock import CLOCK
from .plugin import CASES, CEILING, JOURNALS, bad_input_ends_the_session, devices, session_facts


SMOKE_EVAL_SAMPLES = 128  # --smoke checks that everything runs; full-corpus perplexity is the main job's
PR_EVAL_SAMPLES = 512  # --tier pr: the smallest subset whose perplexity ratios tracked the full set's (README)


@pytest.fixture(scope="session")
def default_budgets() -> Path:
    """The budgets file when --budgets names none: the suite's conftest names its own (bench/budgets.toml)."""
    raise pytest.UsageError("no budgets file: pass --budgets PATH (the bench's conftest names bench/budgets.toml)")


@pytest.fixture(scope="session")
def budgets(pytestconfig, request):
    path = pytestconfig.getoption("--budgets") or request.getfixturevalue("default_budgets")
    with bad_input_ends_the_session():
        return load_budgets(path)


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


@pytest.fixture(scope="session")
def hellaswag(pytestconfig):
    """HellaSwag examples with `--hellaswag PATH` (forward rows then carry acc / acc_norm), else None."""
    from ..measure.hellaswag import load_hellaswag

    spec = pytestconfig.getoption("--hellaswag")
    return load_hellaswag(spec, pytestconfig.getoption("--hellaswag-samples")) if spec else None


def setting(case: Case, request: pytest.FixtureRequest) -> Setting:
    """What the case's kind makes its reference and options from: its context, the options, the other fixtures."""
    ctx = request.getfixturevalue(kind_of(case.kind).context)
    return Setting(ctx, request.config.getoption, request.getfixturevalue)


@pytest.fixture
def reference(_references, case: Case, ctx, request) -> Reference:
    """The case's kind's reference on this device and shape: measured once per session, whatever `--stages` and
    `-k` select, and never changed afterwards."""
    kind = kind_of(case.kind)
    here = setting(case, request)
    try:
        key, measure_it = kind.measure_reference(here)
    except BadOption as bad:
        pytest.fail(str(bad), pytrace=False)
    key = (kind.name, here.ctx.device, *key)
    if key not in _references:
        _references[key] = measure_it()
    return _references[key]


@pytest.fixture(scope="session")
def ceiling(pytestconfig):
    """This machine's peaks and bandwidth (measure/ceiling.py), probed once per CPU and cached; every CPU forward and
    decode row is set against them. A probe that cannot run is the reason those rows give, not a failure."""
    from ..measure.ceiling import CeilingError, probe

    if "cpu" not in devices(pytestconfig):
        return None
    try:
        found = probe(torch.get_num_threads())
    except (CeilingError, OSError, subprocess.SubprocessError) as reason:
        return f"the ceiling probe could not run here: {reason}"
    CEILING.update(found.to_dict())  # into the results' session facts: the history keeps it with the runner class
    return found


@pytest.fixture(scope="session")
def news(pytestconfig):
    from ..measure.classify import load_ag_news
    from ..build.data import DataSourceError

    try:
        return load_ag_news(pytestconfig.getoption("--agnews"))
    except DataSourceError as reason:
        pytest.skip(f"no AG News data: {reason}")


@pytest.fixture(scope="session")
def _classify_contexts() -> dict:
    return {}


@pytest.fixture
def classify_ctx(_classify_contexts, ctx, news, pytestconfig):
    """The classify kind's context: the fp32 classifier fine-tuned on AG News from this device's LM (cached)."""
    from ..measure.classify import classify_context, classify_settings

    if ctx.device not in _classify_contexts:
        settings = classify_settings(pytestconfig.getoption("--model"), **classify_overrides(pytestconfig.getoption))
        _classify_contexts[ctx.device] = classify_context(ctx.source, news, settings, ctx.corpus, ctx.device, ctx.spec)
    return _classify_contexts[ctx.device]


@contextlib.contextmanager
def memray_capture(directory: str | None, name: str):
    """With --memray-captures DIR: a capture per stage plus its flame-graph HTML."""
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
    reference's paired call, runs untimed by it before each round. The suite's clock hands back what it timed."""

    def runner(target, setup, rounds, warmup):
        with CLOCK.recording() as timed:
            benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)
        return timed[warmup:]

    return runner


def report_rounds(benchmark, seconds: list[float]) -> None:
    """Rounds timed elsewhere (an isolated child, train's optimizer steps) into pytest-benchmark's row, through its
    own `pedantic`: each round it times reads the next of `seconds` off the suite's clock."""
    if seconds:
        with CLOCK.replaying(seconds):
            benchmark.pedantic(lambda: None, rounds=len(seconds), iterations=1)


@pytest.fixture
def measure(benchmark, case: Case, device: str, request, pytestconfig) -> Callable[..., Record]:
    """`measure(reference, **options)`: build the case and measure it into its record, in its kind's context and
    with its kind's options: in this process, or, for a runtime of native code (`isolated=True`), in a child
    whose crash fails this case only."""
    kind = kind_of(case.kind)

    def run(reference: Reference, **options: Any) -> Record:
        here = setting(case, request)
        ctx = here.ctx
        options = {**kind.options(case, here), **options}
        benchmark.group = f"{case.kind}-{device}" + (f"-b{options['batch_size']}" if "batch_size" in options else "")
        options.pop("batch_size", None)
        options.update(memory_probe=not pytestconfig.getoption("--no-memory-probe"),
                       loop=pytestconfig.getoption("--ov-generate"))
        if output_runtime(case.chain).isolated:
            modules = tuple(dict.fromkeys([*(stage(name).module for name in case.chain), kind.measure.__module__]))
            start = time.monotonic()
            try:  # the child's progress lines and build / measure times come through run_isolated
                record, rounds = run_isolated(measure_in_child, case.kind, case.trains or case.variant, case.chain,
                                              ctx.spec, reference.record, reference.inputs, options, modules=modules)
            except Crashed as crash:
                add_crashed(f"{device}/{case.variant}", time.monotonic() - start)
                pytest.fail(f"{case.variant} on {device}: {crash}", pytrace=False)
            except StageNotApplicable as reason:
                pytest.skip(str(reason))
            report_rounds(benchmark, kind.own_rounds(record) if kind.own_rounds else rounds)
            return _named(record, case)
        try:
            with memray_capture(pytestconfig.getoption("--memray-captures"), f"{device}-{case.variant}-build"):
                built = build(case.trains or case.variant, ctx, case.chain)
            with measuring(f"{device}/{case.variant}"):
                record = measure_case(case.kind, built, ctx, reference, benchmark_runner(benchmark), options)
        except StageNotApplicable as reason:  # the chain, or this kind, does not apply (e.g. no KV-cache generate)
            pytest.skip(str(reason))
        if kind.own_rounds:  # timed inside its own loop (train: one round per optimizer step)
            report_rounds(benchmark, kind.own_rounds(record))
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
        own_rounds = kind_of(record.kind).own_rounds
        report_rounds(benchmark, own_rounds(record) if own_rounds else [])
        return record

    return row



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


