import pytest

from gpt2compress.build.data import EMBEDDED, load_corpus
from gpt2compress.build.sources import ModelSourceError, load_source
from gpt2compress.build.tokenizer import train_bpe


def test_unknown_hub_id_offline_names_the_offline_choices(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError) as err:
        load_source("no-such-org/no-such-model")
    assert "--model tiny" in str(err.value) and "local checkpoint directory" in str(err.value)


def test_missing_local_dir():
    with pytest.raises(ModelSourceError, match="does not exist"):
        load_source("./no/such/ckpt")


def test_tiny_needs_a_corpus():
    with pytest.raises(ValueError, match="corpus"):
        load_source("tiny")


def test_gpt2_randoms_key_follows_its_tokenizers_vocabulary_not_its_path(tmp_path):
    corpus = load_corpus(EMBEDDED)
    tokenizer = tmp_path / "tokenizer"
    train_bpe(corpus.train_text, 300, tokenizer)
    first = load_source("gpt2-random", corpus, str(tokenizer)).key
    assert load_source("gpt2-random", corpus, str(tokenizer)).key == first
    train_bpe(corpus.train_text, 400, tokenizer)  # the same directory, another vocabulary
    assert load_source("gpt2-random", corpus, str(tokenizer)).key != first  # conversions that tokenized with it rebuild


def test_a_tokenizer_that_cannot_load_is_an_error_not_another_vocabulary(tmp_path):
    corpus = load_corpus("embedded")
    with pytest.raises(ModelSourceError, match=r"--tokenizer .*nonexistent.*: cannot load it"):
        load_source("gpt2-random", corpus, str(tmp_path / "nonexistent"))
