"""What the history tells beyond one gate: change points over a series (`history changes`), the gate's own error
rates over processes of identical code (`history error-rates`), and the PR page (`history report`)."""

import json
import random
from pathlib import Path

import pytest

from gpt2compress.cli import main
from gpt2compress.core.records import ForwardRecord
from gpt2compress.history.gate import error_rates, slower
from gpt2compress.history.runs import Run

VARIANTS = {"int8-scratch": 0.5, "bf16": 0.8, "noisy": 0.3}  # paired latency ratio to fp32


def forward(variant, ratio, rng, jitter, rounds=20, perplexity=30.0, slowdown=1.0) -> ForwardRecord:
    """fp32 rounds at ~100 ms; this process's ratio off by up to ±jitter (the between-process spread)."""
    shift = 1 + rng.uniform(-jitter, jitter)
    return ForwardRecord(variant=variant, device="cpu", batch_shape=[1, 128], perplexity=perplexity,
                         size_on_disk_bytes=int(500e6 * ratio), latency_samples_ms=[
                             100.0 * ratio * slowdown * shift * (1 + rng.uniform(-0.01, 0.01)) for _ in range(rounds)])


def process(rng, jitter=None, step=1.0) -> Run:
    """One process: fp32 and its variants, paired (the variant's rounds alternate with fp32's)."""
    jitter = jitter or {}
    reference = forward("fp32", 1.0, rng, 0.0)
    variants = [forward(v, r, rng, jitter.get(v, 0.01), slowdown=step if v == "int8-scratch" else 1.0)
                for v, r in VARIANTS.items()]
    return Run("p", {"cpu": {"brand_raw": "Test CPU"}}, [reference, *(v.against(reference) for v in variants)])


def write(run: Run, path):
    path.write_text(json.dumps({"machine_info": run.machine, "benchmarks": [
        {"name": f"test_forward[{r.variant}-cpu]", "extra_info": r.to_extra_info()} for r in run.records]}))
    return path


def test_error_rates_find_no_false_alarm_catch_a_planted_slowdown_and_state_what_noise_hides():
    rng = random.Random(0)
    runs = [process(rng, jitter={"noisy": 0.20}) for _ in range(8)]
    rates = {r.where: r for r in error_rates(runs, planted=0.15)}
    assert set(rates) == {"forward/cpu/int8-scratch", "forward/cpu/bf16", "forward/cpu/noisy"}
    quiet, noisy = rates["forward/cpu/int8-scratch"], rates["forward/cpu/noisy"]
    assert all(r.false_alarms == 0 and r.pairs == 56 for r in rates.values())
    assert quiet.caught == 56 and quiet.detectable <= 0.15
    # ±20 % between processes: a +15 % slowdown hides in it, and the smallest one caught is stated
    assert noisy.spread > 0.25 and noisy.caught < 0.9 * 56 and (noisy.detectable is None or noisy.detectable > 0.15)


def test_slower_scales_the_paired_ratio_not_the_reference():
    rng = random.Random(1)
    record = process(rng).records[1]
    assert slower(record, 1.15).ratios["latency"] == pytest.approx(record.ratios["latency"] * 1.15)


def test_changes_find_a_planted_step_in_20_runs_and_nothing_in_a_flat_series(tmp_path, capsys):
    rng = random.Random(2)
    location = str(tmp_path / "h.sqlite")
    for i in range(20):
        run = process(rng, step=1.25 if i >= 12 else 1.0)
        assert main(["history", "record", str(write(run, tmp_path / f"r{i}.json")), "--history", location,
                     "--commit", f"{i:02d}" * 20, "--ref", "refs/heads/main", "--runner-class", "cpu-test"]) == 0
    capsys.readouterr()
    assert main(["history", "changes", "--history", location]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "2 change point(s)", out  # latency and tokens/s of the one variant that stepped
    latency = next(line for line in out if " latency:" in line)
    assert "forward/cpu/int8-scratch" in latency and "(+2" in latency and "worse" in latency
    assert f"between {'11' * 6} and {'12' * 6}" in latency  # its commit range: the last run before, the first after

    flat = str(tmp_path / "flat.sqlite")
    for i in range(20):
        assert main(["history", "record", str(write(process(rng), tmp_path / f"f{i}.json")), "--history", flat,
                     "--commit", f"{i:02d}" * 20, "--runner-class", "cpu-test"]) == 0
    capsys.readouterr()
    assert main(["history", "changes", "--history", flat]) == 0
    assert capsys.readouterr().out.strip() == "0 change point(s)"


def test_trend_marks_the_change_point(tmp_path):
    rng = random.Random(3)
    location = str(tmp_path / "h.sqlite")
    for i in range(12):
        main(["history", "record", str(write(process(rng, step=1.3 if i >= 6 else 1.0), tmp_path / f"r{i}.json")),
              "--history", location, "--commit", f"{i:02d}" * 20, "--runner-class", "cpu-test"])
    assert main(["history", "trend", "--out", str(tmp_path / "trend"), "--history", location]) == 0
    index = (tmp_path / "trend" / "index.html").read_text()
    assert "forward/cpu/int8-scratch latency" in index and "between 050505050505 and 060606060606" in index


def test_the_pr_page_lists_regressions_improvements_skips_and_charts(tmp_path, capsys, monkeypatch):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    for args in (["init", "-q", "-b", "main"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                                                 "--allow-empty", "-m", "c1"]):
        subprocess.run(["git", *args], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    rng = random.Random(4)
    location = str(tmp_path / "h.sqlite")
    main(["history", "record", str(write(process(rng), tmp_path / "base.json")), "--history", location,
          "--commit", head, "--runner-class", "cpu-test"])
    new = process(rng, step=1.5)
    new.records[2] = slower(new.records[2], 0.7)  # bf16 got faster
    new.machine["gpt2compress"] = {"skipped": [{"test": "test_forward[fp16-cpu]", "reason": "fp16 needs CUDA"}]}
    page = tmp_path / "page.md"
    code = main(["history", "gate", str(write(new, tmp_path / "new.json")), "--base", "main", "--history", location,
                 "--runner-class", "cpu-test", "--report", str(page), "--charts", "https://ci.example/run/1"])
    text = page.read_text()
    assert code == 1 and text.startswith("<!-- gpt2compress-report:cpu-test -->")
    assert "## gpt2compress on cpu-test: regression" in text and "### Regressions (1)" in text  # one per fact
    assert "\nMeasured on Test CPU (" not in text and f"\nHead: {head[:12]}, measured on Test CPU (" in text  # the
    # page names the head it measured and the machine, as summary.md and the charts do; the base line names its own
    assert "### Improvements (1)" in text and "bf16" in text.split("### Improvements")[1].split("###")[0]
    assert "- `test_forward[fp16-cpu]`: fp16 needs CUDA" in text and "https://ci.example/run/1" in text
    capsys.readouterr()
    assert main(["history", "report", str(tmp_path / "new.json"), "--base", "main", "--history", location,
                 "--runner-class", "cpu-test", "--markdown", "--charts", "https://ci.example/run/1"]) == 0
    assert capsys.readouterr().out.strip() == text.strip()


def test_with_no_known_spread_every_fresh_process_must_confirm_a_suspect():
    from gpt2compress.history.gate import judge

    rng = random.Random(5)
    base, new = process(rng), process(rng, step=1.5)

    def regressed(*reruns):
        return {(f.where, f.metric) for f in judge(base, new, {}, reruns=reruns)[0] if f.regression}

    assert ("forward/cpu/int8-scratch", "latency") in regressed()  # threshold alone: a suspect
    assert ("forward/cpu/int8-scratch", "latency") in regressed(process(rng, step=1.5), process(rng, step=1.5))
    assert not regressed(process(rng, step=1.5), process(rng))  # one fresh process disagrees: noise, not code


def test_suspects_rerun_with_the_runs_own_options_and_only_their_variants(tmp_path, monkeypatch):
    from gpt2compress.history import gate as merge_base_gate
    from gpt2compress.history import processes

    commands = []
    monkeypatch.setattr(processes.subprocess, "run", lambda command, **kw: commands.append((command, kw)))
    run = process(random.Random(6))
    run.machine["gpt2compress"] = {"cwd": str(tmp_path), "argv": [
        "bench/", "--model", "tiny", "--stages", "fp32,bf16", "--benchmark-json=old.json", "-k", "forward",
        "--shard", "2/3", "--shard=2/3"]}
    assert merge_base_gate.rerun(run, [run.records[1]], 2) == []  # (nothing written by the fake pytest)
    assert len(commands) == 2 and all(Path(kw["cwd"]) == tmp_path.resolve() for _, kw in commands)
    command = commands[0][0]
    assert command[command.index("--stages") + 1] == "int8-scratch" and "fp32,bf16" not in command
    assert not any(arg.startswith("--shard") or arg == "2/3" for arg in command)  # the suspects' shard is all of them
    assert "bench/" in command and "tiny" in command and "old.json" not in " ".join(command) and "-k" in command


def test_a_real_step_in_the_history_is_not_taken_for_noise():
    """main got 30 % faster two runs ago; a PR that gives it back regresses, one that keeps it does not (the range
    of such a history is the step itself, and the median of all its runs the level before it)."""
    from gpt2compress.history.gate import history_of, judge

    rng = random.Random(1)
    runs = [process(rng) for _ in range(6)] + [process(rng, step=0.7) for _ in range(3)]

    def regressed(new: Run) -> bool:
        findings, _ = judge(runs[-1], new, history_of(runs))
        return any(f.regression for f in findings if f.where == "forward/cpu/int8-scratch" and f.metric == "latency")

    assert regressed(process(rng))
    assert not regressed(process(rng, step=0.7))


def test_a_row_is_marked_better_only_when_the_page_counts_it_as_an_improvement():
    """Issue 42: "Improvements (0)" beside a row marked better. A change inside its threshold is "ok" either way."""
    from gpt2compress.history.compare import Finding, format_markdown

    small = Finding("forward/cpu/bf16", "latency", 0.5, 0.485, -0.03, 0.10, False, "ratio to the run's reference")
    large = Finding("forward/cpu/bf16", "latency", 0.5, 0.40, -0.20, 0.10, False, "ratio to the run's reference")
    rows = format_markdown([small, large]).splitlines()[2:]
    assert (small.improved, large.improved) == (False, True)
    assert rows[0].endswith("| ok |") and rows[1].endswith("| better |")
    assert "×fp32" in rows[0] and "-3.0% better" in rows[0]  # the change still says which way it went
