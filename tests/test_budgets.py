import json
import re

import pytest

from gpt2compress.core.budgets import Budget, BudgetFileError, load_budgets
from gpt2compress.build.hardware import CPU_CLASSES, cpu_classes
from gpt2compress.measure.perplexity import perplexity
from gpt2compress.core.records import ClassifyRecord, ForwardRecord, GenerateRecord
from gpt2compress.build.stages.int8_scratch import Int8Linear, quantize_int8_scratch

from helpers import ROOT, random_gpt2, random_windows, run_bench

SHIPPED = ROOT / "bench" / "budgets.toml"
UNKNOWN_CLASS = "version = 1\n[cpu.'*'.fp32.avx512]\nmax_latency_ratio = 1\n"


def write(tmp_path, text):
    path = tmp_path / "b.toml"
    path.write_text(text)
    return path


def test_shipped_budgets_load():
    budgets = load_budgets(SHIPPED)
    assert budgets.budget_for("cpu", "tiny", "int8-scratch").limits["max_perplexity_ratio"] == pytest.approx(1.02)


def test_model_specific_entries_override_the_wildcard():
    budgets = load_budgets(SHIPPED)
    b = budgets.budget_for("cpu", "gpt2-random", "inc-int8").limits
    assert b["max_latency_ratio"] == pytest.approx(0.90) and b["max_perplexity_ratio"] == pytest.approx(1.05)
    assert "max_latency_ratio" not in budgets.budget_for("cpu", "tiny", "inc-int8").limits


def test_a_cpu_class_sub_table_holds_only_on_cpus_of_that_class(tmp_path):
    budgets = load_budgets(write(tmp_path, """version = 1
[cpu.'*'.int8-scratch]
max_latency_ratio = 0.9
max_perplexity_ratio = 1.05
[cpu.'*'.int8-scratch.vnni]
max_latency_ratio = 0.5
[cpu.m.int8-scratch]
max_perplexity_ratio = 1.1
[cpu.m.int8-scratch.bf16]
max_perplexity_ratio = 1.2
"""))
    slow_without_vnni = forward(latency=0.7, perplexity=1.0)
    avx2, vnni = cpu_classes(frozenset({"avx2", "fma"})), cpu_classes(frozenset({"avx2", "avx512_vnni"}))
    assert (avx2, vnni) == ((), ("vnni",))
    assert budgets.budget_for("cpu", "m", "int8-scratch", avx2).violations(slow_without_vnni) == []
    assert budgets.budget_for("cpu", "m", "int8-scratch", vnni).violations(slow_without_vnni) == [
        "max_latency_ratio: measured 0.7, allowed ≤ 0.5"]
    assert budgets.budget_for("cpu", "m", "int8-scratch", ("vnni", "bf16")).limits == {
        "max_latency_ratio": 0.5, "max_perplexity_ratio": 1.2}  # the named model's table, then its class's
    shipped = load_budgets(SHIPPED)  # the VNNI claims of the 124M shape do not fail an AVX2-only runner
    assert "max_latency_ratio" not in shipped.budget_for("cpu", "gpt2-random", "ov-int8-static", avx2).limits
    assert shipped.budget_for("cpu", "gpt2-random", "ov-int8-static", vnni).limits["max_latency_ratio"] < 1


@pytest.mark.parametrize("text,message", [
    ("version = 1\n[cpu.'*'.fp32]\nmax_speed = 2\n", "unknown budget 'max_speed'"),
    ("version = 1\n[cpu.'*'.fp32]\nmax_latency_ratio = -1\n", "positive number"),
    ("version = 1\n[cpu.'*'.fp32]\nmax_latency_ratio = 'fast'\n", "positive number"),
    ("version = 1\n[cpu.'*'.fp32]\nmax_size_ratio = nan\n", "positive number"),  # NaN would pass every row
    ("version = 1\n[compare]\nmetric = 'latency'\nthreshold = 0.2\n", "each [[compare]] (double brackets)"),
    ("version = 1\ncompare = 3\n", "compare rules are an array of tables"),
    ("version = 1\n[[compare]]\nmetric = 'latency'\nthreshold = 0.2\nmatch = 5\n", "match is not a regular"),
    ("[cpu.'*'.fp32]\nmax_latency_ratio = 1\n", "version = 1"),
    ("version = 1\ncpu = 3\n", "table of tables"),
    ("version = 1\n[cpu\n", "not valid TOML"),
    (UNKNOWN_CLASS, "[cpu.'*'.fp32.avx512]: unknown CPU class 'avx512'"),
    (UNKNOWN_CLASS, "known: vnni (amx_int8/avx512_vnni/avx_vnni), bf16"),
    ("version = 1\n[cpu.'*'.fp32.vnni]\nmax_latency = 1\n", "[cpu.'*'.fp32.vnni]: unknown budget 'max_latency'"),
    ("version = 1\n[cpu.'*'.int8_scratch]\nmax_latency_ratio = 1\n",  # a table no row would ever meet
     "[cpu.'*'.int8_scratch]: unknown variant 'int8_scratch' (did you mean 'int8-scratch'?); known: fp32,"),
    ("version = 1\n[gpu.'*'.fp32]\nmax_latency_ratio = 1\n", "[gpu]: unknown device 'gpu'"),
])
def test_malformed_budgets_say_where_and_what(tmp_path, text, message):
    with pytest.raises(BudgetFileError, match=re.escape(message)):
        load_budgets(write(tmp_path, text))


def test_a_budgets_file_that_is_not_text_names_itself(tmp_path):
    path = tmp_path / "budgets.toml"
    path.write_bytes(b"version = 1\n# \xff\xfe\n")
    with pytest.raises(BudgetFileError, match="budgets.toml is not valid TOML"):
        load_budgets(path)


def test_missing_budgets_file_names_the_option(tmp_path):
    with pytest.raises(BudgetFileError, match="--budgets"):
        load_budgets(tmp_path / "none.toml")


def forward(**ratios) -> ForwardRecord:
    return ForwardRecord(variant="x", device="cpu", ratios=ratios, reference_values=dict.fromkeys(ratios, 1.0))


def test_violations_report_measured_and_allowed():
    budget = Budget({"max_perplexity_ratio": 1.05, "min_tokens_per_s_ratio": 2.0})
    lines = budget.violations(forward(perplexity=1.2, tokens_per_s=1.5))
    assert lines == ["max_perplexity_ratio: measured 1.2, allowed ≤ 1.05",
                     "min_tokens_per_s_ratio: measured 1.5, allowed ≥ 2"]
    random_weights = forward(perplexity=1.2, tokens_per_s=3.0)
    random_weights.perplexity_meaningful = False
    assert budget.violations(random_weights) == []
    assert budget.violations(forward(perplexity=float("nan"), tokens_per_s=3.0))  # NaN never passes: not under a max
    assert budget.violations(forward(perplexity=1.0, tokens_per_s=float("nan")))  # nor over a min


def test_a_budget_on_an_unmeasured_metric_fails_and_says_why():
    budget = Budget({"max_latency_ratio": 0.9, "min_energy_efficiency": 1.2, "max_size_mb": 100.0})
    record = forward()
    record.missing["energy_per_sample"] = "energy is measured on CUDA GPUs only"
    lines = budget.violations(record)
    assert lines[0].startswith("max_latency_ratio: latency was not measured (this forward row has no median_ms)")
    assert ("min_energy_efficiency: energy_per_sample was not measured (energy is measured on CUDA GPUs only)"
            in lines[1])
    assert lines[2].startswith("max_size_mb: size was not measured (this forward row has no size_mb)")
    drop = Budget({"max_accuracy_drop": 1.0}).violations(ClassifyRecord(variant="cls-x", device="cpu", accuracy=0.9))
    assert drop == ["max_accuracy_drop: accuracy was not measured (the reference of classify rows has no accuracy in "
                    "this run); a budget on it cannot pass"]


def test_a_budget_gates_only_the_kinds_of_its_metric():
    budget = Budget({"max_ttft_ratio": 1.1, "max_perplexity_ratio": 1.05})
    assert budget.violations(forward(perplexity=1.0)) == []
    assert budget.violations(GenerateRecord(variant="x", device="cpu", ratios={"ttft": 1.3}))[0].startswith(
        "max_ttft_ratio: measured 1.3")


def test_problems_the_record_flags_fail_the_gate():
    record = forward(perplexity=1.0)
    record.problems.append("wall-clock 1 ms is below the GPU's own 3 ms")
    assert Budget({}).violations(record) == ["wall-clock 1 ms is below the GPU's own 3 ms"]


def test_wrecked_int8_scale_fails_its_perplexity_budget():
    """The shipped int8-scratch budget passes a correct quantization and fails one with a broken scale."""
    budget = Budget({"max_perplexity_ratio": load_budgets(SHIPPED).budget_for("cpu", "tiny", "int8-scratch")
                     .limits["max_perplexity_ratio"]})
    windows = random_windows(n=8, seq_len=32)
    model = random_gpt2()
    reference = perplexity(model, windows)
    quantize_int8_scratch(model)
    assert budget.violations(forward(perplexity=perplexity(model, windows) / reference)) == []
    for module in model.modules():
        if isinstance(module, Int8Linear):
            module.scale.mul_(8)  # the wrecked scale
    broken = budget.violations(forward(perplexity=perplexity(model, windows) / reference))
    assert broken and broken[0].startswith("max_perplexity_ratio")


def test_bench_writes_json_even_when_a_budget_fails(tmp_path, local_checkpoint):
    # and applies a CPU class's sub-table only on a CPU of that class: fp32's size ratio is 1, so each class's
    # limit of 0.5 fails fp32 exactly where this CPU is of the class
    classes = "".join(f"[cpu.'*'.fp32.{c}]\nmax_size_ratio = 0.5\n" for c in CPU_CLASSES)
    budgets = write(tmp_path, "version = 1\n[cpu.'*'.int8-scratch]\nmax_size_ratio = 0.01\n" + classes)
    out = tmp_path / "results.json"
    run = run_bench(local_checkpoint, out, "--stages", "fp32,int8-scratch,bf16", "--budgets", str(budgets))
    assert run.returncode == 1, run.stdout[-3000:]
    assert "max_size_ratio: measured" in run.stdout and "allowed ≤ 0.01" in run.stdout
    assert ("allowed ≤ 0.5" in run.stdout) == bool(cpu_classes()), run.stdout[-3000:]
    results = {b["extra_info"]["variant"]: b for b in json.loads(out.read_text())["benchmarks"]}
    assert set(results) >= {"fp32", "int8-scratch"}  # the failing one is recorded too
    info = results["int8-scratch"]["extra_info"]
    assert info["perplexity"] > 1 and info["size_on_disk_bytes"] > 0 and info["latency_p99_ms"] > 0
    assert info["chain"] == ["int8_scratch"] and "ratios" in info


def test_generate_and_train_budgets_gate_and_keep_their_rows(tmp_path, local_checkpoint):
    budgets = write(tmp_path, "version = 1\n[cpu.'*'.int8-scratch]\nmin_decode_tokens_per_s_ratio = 1000\n"
                              "[cpu.'*'.fp32-eager]\nmin_train_tokens_per_s_ratio = 1000\n")
    out = tmp_path / "results.json"
    run = run_bench(local_checkpoint, out, "--stages", "fp32,int8-scratch", "--budgets", str(budgets), "-k",
                    "generate or train[fp32", "--prompt-len", "16", "--new-tokens", "4", "--gen-batch-sizes", "1,2",
                    "--gen-rounds", "2", "--train-tokens", "256", "--train-steps", "2", suite="")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "min_decode_tokens_per_s_ratio: measured" in run.stdout
    assert "min_train_tokens_per_s_ratio: measured" in run.stdout
    rows = [b["extra_info"] for b in json.loads(out.read_text())["benchmarks"]]
    generate = {(r["variant"], r["batch_size"]) for r in rows if r["kind"] == "generate"}
    assert generate == {("fp32", 1), ("fp32", 2), ("int8-scratch", 1), ("int8-scratch", 2)}
    train = {r["variant"]: r for r in rows if r["kind"] == "train"}
    assert set(train) == {"fp32", "fp32-eager"} and train["fp32-eager"]["ratios"]["train_tokens_per_s"] > 0
    assert all(r["losses"][-1] < r["losses"][0] for r in train.values())
    assert "Benchmark fixture was not used" not in run.stdout  # train rows are timed outside pedantic


def test_the_compare_rules_load_without_importing_the_stages():
    """`compare` and `history gate` read only the [[compare]] rules: no torch import (12 s against 0.3 s)."""
    import subprocess
    import sys

    code = ("import sys; from gpt2compress.core.budgets import load_budgets; "
            f"rules = load_budgets({str(SHIPPED)!r}, variant_names=False).compare; "
            "print(len(rules), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(load_budgets(SHIPPED).compare)), "False"]


def test_a_wrong_budgets_file_ends_the_run_before_anything_builds(tmp_path):
    """Read at configure time: a model that trains for minutes is never built for a run that could not gate it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "bench"), "-p", "no:cacheprovider", "-q",
                           "--model", "no-such-model-is-ever-loaded", "--budgets", str(tmp_path / "missing.toml")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    assert "BudgetFileError" in done.stderr and "missing.toml not found" in done.stderr
    assert "no-such-model" not in done.stdout + done.stderr  # the model was never loaded
