"""A CPU variant's peak memory comes from a fresh process: the variant's weights and activations, not the session's."""

import os
import pytest

import torch

from gpt2compress.runtimes.pytorch import save_model
from gpt2compress.measure.fields import forward_memory
from gpt2compress.measure.memory_probe import MemoryProbeError, fresh_process_memory
from gpt2compress.measure.timing import forward_callable
from gpt2compress.core.variants import Built

from helpers import random_gpt2

MiB = 2**20


@pytest.fixture
def big(tmp_path):
    """A saved fp32 GPT-2 with 64 MiB of weights: large against the probe's noise, fast to load."""
    model = random_gpt2(n_layer=4, n_head=8, n_embd=512, vocab_size=8192, n_positions=128)
    path = save_model(model, tmp_path / "big")
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return Built("fp32", (), None, path, "torch", {}), model, weights


def test_the_probe_counts_the_variants_weights_and_not_what_the_session_holds(big):
    built, model, weights = big
    inputs = {"input_ids": torch.randint(0, 8192, (1, 128)), "attention_mask": torch.ones(1, 128, dtype=torch.long)}
    session = torch.ones(512 * MiB // 4)  # 512 MiB the bench process holds (source model, other runtimes)
    session.add_(1)
    measured = forward_memory(built, inputs, forward_callable(model, inputs), "cpu", warmup=1)
    # the weights, a little more for activations; none of the 512 MiB this process holds
    assert weights * 0.9 <= measured["peak_memory_forward_bytes"] < weights + 200 * MiB
    assert measured["peak_rss_forward_bytes"] > measured["peak_memory_forward_bytes"]  # the imported stack too


def test_a_probe_that_cannot_load_the_variant_says_which_and_why(big, tmp_path):
    built = Built("broken", (), None, tmp_path / "nothing-here", "torch", {})
    with pytest.raises(MemoryProbeError, match="broken's memory failed") as failure:
        fresh_process_memory(built, {"input_ids": torch.zeros(1, 4, dtype=torch.long)}, warmup=1)
    assert "nothing-here" in str(failure.value)


def test_without_the_probe_the_row_says_why_memory_is_missing(big):
    built, model, _ = big
    inputs = {"input_ids": torch.zeros(1, 8, dtype=torch.long)}
    measured = forward_memory(built, inputs, forward_callable(model, inputs), "cpu", warmup=1, probe=False)
    assert measured == {"missing": {"peak_memory": "not measured: --no-memory-probe turns the fresh-process probe "
                                                   "off"}}


def test_the_probe_switch_is_an_option_whose_default_ci_sets_by_environment():
    import subprocess
    import sys

    read = "from gpt2compress.core.options import OPTIONS; print([o.default for o in OPTIONS if o.flag == '{}'][0])"
    for env, default in (({}, "False"), ({"GPT2COMPRESS_MEMORY_PROBE": "0"}, "True")):
        done = subprocess.run([sys.executable, "-c", read.format("--no-memory-probe")], capture_output=True, text=True,
                              env={**{k: v for k, v in os.environ.items() if k != "GPT2COMPRESS_MEMORY_PROBE"}, **env})
        assert done.stdout.strip().splitlines()[-1] == default, done.stderr[-2000:]
