"""`pytest tests bench` imports both folders' test modules by basename: a shared name aborts collection."""

from helpers import ROOT


def test_bench_and_unit_test_modules_have_distinct_names():
    bench = {p.name for p in (ROOT / "bench").glob("test_*.py")}
    unit = {p.name for p in (ROOT / "tests").glob("test_*.py")}
    assert bench and unit and not bench & unit, f"rename one of {sorted(bench & unit)}"
