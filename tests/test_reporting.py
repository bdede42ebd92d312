"""plot / compare on real benchmark JSON written by two runs of the same suite (an A/A pair)."""

import json

import pytest

from gpt2compress.cli import main
from gpt2compress.plots import pareto_frontier

from helpers import run_bench

STAGES = "fp32,pruned,int8-scratch"
# Latency between two processes is not gated in the A/A test: on this project's 2-core runners a variant's ratio to
# fp32 moves between processes far beyond anything rounds inside one process show. Measured on an AVX-512 EPYC,
# old and new code alike: int8-scratch 0.45 -> 1.00 on this 2 ms model, and 0.84 -> 1.58 on a 15 ms one (6 runs).
# compare's 10 % gate cries wolf on such pairs (issue 14 replaces it with thresholds from cross-process noise).
# Here latency and tokens/s are reported with a limit no A/A pair reaches; perplexity, size and memory are gated
# as usual, and the planted regressions below are checked at the default thresholds.
AA_TIMING_UNGATED = 'version = 1\n[[compare]]\nmetric = "latency"\nthreshold = 10.0\n' \
                    '[[compare]]\nmetric = "tokens_per_s"\nthreshold = 10.0\n'


@pytest.fixture(scope="module")
def aa_runs(local_checkpoint, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    budgets = tmp / "open.toml"
    budgets.write_text("version = 1\n")
    paths = []
    for name in ("a", "b"):
        out = tmp / f"{name}.json"
        run = run_bench(local_checkpoint, out, "--stages", STAGES, "--budgets", str(budgets), cache=tmp / "cache")
        assert run.returncode == 0, run.stdout[-3000:]
        paths.append(out)
    return paths


def test_plot_writes_every_chart_and_the_summary(aa_runs, tmp_path, capsys):
    assert main(["plot", *map(str, aa_runs), "--out", str(tmp_path)]) == 0
    for chart in ("latency", "perplexity", "peak_memory", "size", "pareto"):
        assert (tmp_path / f"{chart}.png").stat().st_size > 10_000
    summary = (tmp_path / "summary.md").read_text()
    assert "## Forward: a — cpu" in summary and "## Forward: b — cpu" in summary
    assert summary.count("| int8-scratch | int8_scratch |") == 2


def test_compare_passes_an_aa_pair(aa_runs, capsys, tmp_path):
    (tmp_path / "timing.toml").write_text(AA_TIMING_UNGATED)
    assert main(["compare", *map(str, aa_runs), "--budgets", str(tmp_path / "timing.toml")]) == 0
    out = capsys.readouterr().out
    assert "0 regression(s)" in out
    compared = {tuple(line.split()[:2]) for line in out.splitlines()[1:] if line.startswith("cpu/")}
    assert {("cpu/int8-scratch", "perplexity"), ("cpu/int8-scratch", "size"), ("cpu/int8-scratch", "latency")} <= compared


def plant(path, out, variant, **scale):
    data = json.loads(path.read_text())
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info["variant"] == variant:
            for key, factor in scale.items():
                info[key] = [x * factor for x in info[key]] if isinstance(info[key], list) else info[key] * factor
    out.write_text(json.dumps(data))
    return out


def test_compare_fails_a_planted_latency_regression(aa_runs, tmp_path, capsys):
    """Planted into a copy of run A, so the plant is the only difference."""
    slow = plant(aa_runs[0], tmp_path / "slow.json", "pruned", latency_samples_ms=3.0, median_ms=3.0,
                 tokens_per_s=1 / 3.0)
    assert main(["compare", str(aa_runs[0]), str(slow)]) == 1
    flagged = [line.split()[:2] for line in capsys.readouterr().out.splitlines() if line.endswith("REGRESSION")]
    assert ["cpu/pruned", "latency"] in flagged and all(where == "cpu/pruned" for where, _ in flagged)


def test_compare_fails_a_planted_perplexity_regression(aa_runs, tmp_path, capsys):
    worse = plant(aa_runs[0], tmp_path / "worse.json", "int8-scratch", perplexity=1.05)
    assert main(["compare", str(aa_runs[0]), str(worse)]) == 1


def test_compare_threshold_override_from_budgets(aa_runs, tmp_path, capsys):
    worse = plant(aa_runs[0], tmp_path / "worse.json", "int8-scratch", perplexity=1.05)
    budgets = tmp_path / "b.toml"
    budgets.write_text('version = 1\n[[compare]]\nmatch = "cpu/int8-.*"\nmetric = "perplexity"\nthreshold = 0.10\n')
    assert main(["compare", str(aa_runs[0]), str(worse), "--budgets", str(budgets)]) == 0


def test_compare_warns_when_machines_differ(aa_runs, tmp_path, capsys):
    data = json.loads(aa_runs[0].read_text())
    data["machine_info"]["cpu"] = {"brand_raw": "another CPU"}
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    main(["compare", str(aa_runs[0]), str(other)])
    assert "machines differ" in capsys.readouterr().err


def test_machine_identity_is_recorded(aa_runs):
    info = json.loads(aa_runs[0].read_text())["machine_info"]["gpt2compress"]
    assert info["versions"]["torch"] and info["versions"]["openvino"] and "cpu_isa" in info


def test_bad_json_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    assert main(["compare", str(tmp_path / "x.json"), str(tmp_path / "x.json")]) == 2
    assert "no gpt2compress benchmark" in capsys.readouterr().err


def test_pareto_frontier():
    points = [(10, 5, "a"), (5, 9, "b"), (12, 4, "c"), (11, 6, "d"), (5, 10, "e")]
    assert [p[2] for p in pareto_frontier(points)] == ["b", "a", "c"]


def test_baseline_absolute_latency_is_gated_only_when_asked(aa_runs, tmp_path, capsys):
    slow = plant(aa_runs[0], tmp_path / "slow.json", "fp32", latency_samples_ms=4.0, median_ms=4.0)
    assert main(["compare", str(aa_runs[0]), str(slow)]) == 0  # drift-prone: pytest-benchmark's history gates it
    budgets = tmp_path / "b.toml"
    budgets.write_text('version = 1\n[[compare]]\nmatch = "cpu/fp32"\nmetric = "latency"\nthreshold = 0.25\n')
    assert main(["compare", str(aa_runs[0]), str(slow), "--budgets", str(budgets)]) == 1


def test_rows_say_which_code_built_what_they_measured(aa_runs):
    rows = {b["extra_info"]["variant"]: b["extra_info"] for b in json.loads(aa_runs[1].read_text())["benchmarks"]}
    build = rows["int8-scratch"]["build"]
    assert set(build["code"]) == {"source", "int8_scratch"} and build["libraries"]["torch"]
    assert build["key"] == rows["int8-scratch"]["build"]["key"] != rows["fp32"]["build"]["key"]
    assert "git_commit" in build and "measured_with_commit" in build
