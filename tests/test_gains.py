"""The end-to-end gains table (seed 001) from a small synthetic benchmark JSON: its numbers, its gaps, its CLI."""

import json

import pytest

from gpt2compress.cli import main
from gpt2compress.report.gains_table import gains_rows, gains_section
from gpt2compress.history.runs import load_run

STACK = "distilled-lora-pruned-int8"
MIB = 2**20


def forward(variant, median_ms, ppl, peak_mib):
    return {"kind": "forward", "variant": variant, "device": "cpu", "median_ms": median_ms, "perplexity": ppl,
            "tokens_per_s": 128 / (median_ms / 1e3), "peak_memory_forward_bytes": peak_mib * MIB,
            "peak_memory_eval_bytes": 0, "latency_samples_ms": [median_ms], "batch_shape": [1, 128]}


def generate(variant, tokens_per_s, p50_ms):
    return {"kind": "generate", "variant": variant, "device": "cpu", "batch_size": 1,
            "decode_tokens_per_s": tokens_per_s,
            "decode_p50_ms": p50_ms, "decode_p90_ms": p50_ms, "decode_p99_ms": p50_ms, "ttft_ms": 2 * p50_ms,
            "prompt_len": 128, "new_tokens": 64}


def train(case, peak_mib, tokens_per_s):
    return {"kind": "train", "variant": case, "device": "cpu", "peak_memory_train_bytes": peak_mib * MIB,
            "train_tokens_per_s": tokens_per_s, "precision": "fp32", "attention": "sdpa", "tokens_per_step": 4096,
            "accumulation": 8, "step_ms": 4096 / tokens_per_s * 1e3, "losses": [5.0, 4.0]}


def write(path, rows):
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": [{"extra_info": r, "stats": {}} for r in rows]}))
    return path


@pytest.fixture
def results(tmp_path):
    return write(tmp_path / "run.json", [
        forward("fp32", 10.0, 7.57, 400), forward("distilled", 6.0, 8.0, 300), forward(STACK, 4.0, 8.46, 292),
        generate("fp32", 100.0, 10.0), generate(STACK, 150.0, 7.0),
        train("fp32", 300, 1000.0), train("distilled-lora", 102, 1500.0),
    ])


def test_gains_are_b_against_a_and_the_stack_trains_as_its_lora_case(results):
    rows = {label: (a, b, change) for label, a, b, change in gains_rows(load_run(results), "cpu", "fp32", STACK)}
    assert rows["training peak memory, MiB"] == (300, 102, "-66 %")
    assert rows["training tokens/s"][2] == "×1.50"
    assert rows["inference peak memory, MiB"] == (400, 292, "-27 %")
    assert rows["forward tokens/s"][2] == "×2.50"
    assert rows["forward latency, median ms"] == (10.0, 4.0, "-60 %")
    assert rows["generation decode tokens/s (batch 1)"][2] == "×1.50"
    assert rows["generation latency, ms/token p50 (batch 1)"][2] == "-30 %"
    assert rows["perplexity"] == (7.57, 8.46, "+0.89")


def test_missing_rows_show_a_dash_never_zero(results):
    rows = {label: (a, b, change) for label, a, b, change in gains_rows(load_run(results), "cpu", "fp32", "distilled")}
    assert rows["training peak memory, MiB"] == (300, None, "–")  # no train case named distilled or a prefix of it
    assert rows["generation decode tokens/s (batch 1)"] == (100.0, None, "–")
    lines = "\n".join(gains_section([load_run(results)], ("fp32", "distilled")))
    assert "| training peak memory, MiB | 300 | – | – |" in lines and "| 0 " not in lines


def test_default_pair_is_fp32_against_the_full_stack_and_absent_without_one(results, tmp_path):
    assert gains_section([load_run(results)])[0] == f"## Gains: run — cpu: fp32 → {STACK}"
    no_stack = write(tmp_path / "plain.json", [forward("fp32", 10.0, 7.57, 400), forward("distilled", 6.0, 8.0, 300)])
    assert gains_section([load_run(no_stack)]) == []


def test_plot_gains_option_writes_the_table_and_refuses_unknown_variants(results, tmp_path, capsys):
    out = tmp_path / "charts"
    assert main(["plot", str(results), "--out", str(out), "--gains", "fp32,distilled"]) == 0
    summary = (out / "summary.md").read_text()
    assert "## Gains: run — cpu: fp32 → distilled" in summary and "| perplexity | 7.57 | 8 | +0.43 |" in summary
    assert main(["plot", str(results), "--out", str(out), "--gains", "fp32,distiled"]) == 2
    assert "no forward rows for distiled" in capsys.readouterr().err
    assert main(["plot", str(results), "--out", str(out), "--gains", "fp32"]) == 2
