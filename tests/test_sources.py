import pytest

from gpt2compress.sources import ModelSourceError, load_source


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
