"""`history gate`: against the recorded run of the merge base, same runner class, outside the between-process
spread that recent runs of the class showed."""

import json
import subprocess

import pytest

from gpt2compress.cli import main
from gpt2compress.report.history_store import HistoryError, open_store, record_file

from helpers import ROOT

V1 = ROOT / "tests" / "data" / "previous-release.json"


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """main: c1 → c2; feature branches off c2 with c3. Only c1 is recorded, three times (three processes)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for name in ("c1", "c2"):
        (repo / name).write_text(name)
        git(repo, "add", name)
        git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", name)
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "c3").write_text("c3")
    git(repo, "add", "c3")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c3")
    monkeypatch.chdir(repo)
    return repo


def plant(out, variant="int8-scratch", **scale):
    data = json.loads(V1.read_text())
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info.get("kind", "forward") == "forward" and info["variant"] == variant:
            for key, factor in scale.items():
                info[key] = [x * factor for x in info[key]] if isinstance(info[key], list) else info[key] * factor
    out.write_text(json.dumps(data))
    return out


def record_base(repo, location, *files):
    c1 = git(repo, "rev-list", "--max-parents=0", "HEAD")
    for path in files or (V1,):
        record_file(open_store(location), path, "cpu-test", commit=c1, ref="refs/heads/main")
    return c1


def gate(location, results, capsys):
    code = main(["history", "gate", str(results), "--base", "main", "--history", location, "--runner-class",
                 "cpu-test"])
    return code, capsys.readouterr().out


def test_an_unchanged_run_passes_against_the_nearest_recorded_ancestor(repo, tmp_path, capsys):
    location = str(tmp_path / "h.sqlite")
    c1 = record_base(repo, location)
    code, out = gate(location, V1, capsys)
    assert code == 0, out
    assert f"{c1[:12]} (1 commit(s) before the merge base" in out and "runner class cpu-test" in out


def test_a_planted_perplexity_regression_fails_with_an_annotation(repo, tmp_path, capsys):
    location = str(tmp_path / "h.sqlite")
    record_base(repo, location)
    code, out = gate(location, plant(tmp_path / "worse.json", perplexity=1.3), capsys)
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("::error")]
    assert len(errors) == 1 and "forward/cpu/int8-scratch perplexity" in errors[0] and "+30.0%" in errors[0]


def test_a_change_inside_the_between_process_spread_is_not_a_regression(repo, tmp_path, capsys):
    """+15 % latency: a regression when the spread is unknown (one base run), noise when three recorded runs of
    unchanged code spread ±20 %."""
    slow = plant(tmp_path / "slow.json", latency_samples_ms=1.15)
    one = str(tmp_path / "one.sqlite")
    record_base(repo, one)
    code, out = gate(one, slow, capsys)
    assert code == 1 and "spread known for 0 of" in out
    three = str(tmp_path / "three.sqlite")
    record_base(repo, three, plant(tmp_path / "lo.json", latency_samples_ms=0.8),
                plant(tmp_path / "hi.json", latency_samples_ms=1.2), V1)
    code, out = gate(three, slow, capsys)
    assert code == 0, out


def tiered(out, tier, windows, perplexity=1.0):
    """V1 as a `--tier` run whose perplexities were scored on `windows` eval windows."""
    data = json.loads(V1.read_text())
    data["gpt2compress"] = {"tier": tier}
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info.get("kind", "forward") == "forward":
            info.update(eval_windows=windows, perplexity=info["perplexity"] * perplexity)
    out.write_text(json.dumps(data))
    return out


def test_the_base_is_the_merge_bases_run_of_the_same_tier_and_other_eval_sets_are_not_compared(repo, tmp_path,
                                                                                                capsys):
    """main's push records `--tier pr` (512 windows), the nightly then records the same commit on all 1,913: a PR's
    perplexity is judged against the push's run, never against the nightly's other eval set."""
    location = str(tmp_path / "h.sqlite")
    record_base(repo, location, tiered(tmp_path / "push.json", "pr", 512),
                tiered(tmp_path / "nightly.json", "nightly", 1913, perplexity=1.05))
    code, out = gate(location, tiered(tmp_path / "pr.json", "pr", 512), capsys)
    assert code == 0, out
    assert "run 1 of" in out, out
    code, out = gate(location, tiered(tmp_path / "worse.json", "pr", 512, perplexity=1.03), capsys)
    assert code == 1 and "perplexity" in out  # +3 % against the push's run, not -2 % against the nightly's
    from gpt2compress.catalog import METRICS
    from gpt2compress.records import ForwardRecord
    from gpt2compress.report.compare_gate import compare_metric

    def scored(windows, ppl):
        return ForwardRecord(variant="int8-scratch", eval_windows=windows, eval_tokens=windows * 128, perplexity=ppl)

    assert compare_metric(METRICS["perplexity"], scored(1913, 30.0), scored(512, 40.0)) is None
    assert compare_metric(METRICS["perplexity"], scored(512, 30.0), scored(512, 40.0)).regression


def test_no_recorded_ancestor_is_a_clear_error(repo, tmp_path):
    from gpt2compress.report.merge_base_gate import base_run

    with pytest.raises(HistoryError, match="no run of runner class 'cpu-test' is recorded for the merge base"):
        base_run(open_store(str(tmp_path / "empty.sqlite")), "cpu-test", "main")
    with pytest.raises(HistoryError, match="--base nope: git knows no such ref"):
        base_run(open_store(str(tmp_path / "empty.sqlite")), "cpu-test", "nope")
    with pytest.raises(HistoryError, match="git fetch origin main;"):  # ci.sh's default base: the branch is fetched
        base_run(open_store(str(tmp_path / "empty.sqlite")), "cpu-test", "origin/main")


def test_a_gate_outside_a_git_checkout_says_so(tmp_path, monkeypatch):
    from gpt2compress.report.merge_base_gate import base_run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    with pytest.raises(HistoryError, match="runs in the project's git checkout"):
        base_run(open_store(str(tmp_path / "empty.sqlite")), "cpu-test", "origin/main")


def test_an_accepted_regression_passes_with_its_reason_and_restarts_the_spread(repo, tmp_path, capsys):
    location = str(tmp_path / "h.sqlite")
    record_base(repo, location)
    slow = plant(tmp_path / "slow.json", perplexity=1.3)
    head = git(repo, "rev-parse", "HEAD")
    record_file(open_store(location), slow, "cpu-test", commit=head, ref="refs/heads/feature")
    assert main(["history", "accept", head[:12], "--reason", "int8 everywhere: smaller beats exact",
                 "--history", location]) == 0  # the 12 characters `history runs` prints
    code = main(["history", "gate", str(slow), "--base", "main", "--history", location, "--runner-class",
                 "cpu-test", "--commit", head])
    out = capsys.readouterr().out
    assert code == 0 and "accepted for" in out and "int8 everywhere" in out and "::warning" in out
    capsys.readouterr()
    assert main(["history", "accept", "f" * 40, "--reason", "x", "--history", location]) == 2
    assert "no run of commit ffffffffffff is recorded: `gpt2compress history runs`" in capsys.readouterr().err


def test_trend_writes_a_chart_per_class_and_metric_and_an_index(repo, tmp_path):
    location = str(tmp_path / "h.sqlite")
    record_base(repo, location, V1, plant(tmp_path / "slow.json", latency_samples_ms=1.3), V1)
    out = tmp_path / "trend"
    assert main(["history", "trend", "--out", str(out), "--history", location]) == 0
    latency = out / "cpu-test--forward--latency.png"
    assert latency.stat().st_size > 10_000 and (out / "cpu-test--train--train_tokens_per_s.png").exists()
    index = (out / "index.html").read_text()
    assert '<img src="cpu-test--forward--latency.png"' in index and "3 runs, 1 runner class(es)" in index
    from gpt2compress.report.trend_charts import series

    lines, _ = series(open_store(location))
    points = lines[("cpu-test", "forward", "latency")]["cpu/int8-scratch"]
    assert [x for x, _ in points] == [0, 1, 2] and points[1][1] == pytest.approx(points[0][1] * 1.3)

    record_file(open_store(location), V1, "other-class", commit=git(repo, "rev-parse", "HEAD"), ref="refs/heads/main")
    mine = tmp_path / "mine"  # --runner-class: that class alone, as `history changes` reports it
    assert main(["history", "trend", "--out", str(mine), "--history", location, "--runner-class", "cpu-test"]) == 0
    assert "3 runs, 1 runner class(es)" in (mine / "index.html").read_text()
    assert list(mine.glob("cpu-test--*.png")) and not list(mine.glob("other-class--*"))


def test_one_slowdown_is_one_verdict_in_latency_and_in_tokens_per_s(tmp_path):
    from gpt2compress.catalog import METRICS
    from gpt2compress.report.compare_gate import compare_runs
    from gpt2compress.report.runs import load_run

    assert METRICS["tokens_per_s"].worsening(100.0, 62.5) == pytest.approx(0.6)  # as latency 1.0 -> 1.6
    assert METRICS["latency"].worsening(1.0, 1.6) == pytest.approx(0.6)
    assert METRICS["tokens_per_s"].worsening(538.7, 1123) < 0  # faster reads as better, by what it saves
    findings = compare_runs(load_run(V1), load_run(plant(tmp_path / "slow.json", latency_samples_ms=1.6)))
    slow = {f.metric: f for f in findings if f.where == "forward/cpu/int8-scratch"}
    assert slow["latency"].change == pytest.approx(slow["tokens_per_s"].change, rel=0.05)
    assert slow["latency"].regression == slow["tokens_per_s"].regression
