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


def test_planted_outliers_keep_the_logits_and_make_a_few_channels_dominate(local_checkpoint):
    """`NAME-outliers`: GPT-2's activation outliers planted in any source, the same function (build/outliers)."""
    import torch

    from gpt2compress.build.outliers import OutlierRecipe, channels
    from gpt2compress.core.variants import Settings

    parent = load_source(str(local_checkpoint))
    planted = load_source(str(local_checkpoint) + "-outliers")
    assert planted.name == parent.name + "-outliers" and planted.key != parent.key
    ids = torch.randint(0, parent.model.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    seen = {}
    hook = planted.model.transformer.h[0].mlp.c_fc.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    with torch.no_grad():
        before, after = parent.model(ids).logits, planted.model(ids).logits
    hook.remove()
    assert torch.allclose(after, before, rtol=1e-5, atol=1e-5 * before.abs().max().item())
    absmax = seen["x"].abs().amax(dim=(0, 1))  # per channel, the input the MLP's first linear quantizes
    picked = list(channels(parent.model.config.n_embd, OutlierRecipe()))
    rest = absmax[[c for c in range(len(absmax)) if c not in picked]]
    assert absmax[picked].min() > 5 * rest.median()  # the outlier channels stand out as GPT-2's do
    assert Settings.for_model("gpt2-random-outliers") == Settings.for_model("gpt2-random")  # the parent's defaults
    assert channels(768, OutlierRecipe()) == (138, 378, 447)
