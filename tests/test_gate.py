"""`history gate`: against the recorded run of the merge base, same runner class, outside the between-process
spread that recent runs of the class showed."""

import json
import subprocess

import pytest

from gpt2compress.cli import main
from gpt2compress.history.store import HistoryError, open_store, record_file

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
    from gpt2compress.core.metrics import METRICS
    from gpt2compress.core.records import ForwardRecord
    from gpt2compress.history.compare import compare_metric

    def scored(windows, ppl):
        return ForwardRecord(variant="int8-scratch", eval_windows=windows, eval_tokens=windows * 128, perplexity=ppl)

    assert compare_metric(METRICS["perplexity"], scored(1913, 30.0), scored(512, 40.0)) is None
    assert compare_metric(METRICS["perplexity"], scored(512, 30.0), scored(512, 40.0)).regression


def test_no_recorded_ancestor_is_a_clear_error(repo, tmp_path):
    from gpt2compress.history.gate import base_run

    with pytest.raises(HistoryError, match="no run of runner class 'cpu-test' is recorded for the merge base"):
        base_run(open_store(str(tmp_path / "empty.sqlite")), "cpu-test", "main")
    with pytest.raises(HistoryError, match="--base nope: git knows no such ref"):
        base_run(open_store(str(tmp_path / "empty.sqlite")), "cpu-test", "nope")
    with pytest.raises(HistoryError, match="git fetch origin main;"):  # ci.sh's default base: the branch is fetched
        base_run(open_store(str(tmp_path / "empty.sqlite")), "cpu-test", "origin/main")


def test_a_gate_outside_a_git_checkout_says_so(tmp_path, monkeypatch):
    from gpt2compress.history.gate import base_run

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
    from gpt2compress.history.trend_charts import series

    lines, _ = series(open_store(location))
    points = lines[("cpu-test", "forward", "latency")]["cpu/int8-scratch"]
    assert [x for x, _ in points] == [0, 1, 2] and points[1][1] == pytest.approx(points[0][1] * 1.3)

    record_file(open_store(location), V1, "other-class", commit=git(repo, "rev-parse", "HEAD"), ref="refs/heads/main")
    mine = tmp_path / "mine"  # --runner-class: that class alone, as `history changes` reports it
    assert main(["history", "trend", "--out", str(mine), "--history", location, "--runner-class", "cpu-test"]) == 0
    assert "3 runs, 1 runner class(es)" in (mine / "index.html").read_text()
    assert list(mine.glob("cpu-test--*.png")) and not list(mine.glob("other-class--*"))


def test_one_slowdown_is_one_verdict_not_one_for_latency_and_one_for_tokens_per_s(tmp_path):
    from gpt2compress.core.metrics import METRICS
    from gpt2compress.history.compare import compare_runs
    from gpt2compress.history.runs import load_run

    assert METRICS["tokens_per_s"].worsening(100.0, 62.5) == pytest.approx(0.6)  # as latency 1.0 -> 1.6
    assert METRICS["latency"].worsening(1.0, 1.6) == pytest.approx(0.6)
    assert METRICS["tokens_per_s"].worsening(538.7, 1123) < 0  # faster reads as better, by what it saves
    findings = compare_runs(load_run(V1), load_run(plant(tmp_path / "slow.json", latency_samples_ms=1.6)))
    slow = {f.metric: f for f in findings if f.where == "forward/cpu/int8-scratch"}
    assert slow["latency"].change == pytest.approx(0.6) and "tokens_per_s" not in slow  # tokens/s restates latency


LOCK = {"torch": "2.14.1", "openvino": "2026.4.1"}


def session(out, drop=(), cases=None, exitstatus=0, versions=None, pins=LOCK, extra=()):
    """V1 as this version's bench writes it: the session's cases with their outcomes, its exit status and pins;
    `drop`: (kind, variant) whose rows the run lost; `extra`: (kind, variant, new name) rows copied under a new
    name; `versions`: library versions to set in the machine info."""
    data = json.loads(V1.read_text())
    benches = [b for b in data["benchmarks"] if (b["extra_info"].get("kind", "forward"),
                                                 b["extra_info"]["variant"]) not in drop]
    for kind, variant, name in extra:
        row = next(b for b in data["benchmarks"] if (b["extra_info"].get("kind", "forward"),
                                                      b["extra_info"]["variant"]) == (kind, variant))
        benches.append({**row, "extra_info": {**row["extra_info"], "variant": name}})
    data["benchmarks"] = benches
    listed = {f"test_{b['extra_info'].get('kind', 'forward')}[{b['extra_info']['variant']}-cpu]":
              {"kind": b["extra_info"].get("kind", "forward"), "device": "cpu", "variant": b["extra_info"]["variant"],
               "outcome": "passed"} for b in benches}
    data["gpt2compress"] = {"cases": {**listed, **(cases or {})}, "pins": pins, "tier": None, "shard": None,
                            "argv": ["bench/"], **({"exitstatus": exitstatus} if exitstatus is not None else {})}
    data["machine_info"]["gpt2compress"]["versions"].update(versions or {})
    out.write_text(json.dumps(data))
    return out


SKIPPED_INT8 = {"test_forward[int8-scratch-cpu]": {"kind": "forward", "device": "cpu", "variant": "int8-scratch",
                                                    "outcome": "skipped", "reason": "stage 'int8_scratch' crashed"}}


def test_a_case_the_base_measured_and_the_run_lost_fails_naming_it_and_why(repo, tmp_path, capsys):
    """What a PR that makes a stage skip produces: the rows are gone, the gate says which and why, exit 1."""
    location = str(tmp_path / "h.sqlite")
    record_base(repo, location, session(tmp_path / "base.json"))
    lost = session(tmp_path / "lost.json", drop=[("forward", "int8-scratch")], cases=SKIPPED_INT8)
    code, out = gate(location, lost, capsys)
    assert code == 1, out
    assert "VANISHED forward/cpu/int8-scratch: skipped: stage 'int8_scratch' crashed" in out
    assert "::error title=gpt2compress gate::forward/cpu/int8-scratch: skipped" in out
    unselected = session(tmp_path / "unselected.json", drop=[("forward", "int8-scratch")])
    code, out = gate(location, unselected, capsys)  # not even selected: the case matrix lost it
    assert code == 1 and "VANISHED forward/cpu/int8-scratch: not selected by this run" in out
    crashed = session(tmp_path / "crashed.json", drop=[("forward", "int8-scratch")], exitstatus=None, cases={
        "test_forward[int8-scratch-cpu]": {**SKIPPED_INT8["test_forward[int8-scratch-cpu]"], "outcome": "selected"}})
    code, out = gate(location, crashed, capsys)
    assert code == 1 and "int8-scratch: selected, never finished" in out


def test_a_new_case_is_listed_and_a_narrower_selection_excuses_nothing_but_another_tier_does(repo, tmp_path,
                                                                                              capsys):
    location = str(tmp_path / "h.sqlite")
    record_base(repo, location, session(tmp_path / "base.json"))
    grown = session(tmp_path / "grown.json", extra=[("forward", "int8-scratch", "int8-new")])
    code, out = gate(location, grown, capsys)
    assert code == 0, out
    assert "new, not gated: forward/cpu/int8-new" in out

    def narrowed(name, **facts):
        data = json.loads(session(tmp_path / "n.json", drop=[("forward", "int8-scratch")]).read_text())
        data["gpt2compress"].update(facts)
        (tmp_path / name).write_text(json.dumps(data))
        return tmp_path / name

    # a PR can narrow its own workflow's selection: that loses the case like any other way
    code, out = gate(location, narrowed("stages.json", argv=["bench/", "--stages", "fp32"]), capsys)
    assert code == 1 and "VANISHED forward/cpu/int8-scratch: not selected by this run" in out, out
    assert "--retire CASE --reason" in out  # what to do when it is meant
    code, out = gate(location, narrowed("tier.json", tier="pr"), capsys)  # another kind of run than the base
    assert code == 0, out
    assert "outside this run's selection: forward/cpu/int8-scratch (this run: --tier pr; the base: no" in out


def test_a_failed_main_run_is_never_the_base(repo, tmp_path, capsys):
    """c1 passed, c2 (the merge base) failed its budgets: the gate steps over c2 to c1, naming both."""
    location = str(tmp_path / "h.sqlite")
    c1 = record_base(repo, location, session(tmp_path / "base.json"))
    c2 = git(repo, "rev-parse", "main")
    failing = session(tmp_path / "failing.json", exitstatus=1, cases={
        "test_forward[int8-scratch-cpu]": {"kind": "forward", "device": "cpu", "variant": "int8-scratch",
                                           "outcome": "failed", "reason": "over budget"}})
    record_file(open_store(location), failing, "cpu-test", commit=c2, ref="refs/heads/main")
    code, out = gate(location, session(tmp_path / "pr.json"), capsys)
    assert code == 0, out
    assert (f"base: run 1 of {c1[:12]} (1 commit(s) before the merge base {c2[:12]}); stepped over failed run 2 of "
            f"{c2[:12]} (pytest exited 1: test_forward[int8-scratch-cpu])") in out
    from gpt2compress.history.gate import base_run

    only_failed = str(tmp_path / "failed.sqlite")
    record_file(open_store(only_failed), failing, "cpu-test", commit=c2, ref="refs/heads/main")
    with pytest.raises(HistoryError, match="failed .*a failed run is never a base; make main's bench pass"):
        base_run(open_store(only_failed), "cpu-test", "main")
    from gpt2compress.history.runs import load_run

    row = json.loads(V1.read_text())["benchmarks"][0]["extra_info"]
    journal = tmp_path / "crash.jsonl"  # a journal without its `finished` line: the session never ended
    journal.write_text("\n".join(json.dumps(line) for line in (
        {"type": "session", "machine_info": {}, "gpt2compress": {"cases": {}}}, {"type": "record", "record": row},
        {"type": "case", "test": "test_forward[fp32-cpu]", "kind": "forward", "outcome": "passed"})) + "\n")
    assert load_run(journal).failure == "the session never finished (a crash or a cancelled job)"
    with journal.open("a") as f:
        f.write(json.dumps({"type": "finished", "exitstatus": 0}) + "\n")
    assert load_run(journal).failure is None


def test_a_library_that_drifted_under_its_unchanged_pin_is_refused_and_a_bumped_pin_is_compared(repo, tmp_path,
                                                                                                capsys):
    location = str(tmp_path / "h.sqlite")
    record_base(repo, location, session(tmp_path / "base.json", versions={"openvino": "2026.3.0"}))
    drifted = session(tmp_path / "drifted.json")  # openvino 2026.4.1 under the same lock: the runner drifted
    code, out = gate(location, drifted, capsys)
    assert code == 1, out
    assert ("not comparable: openvino 2026.3.0 → 2026.4.1 in 6 case(s) (forward/cpu/fp32, forward/cpu/int8-scratch, "
            "generate/cpu/fp32-b1, generate/cpu/int8-scratch-b1 …); under an unchanged pin (constraints.txt)") in out
    assert "record a new base on main" in out

    bumped_base = str(tmp_path / "bumped.sqlite")  # the lock said 2026.3.0 at the base; the PR's lock moves it
    record_base(repo, bumped_base, session(tmp_path / "b.json", versions={"openvino": "2026.3.0"},
                                           pins={**LOCK, "openvino": "2026.3.0"}))
    code, out = gate(bumped_base, session(tmp_path / "bumped.json"), capsys)
    assert code == 0, out
    assert "libraries the run's lock changed (the PR's change): openvino 2026.3.0 → 2026.4.1" in out
    both = session(tmp_path / "both.json", versions={"torch": "2.14.2"})  # ... but torch moved under its own pin
    code, out = gate(bumped_base, both, capsys)
    assert code == 1 and "not comparable: torch 2.14.1 → 2.14.2 in 6 case(s)" in out and "openvino" not in \
        out.split("not comparable")[1].split("\n")[0], out

    unlocked = str(tmp_path / "unlocked.sqlite")  # a base recorded before runs kept their lock
    record_base(repo, unlocked, session(tmp_path / "old.json", versions={"openvino": "2026.3.0"}, pins=None))
    code, out = gate(unlocked, session(tmp_path / "new.json"), capsys)
    assert code == 1 and "the base predates the lock (constraints.txt), so this cannot be told from drift" in out


def test_a_retired_case_passes_with_its_reason_and_one_that_returns_fails_naming_the_fix(repo, tmp_path, capsys):
    location = str(tmp_path / "h.sqlite")
    record_base(repo, location, session(tmp_path / "base.json"))
    head = git(repo, "rev-parse", "HEAD")
    lost = session(tmp_path / "lost.json", drop=[("forward", "int8-scratch")], cases=SKIPPED_INT8)
    assert main(["history", "accept", head[:12], "--retire", "forward/cpu/int8-scratch", "--reason",
                 "int8-scratch superseded by inc-int8", "--history", location]) == 0
    code, out = gate(location, lost, capsys)
    assert code == 0, out
    assert (f"retired forward/cpu/int8-scratch: retired at {head[:12]} (int8-scratch superseded by inc-int8)"
            in out)
    capsys.readouterr()
    assert main(["history", "decisions", "--history", location]) == 0  # every decision the gate follows, listed
    assert (f"cpu-test  retired  {head[:12]}  forward/cpu/int8-scratch  int8-scratch superseded by inc-int8"
            in capsys.readouterr().out)
    other = str(tmp_path / "other.sqlite")  # c1 measured int8-scratch; c2, the base, no longer: retired on main
    record_base(repo, other, session(tmp_path / "b1.json"))
    record_file(open_store(other), session(tmp_path / "b2.json", drop=[("forward", "int8-scratch")]), "cpu-test",
                commit=git(repo, "rev-parse", "main"), ref="refs/heads/main")
    main(["history", "accept", head, "--retire", "forward/cpu/int8-scratch", "--reason", "gone",
          "--history", other])
    capsys.readouterr()
    code, out = gate(other, session(tmp_path / "back.json"), capsys)
    assert code == 1, out
    assert (f"RETURNED forward/cpu/int8-scratch: retired at {head[:12]} (gone) and measured again; to gate it, "
            f"revoke that: gpt2compress history accept {head[:12]} --retire forward/cpu/int8-scratch --revoke") in out
    assert main(["history", "accept", head[:12], "--retire", "forward/cpu/int8-scratch", "--revoke",
                 "--history", other]) == 0
    code, out = gate(other, session(tmp_path / "back.json"), capsys)
    assert code == 0 and "new, not gated: forward/cpu/int8-scratch" in out
    assert main(["history", "accept", "0" * 12, "--retire", "x", "--reason", "r", "--history", other]) == 2
    assert "git knows no commit 000000000000 here" in capsys.readouterr().err
    assert main(["history", "accept", head, "--retire", "forward/cpu/int8", "--reason", "r", "--history", other]) == 2
    assert ("--retire forward/cpu/int8: no recorded run of cpu-test measured that case; name it as the gate prints "
            "it (e.g. forward/cpu/fp32)") in capsys.readouterr().err
