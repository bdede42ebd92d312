"""pytest-benchmark's own history: the CI recipe saves every run and compares from the second run on."""

import os
import shutil
import subprocess

import pytest

from gpt2compress.io import save_model
from gpt2compress.tokenizer import load_tokenizer

from helpers import ROOT, random_gpt2


def run_recipe(storage, checkpoint, json_out, fail="median:10%"):
    env = {**os.environ, "GPT2COMPRESS_DATA": "embedded", "COMPARE_FAIL": fail}
    return subprocess.run(
        ["bash", str(ROOT / "bench" / "run-with-history.sh"), str(storage), "-p", "no:cacheprovider", "-q",
         "--model", str(checkpoint), "--device", "cpu", "--stages", "fp32", "-k", "test_forward", "--eval-samples", "8",
         f"--benchmark-json={json_out}"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, local_checkpoint):
    """One first run on an empty storage, shared: each test copies its storage and goes on from there."""
    root = tmp_path_factory.mktemp("history")
    done = run_recipe(root / "history", local_checkpoint, root / "1.json")
    return root / "history", done


def after_first(first_run, tmp_path):
    storage, _ = first_run
    shutil.copytree(storage, tmp_path / "history")
    return tmp_path / "history"


def test_first_run_without_baseline_passes_then_second_compares(first_run, tmp_path, local_checkpoint):
    _, first = first_run
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "becomes the first one" in first.stdout
    storage = after_first(first_run, tmp_path)
    assert len(list(storage.rglob("*.json"))) == 1
    # the timing gate itself is pytest-benchmark's; a huge allowance keeps this test about the mechanics
    second = run_recipe(storage, local_checkpoint, tmp_path / "2.json", fail="median:1000%")
    assert second.returncode == 0, second.stdout[-2000:]
    assert "Comparing against benchmarks from" in second.stdout + second.stderr
    assert len(list(storage.rglob("*.json"))) == 2


def test_compare_fail_gates_a_slower_median(first_run, tmp_path, local_checkpoint):
    """Second run on a model ~50x the compute under the same test name: the gate must fail the run."""
    big = random_gpt2(n_layer=6, n_embd=320, vocab_size=len(load_tokenizer(local_checkpoint)), n_positions=128)
    big_dir = save_model(big, tmp_path / "big", load_tokenizer(local_checkpoint))
    assert first_run[1].returncode == 0
    gated = run_recipe(after_first(first_run, tmp_path), big_dir, tmp_path / "2.json")
    assert gated.returncode != 0 and "Performance has regressed" in gated.stdout + gated.stderr
    assert (tmp_path / "2.json").exists()  # the slower run's numbers are still written
