"""Unit-test fixtures: small random GPT-2s built in milliseconds; no hub, no shared data needed."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from gpt2compress.data import Windows


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2COMPRESS_CACHE", str(tmp_path / "cache"))


def random_gpt2(n_layer=2, n_head=5, n_embd=40, vocab_size=97, seed=0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size, n_positions=64)
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


@pytest.fixture
def model():
    return random_gpt2()


@pytest.fixture
def windows():
    return random_windows()
