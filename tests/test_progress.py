"""Progress where the user looks (issue 15, item 1): pytest captures tqdm and Trainer's bars, so builds and long
loops report through pytest's terminal reporter, rate-limited, and the session ends with a build/measure table."""

from gpt2compress.core import progress
from gpt2compress.measure.isolation import run_isolated

from chatty_child import convert
from helpers import run_bench


def test_loops_say_first_and_last_step_and_at_most_every_few_seconds(monkeypatch):
    lines = []
    monkeypatch.setattr(progress, "EVERY", 3600.0)
    with progress.report_to(lines.append):
        assert list(progress.track(range(50), "perplexity")) == list(range(50))
    assert [line.split(",")[0] for line in lines] == ["[gpt2compress] perplexity: step 1/50",
                                                      "[gpt2compress] perplexity: step 50/50"]
    assert "ETA" in lines[0]
    monkeypatch.setattr(progress, "EVERY", 0.0)
    lines.clear()
    with progress.report_to(lines.append):
        list(progress.track(range(5), "train steps"))
    assert len(lines) == 5
    lines.clear()
    assert list(progress.track(range(3), "no sink", bar=False)) == [0, 1, 2] and not lines  # the CLI: tqdm or nothing


def test_a_child_process_says_its_steps_here_and_its_times_join_this_processs_table(monkeypatch):
    """Isolated cases (llama.cpp) run in a child: its lines reach the sink as said, its times the table."""
    monkeypatch.setattr(progress, "EVERY", 0.0)  # the spawned child is given it
    monkeypatch.setattr(progress, "BUILDS", {})
    monkeypatch.setattr(progress, "MEASURES", {})
    lines = []
    with progress.report_to(lines.append):
        assert run_isolated(convert, 3) == "converted"
    assert [line.split(",")[0] for line in lines] == [f"[gpt2compress] converting: step {i}/3" for i in (1, 2, 3)]
    assert progress.BUILDS == {"cpu/chatty": 1.5} and set(progress.MEASURES) == {"cpu/chatty"}
    assert any(row.startswith("cpu/chatty") and "2 s" in row for row in progress.time_table())
    lines.clear()
    assert run_isolated(convert, 3) == "converted" and not lines  # no sink here: the child keeps its tqdm bar


def test_a_bench_run_shows_its_builds_in_pytests_output(tmp_path, local_checkpoint):
    budgets = tmp_path / "none.toml"
    budgets.write_text("version = 1\n")
    done = run_bench(local_checkpoint, tmp_path / "r.json", "--stages", "fp32,pruned-finetuned", "--finetune-steps",
                     "3", "--budgets", str(budgets), "--progress-every", "0")
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "[gpt2compress] build cpu/pruned-finetuned: stage 1/2 prune" in out
    assert "[gpt2compress] build cpu/pruned-finetuned: stage 2/2 finetune" in out
    assert "[gpt2compress] training (Trainer): step 3/3" in out and "[gpt2compress] perplexity: step" in out
    table = out.split("gpt2compress: build and measure time per variant")[1]
    assert "cpu/pruned-finetuned" in table and "cpu/fp32" in table


def test_classify_eval_and_each_nncf_calibration_pass_say_their_steps(monkeypatch):
    """The two loops that ran silent for minutes at the 124M shape: the AG News eval and NNCF's calibration."""
    import nncf
    import torch

    from gpt2compress.measure.classify import predict
    from gpt2compress.build.stages.openvino import CalibrationItems

    from helpers import random_windows

    monkeypatch.setattr(progress, "EVERY", 3600.0)
    lines = []
    with progress.report_to(lines.append):
        preds = predict(lambda **batch: type("Out", (), {"logits": torch.ones(len(batch["input_ids"]), 4)}),
                        random_windows(n=5), batch_size=2)
    assert len(preds) == 5 and [line.split(",")[0] for line in lines] == [
        "[gpt2compress] classify eval: step 1/3", "[gpt2compress] classify eval: step 3/3"]
    lines.clear()
    dataset = nncf.Dataset(CalibrationItems([{"x": i} for i in range(4)]))
    with progress.report_to(lines.append):
        for _ in range(2):  # NNCF walks the data once per algorithm
            assert list(dataset.get_inference_data()) == [{"x": i} for i in range(4)]
    assert [line.split(",")[0] for line in lines] == ["[gpt2compress] calibration pass: step 1/4",
                                                      "[gpt2compress] calibration pass: step 4/4"] * 2
