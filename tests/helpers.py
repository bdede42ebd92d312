"""Plain helpers for the unit tests (imported as `helpers`; fixtures live in conftest.py)."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from gpt2compress.build.data import Windows

ROOT = Path(__file__).resolve().parents[1]


def random_gpt2(n_layer=2, n_head=5, n_embd=40, vocab_size=97, seed=0, n_positions=64) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size, n_positions=n_positions)
    return GPT2LMHeadModel(config).eval()


def random_windows(n=6, seq_len=16, vocab_size=97, seed=0, ragged=True) -> Windows:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (n, seq_len), generator=g)
    mask = torch.ones_like(ids)
    if ragged:
        for row in range(n):
            length = seq_len - (row * 3) % (seq_len // 2)
            mask[row, length:] = 0
            ids[row, length:] = 0
    return Windows(ids, mask, f"random-{n}-{seq_len}-{seed}-{ragged}")


def run_bench(checkpoint, out_json, *args, cache=None, suite="test_forward.py", env=None):
    """`pytest bench/<suite>` in a subprocess, as a user runs it (forward only unless `suite` says otherwise)."""
    # no fresh-process memory probe (seconds per CPU case): these runs check other things; test_memory_probe checks it
    env = {**os.environ, "GPT2COMPRESS_DATA": "embedded", "GPT2COMPRESS_MEMORY_PROBE": "0", **(env or {})}
    if cache:
        env["GPT2COMPRESS_CACHE"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "bench" / suite), "-p", "no:cacheprovider", "-q",
         "--model", str(checkpoint), "--devices", "cpu", "--eval-samples", "8", f"--benchmark-json={out_json}", *args],
        capture_output=True, text=True, env=env, timeout=600,
    )
