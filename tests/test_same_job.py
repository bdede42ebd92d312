"""`history gate --same-job`: base and PR as alternating fresh processes, decided from their paired differences.
The processes here are copies of one recorded run, each pair's latency scaled as the processes would have measured
it (tests/test_ci_loop.py walks the real thing: worktree, processes and all)."""

import json


from gpt2compress.cli import main
from gpt2compress.history.runs import load_run
from gpt2compress.history.same_job import half_width, paired, same_job_rates

from helpers import ROOT

V1 = ROOT / "tests" / "data" / "previous-release.json"


def process(tmp_path, name, factor, variant="int8-scratch"):
    """V1 as a process that measured `variant`'s forward latency × `factor` (its fp32 rounds unchanged)."""
    data = json.loads(V1.read_text())
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info.get("kind", "forward") == "forward" and info["variant"] == variant:
            info["latency_samples_ms"] = [x * factor for x in info["latency_samples_ms"]]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


# between-process noise of ±4 % in both series, the same in each pair's two processes' machine state or not
NOISE = (1.00, 1.04, 0.97, 1.02, 0.99)


def series(tmp_path, slower, scale=1.0):
    """`scale`: the variant's time itself (its 1 ms noise floor holds small changes of a fast variant back)."""
    base = [process(tmp_path, f"a{i}", n * scale) for i, n in enumerate(NOISE)]
    pr = [process(tmp_path, f"b{i}", n * scale * (1 + slower) * (1 + 0.01 * (-1) ** i)) for i, n in enumerate(NOISE)]
    return base, pr


def latency(results):
    return next(p for p in results if p.where == "forward/cpu/int8-scratch" and p.metric == "latency")


def test_a_slowdown_past_the_threshold_is_caught_and_identical_code_is_not(tmp_path):
    base, pr = series(tmp_path, 0.15)
    slow = latency(paired([load_run(p) for p in base], [load_run(p) for p in pr]))
    assert slow.regression and 0.05 < slow.detectable < 0.07  # half the threshold, and the pairs agree to ~1 %
    assert "smallest change these pairs catch in 9 of 10 gates +5." in slow.line() and slow.line().endswith(
        "REGRESSION")
    (tmp_path / "aa").mkdir()
    base, same = series(tmp_path / "aa", 0.0)
    aa = latency(paired([load_run(p) for p in base], [load_run(p) for p in same]))
    assert not aa.regression and abs(aa.differences[0]) < 0.02


def test_a_change_under_the_threshold_is_flagged_past_half_of_it_when_the_pairs_agree(tmp_path):
    """+7 %: under the 10 % threshold, but pairs that agree to ~1 % see it (flagging at the threshold would catch a
    change of its size in half the gates only); +3 % is not flagged."""
    base, pr = series(tmp_path, 0.07, scale=3.0)
    assert latency(paired([load_run(p) for p in base], [load_run(p) for p in pr])).regression
    (tmp_path / "small").mkdir()
    base, pr = series(tmp_path / "small", 0.03, scale=3.0)
    assert not latency(paired([load_run(p) for p in base], [load_run(p) for p in pr])).regression


def test_pairs_that_disagree_do_not_convict_and_say_how_much_they_could_see(tmp_path):
    """Median +12 % but the pairs scatter from -20 % to +45 %: the lower bound of their mean is below zero."""
    base = [process(tmp_path, f"a{i}", 1.0) for i in range(3)]
    pr = [process(tmp_path, f"b{i}", f) for i, f in enumerate((0.8, 1.12, 1.45))]
    result = latency(paired([load_run(p) for p in base], [load_run(p) for p in pr]))
    assert not result.regression and result.detectable > 0.3
    assert half_width([0.1]) is None and half_width([0.1, 0.1]) == 0


def test_error_rates_of_the_same_job_gate_over_every_choice_of_pairs(tmp_path, capsys):
    base, pr = series(tmp_path, 0.15)
    rates = same_job_rates([load_run(p) for p in base], [load_run(p) for p in pr], 3)
    slow = next(r for r in rates if r.where == "forward/cpu/int8-scratch" and r.metric == "latency")
    assert slow.gates == 10 and slow.flagged == 10  # C(5, 3)
    files = [str(f) for pair in zip(base, pr) for f in pair]
    assert main(["history", "error-rates", "--same-job", "3", *files]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("| forward/cpu/int8-scratch | latency |"))
    assert "| 10/10 | +6.0% |" in row and "| +15." in row
    assert main(["history", "error-rates", "--same-job", "3", *files[:-1]]) == 2
    assert "pass the processes as base, PR, base, PR" in capsys.readouterr().err


def test_the_base_process_runs_the_base_checkouts_bench_with_the_runs_options(tmp_path):
    """Paths the run's command named inside its repository move to the base's worktree (its bench and conftest,
    not the PR's), relative or absolute; a file only the run's tree has stays; the selection is the gate's own."""
    import subprocess

    from gpt2compress.history.processes import process_command
    from gpt2compress.history.runs import Run

    repo, base = tmp_path / "repo", tmp_path / "base"
    for tree in (repo, base):
        (tree / "bench").mkdir(parents=True)
        (tree / "bench" / "test_forward.py").write_text("")
    (repo / "mine.toml").write_text("version = 1\n")  # untracked, the PR's alone
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    argv = ["bench/test_forward.py::test_forward", "--budgets", "mine.toml", "--stages", "fp32,pruned",
            f"{repo}/bench", "--benchmark-json=r.json", "--model", "tiny"]
    run = Run("pr", {"gpt2compress": {"argv": argv, "cwd": str(repo)}})
    command, cwd = process_command(run, ["int8-scratch"], tmp_path / "out.json", base)
    assert cwd == base
    assert command[3:] == [f"{base}/bench/test_forward.py::test_forward", "--budgets", str((repo / "mine.toml")),
                           f"{base}/bench", "--model", "tiny", "--stages", "int8-scratch",
                           f"--benchmark-json={tmp_path / 'out.json'}", "-p", "no:cacheprovider", "-q"]
    command, cwd = process_command(run, ["int8-scratch"], tmp_path / "out.json")  # the PR's own process: as it ran
    assert cwd == repo.resolve() and command[3:6] == ["bench/test_forward.py::test_forward", "--budgets", "mine.toml"]
