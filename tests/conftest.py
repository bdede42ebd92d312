"""Unit-test fixtures: small random GPT-2s built in milliseconds; no hub, no shared data needed."""

import pytest

from gpt2compress.cache import release_all
from gpt2compress.data import load_corpus
from gpt2compress.io import save_model
from gpt2compress.sources import Source
from gpt2compress.tokenizer import train_bpe
from gpt2compress.variants import Context, Settings

from helpers import random_gpt2, random_windows


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2COMPRESS_CACHE", str(tmp_path / "cache"))
    yield
    release_all()  # each test's entries stop being "in use" by this process when it ends


@pytest.fixture
def model():
    return random_gpt2()


@pytest.fixture
def windows():
    return random_windows()


@pytest.fixture(scope="session")
def local_checkpoint(tmp_path_factory):
    """A small random GPT-2 saved as a user's local checkpoint directory (model + tokenizer)."""
    tmp = tmp_path_factory.mktemp("ckpt")
    corpus = load_corpus("embedded")
    tok = train_bpe(corpus.train_text[:30_000], 300, tmp / "tok")
    return save_model(random_gpt2(vocab_size=len(tok), n_positions=128), tmp / "ckpt", tok)


@pytest.fixture
def ctx(tmp_path):
    corpus = load_corpus("embedded")
    tok = train_bpe(corpus.train_text[:40_000], 300, tmp_path / "tok")
    model = random_gpt2(vocab_size=len(tok))
    settings = Settings(seq_len=32, eval_samples=8, finetune_max_steps=2, finetune_samples=16,
                        calibration_samples=8, finetune_lr=1e-3)
    return Context(Source("test", model, tok, "test-source"), corpus, settings)
