"""`pytest tests bench` imports both folders' test modules by basename: a shared name aborts collection."""

from helpers import ROOT


def test_bench_and_unit_test_modules_have_distinct_names():
    bench = {p.name for p in (ROOT / "bench").glob("test_*.py")}
    unit = {p.name for p in (ROOT / "tests").glob("test_*.py")}
    assert bench and unit and not bench & unit, f"rename one of {sorted(bench & unit)}"


def test_io_imports_no_stage_and_every_stage_module_registers():
    """io.py replays stage records through the registry; a new stage is one module that registers itself."""
    from gpt2compress.fingerprint import imported_modules, package_root
    from gpt2compress.registry import RESTORERS, RUNTIMES, STAGES
    from gpt2compress.stages import STAGES as loaded  # noqa: F401  (imports every stage module)

    assert not [m for m in imported_modules("gpt2compress.io", package_root()) if m.startswith("gpt2compress.stages")]
    modules = {f"gpt2compress.stages.{p.stem}" for p in (package_root() / "stages").glob("*.py") if p.stem != "__init__"}
    registered = {s.module for s in STAGES.values()} | {r.module for r in RUNTIMES.values()}
    assert registered == modules | {"gpt2compress.io"}  # io: the torch runtime
    assert {"torch", "openvino", "inc", "bnb", "llamacpp"} <= set(RUNTIMES)
    assert {"pruned_heads", "int8_scratch", "autocast", "attn_implementation"} <= set(RESTORERS)


def test_unknown_names_list_the_known_ones():
    import pytest

    from gpt2compress.registry import restorer, runtime, stage

    for lookup, kind in ((stage, "stages"), (runtime, "runtimes"), (restorer, "recorded changes")):
        with pytest.raises(KeyError, match=f"known {kind}: "):
            lookup("magic")
