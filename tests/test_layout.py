"""`pytest tests bench` imports both folders' test modules by basename: a shared name aborts collection."""

import subprocess
import sys

from helpers import ROOT


def test_bench_and_unit_test_modules_have_distinct_names():
    bench = {p.name for p in (ROOT / "bench").glob("test_*.py")}
    unit = {p.name for p in (ROOT / "tests").glob("test_*.py")}
    assert bench and unit and not bench & unit, f"rename one of {sorted(bench & unit)}"


def test_the_code_passes_ruff():
    """The rules in pyproject's [tool.ruff] (line length, unused imports, undefined names), on every Python file."""
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=ROOT, capture_output=True, text=True)
    assert "No module named ruff" not in done.stderr, "ruff is in the dev extra: pip install -e '.[dev]'"
    assert done.returncode == 0, f"ruff check . (ruff check --fix mends some):\n{done.stdout[-3000:]}{done.stderr}"


def test_io_imports_no_stage_and_every_stage_module_registers():
    """io.py replays stage records through the registry; a new stage is one module that registers itself."""
    from gpt2compress.core.fingerprint import imported_modules, package_root
    from gpt2compress.core.registry import RESTORERS, RUNTIMES, STAGES
    from gpt2compress.build.stages import STAGES as loaded  # noqa: F401  (imports every stage module)

    imported = imported_modules("gpt2compress.runtimes.pytorch", package_root())
    assert not [m for m in imported if m.startswith("gpt2compress.build.stages")]
    modules = {f"gpt2compress.build.stages.{p.stem}" for p in (package_root() / "build" / "stages").glob("*.py")
               if p.stem != "__init__"}
    registered = {s.module for s in STAGES.values()} | {r.module for r in RUNTIMES.values()}
    assert registered == modules | {"gpt2compress.runtimes.pytorch", "gpt2compress.runtimes.openvino.ir"}
    assert {"torch", "openvino", "inc", "bnb", "llamacpp"} <= set(RUNTIMES)
    assert {"pruned_heads", "int8_scratch", "autocast", "attn_implementation"} <= set(RESTORERS)


def test_unknown_names_list_the_known_ones():
    import pytest

    from gpt2compress.core.registry import restorer, runtime, stage

    for lookup, kind in ((stage, "stages"), (runtime, "runtimes"), (restorer, "recorded changes")):
        with pytest.raises(KeyError, match=f"known {kind}: "):
            lookup("magic")


SOURCES = [*(ROOT / "src" / "gpt2compress").rglob("*.py"), *(ROOT / "bench").glob("*.py")]


def defining(pattern: str) -> set[str]:
    import re

    return {p.name for p in SOURCES if re.search(pattern, p.read_text())}


def test_ratios_metrics_and_thresholds_are_defined_in_one_place():
    """grep finds each: a ratio is computed in core/metrics.ratio (records derive theirs through it), metric names
    and default thresholds live in METRICS, each kind's reference and smoke list in its kind module."""
    assert defining(r"def (\w*_)?ratios?\w*\(") == {"metrics.py", "records.py", "runs.py"}  # ratio / derive / fill
    assert defining(r"Metric\(") == {"metrics.py"}
    assert defining(r"\b0\.10\b") == {"metrics.py"}  # the default threshold of a timing metric: 10 %
    assert defining(r'"cls-fp32"') == {"records.py"} and defining(r'REFERENCE = "fp32"') == {"records.py"}
    assert defining(r"\bsmoke=\(") == {"train.py", "classify.py"} and defining(r"LM_SMOKE = ") == {"cases.py"}
    assert defining(r"def pytest_generate_tests") == {"plugin.py"}  # the pytest plugin: the one hook
    assert defining(r"\.addoption\(|add_argument\(\"--(model|device|seq-len)") == {"options.py"}
    assert defining(r"tomllib\.loads") == {"budgets.py"}  # one reader of the budgets file
    assert not defining(r"[^_]latency_ratio|median_ms_ratio|[^_]tokens_per_s_ratio")  # old names; budget keys stay


def test_options_are_shared_by_pytest_and_the_cli(capsys):
    import pytest

    from gpt2compress.cli import main
    from gpt2compress.core.options import OPTIONS

    with pytest.raises(SystemExit):
        main(["pipeline", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for option in OPTIONS:
        assert (option.flag in shown) == option.cli, option.flag
    assert "auto (every device" in shown  # the same --devices default and help as pytest's


def test_every_case_runs_where_the_stage_registry_says():
    from gpt2compress.core.cases import cases, select
    from gpt2compress.core.registry import StageNotApplicable, check_chain

    for case in cases():
        for device in ("cpu", "cuda"):
            try:
                check_chain(case.rule_chain, device)
                assert case.unsupported(device) is None
            except StageNotApplicable:
                assert case.unsupported(device)
    assert [c.variant for c in select("train", ["int8-scratch"], False)] == []
    assert [c.variant for c in select("classify", ["int8-scratch"], False)] == ["cls-int8-scratch"]
    assert {c.variant for c in select("train", ["fp32"], True)} == {"fp32", "bf16-autocast", "fp16-autocast"}


PACKAGE = ROOT / "src" / "gpt2compress"


def test_the_package_is_folders_by_role_with_short_modules():
    """At most 8 modules at the top (here: none but __init__), every module under 400 lines: a folder says what
    its modules are for, a module fits on a few screens."""
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 8, top
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    long = {name: n for name, n in sizes.items() if n > 400}
    assert not long, f"split these modules: {long}"


def _import_graph() -> dict[str, set[str]]:
    """Module -> the modules of this package it imports when imported (not inside functions, not for typing)."""
    from gpt2compress.core.fingerprint import imported_modules, package_root

    names = [".".join(("gpt2compress", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
             for p in PACKAGE.rglob("*.py")]
    return {name: imported_modules(name, package_root(), at_import=True) for name in names}


def test_no_import_circle():
    """Packages depend one way: a module that needs another's import-time names must not be needed back."""
    graph = _import_graph()
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
