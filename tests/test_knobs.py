"""The seeds' knobs as options (issue 15, item 3): declared once for pytest and the CLI, each one that changes a
build changes the cache key of exactly the variants it changes, and the timing knobs change what is timed."""

import argparse
import json
import os
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from gpt2compress.measure.classify import classify_settings
from gpt2compress.core.options import OPTIONS, add_pytest_options, classify_overrides, settings_overrides
from gpt2compress.core.variants import VARIANTS, plan

from helpers import ROOT, random_windows, run_bench


def keys(ctx) -> dict[str, str]:
    return {name: plan(chain, ctx)[-1].key for name, chain in VARIANTS.items()}


def options(**given):
    """An option reader as pytest's getoption / the CLI's namespace give it: unset options at their defaults."""
    defaults = {o.flag: o.default for o in OPTIONS}
    return lambda flag: given.get(flag.lstrip("-").replace("-", "_"), defaults[flag])


@pytest.mark.parametrize("flag,value,stages", [
    ("prune_fraction", 0.4, {"prune"}),
    ("finetune_epochs", 3.0, {"finetune", "distill", "lora", "lora_pruned"}),
    ("lora_targets", "c_attn", {"lora", "lora_pruned"}),
])
def test_a_build_knob_rekeys_exactly_the_variants_it_changes(ctx, flag, value, stages):
    before = keys(ctx)
    overrides = {k: v for k, v in settings_overrides(options(**{flag: value})).items() if v is not None}
    after = keys(replace(ctx, settings=replace(ctx.settings, **overrides)))
    changed = {name for name in VARIANTS if before[name] != after[name]}
    assert changed == {name for name, chain in VARIANTS.items() if stages & set(chain)}


def test_lora_targets_reach_peft(ctx):
    from gpt2compress.build.stages.lora import lora_config

    targeted = replace(ctx, settings=replace(ctx.settings, **{"lora_targets": ("c_attn",)}))
    assert lora_config(targeted).adapters.target_modules == ("c_attn",)
    assert lora_config(ctx).adapters.target_modules == ("c_attn", "c_proj", "c_fc")


def test_the_classification_recipe_is_three_options():
    default = classify_settings("tiny")
    seed_004 = classify_settings("tiny", **classify_overrides(options(cls_seq_len=128, cls_epochs=3.0,
                                                                     cls_train_rows=0)))
    assert (default.seq_len, default.finetune_epochs, default.finetune_samples) == (64, 1.0, 2048)
    assert (seed_004.seq_len, seed_004.finetune_epochs, seed_004.finetune_samples) == (128, 3.0, 0)  # 0: every row
    assert classify_settings("tiny", **classify_overrides(options())) == default


def test_cycled_inputs_time_the_eval_windows_in_turn():
    from gpt2compress.measure.timing import forward_callable, timed_inputs

    windows = random_windows(n=3, seq_len=8, ragged=False)
    seen = []

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask):
            seen.append(input_ids[0, 0].item())

    forward = forward_callable(Model(), timed_inputs(windows, 1, 8, cycle=5))
    for _ in range(5):
        forward()
    assert seen == [windows.input_ids[i % 3, 0].item() for i in range(5)]  # every window in turn, wrapping
    seen.clear()
    fixed = forward_callable(Model(), timed_inputs(windows, 1, 8))
    fixed(), fixed()
    assert seen == [windows.input_ids[0, 0].item()] * 2


def test_seed_002s_timing_protocol_runs_in_the_bench(tmp_path, local_checkpoint):
    """README's seed-002 command at a small scale runs, and its rounds reach the record (what --cycle-inputs times:
    test_cycled_inputs_time_the_eval_windows_in_turn)."""
    out, no_budgets = tmp_path / "r.json", tmp_path / "none.toml"
    no_budgets.write_text("version = 1\n")
    done = run_bench(local_checkpoint, out, "--stages", "fp32,int8-scratch", "--rounds", "6", "--warmup", "2",
                     "--cycle-inputs", "--budgets", str(no_budgets))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {b["extra_info"]["variant"]: b for b in json.loads(out.read_text())["benchmarks"]}
    assert len(rows["int8-scratch"]["extra_info"]["latency_samples_ms"]) == 6
    assert rows["int8-scratch"]["stats"]["rounds"] == 6


def test_readmes_seed_commands_name_real_options_and_cases():
    """Every flag of README's seed-protocol table is declared once (options.py) and every --stages name is a case."""
    import re
    import shlex

    from gpt2compress.core.cases import names
    from helpers import ROOT

    table = (ROOT / "docs" / "suite.md").read_text().split("Each seed's protocol")[1].split("\n\n")[1]
    commands = [c for row in table.splitlines()[2:] for c in re.findall(r"`(pytest [^`]+)`", row)]
    assert len(commands) >= 5
    declared = {o.flag for o in OPTIONS}
    for command in commands:
        words = shlex.split(command)
        ours = {w.split("=")[0] for w in words if w.startswith("--") and not w.startswith("--benchmark-")}
        assert ours <= declared, command
        if "--stages" in words:
            assert set(words[words.index("--stages") + 1].split(",")) <= set(names()), command


@pytest.mark.parametrize("given", [["--rounds", "0"], ["--gen-rounds", "two"], ["--gen-batch-sizes", "1,x"],
                                   ["--warmup", "-1"], ["--new-tokens", "0"], ["--seq-len", "0"],
                                   ["--eval-samples", "-5"], ["--cls-seq-len", "0"]])
def test_a_count_that_is_not_one_is_an_error_naming_its_flag(given, capsys):
    parser = argparse.ArgumentParser()
    add_pytest_options(SimpleNamespace(addoption=parser.add_argument))  # pytest's parser is argparse's
    with pytest.raises(SystemExit):
        parser.parse_args(given)
    assert f"argument {given[0]}: expected a whole number" in capsys.readouterr().err
    assert parser.parse_args(["--gen-batch-sizes", "1,8", "--warmup", "0"]).gen_batch_sizes == [1, 8]
    assert parser.parse_args([]).gen_batch_sizes == [1, 8]  # the default goes through the same parse


def test_the_bench_refuses_to_run_with_pytest_benchmark_off():
    done = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "bench" / "test_forward.py"), "--collect-only",
                           "--benchmark-disable", "-p", "no:cacheprovider"], capture_output=True, text=True)
    assert done.returncode == 4 and "drop --benchmark-disable" in done.stderr  # not a crash in the first case


@pytest.mark.parametrize("args,message", [
    (["--data", "/nonexistent/wikitext"], "DataSourceError: data directory /nonexistent/wikitext does not exist"),
    (["--budgets", "/nonexistent/budgets.toml"], "BudgetFileError: budgets file /nonexistent/budgets.toml not found"),
])
def test_bad_input_to_the_bench_is_one_line_that_names_the_fix(local_checkpoint, tmp_path, args, message):
    done = run_bench(local_checkpoint, tmp_path / "out.json", "--stages", "fp32,pruned", *args)
    out = done.stdout + done.stderr
    assert done.returncode == 4, out
    assert out.count(message) == 1 and "Traceback" not in out, out


def test_stages_are_read_as_a_list_of_names(local_checkpoint, tmp_path):
    done = run_bench(local_checkpoint, tmp_path / "out.json", "--stages", "", "--collect-only")
    assert done.returncode == 4 and "--stages names no case" in done.stdout + done.stderr
    done = run_bench(local_checkpoint, tmp_path / "out.json", "--stages", "fp32, pruned", "--collect-only")
    assert done.returncode == 0 and "test_forward[pruned-cpu]" in done.stdout, done.stdout + done.stderr


def test_the_bench_options_do_not_collide_with_well_known_plugins():
    """pytest-profiling declares --profile, pytest-playwright --device, pytest-memray --memray (`stub_plugins`); ours
    are declared once, under names none of them takes, and both plugins' options work side by side."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "stub_plugins", str(ROOT / "bench"),
                           "--collect-only", "-q", "-p", "no:cacheprovider", "--traces", "/tmp/traces", "--devices",
                           "cpu", "--device", "iPhone 13", "--memray", "--memray-captures", "/tmp/mem", "--profile"],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), *sys.path])})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "tests collected" in done.stdout



def test_the_cli_says_its_version_and_a_closed_pipe_ends_quietly(tmp_path, capsys, monkeypatch):
    """`gpt2compress --version`; `gpt2compress … | head` ends without a BrokenPipeError traceback."""
    from importlib.metadata import version

    from gpt2compress.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"gpt2compress {version('gpt2compress')}"
    reader, writer = os.pipe()
    os.close(reader)  # the reader (`head`) has left: every write raises BrokenPipeError
    stdout = os.fdopen(writer, "w")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["history", "runs", "--history", str(tmp_path / "h.sqlite")]) == 0  # quietly, no traceback
