"""INT8 sizes that are INT8: weight tying survives prune -> fine-tune -> every export, and an INT8 model is
about 4x smaller than fp32 even when the embedding is most of the parameters (where a second float copy
of it would show)."""

import copy

import pytest

from gpt2compress.build.data import load_corpus
from gpt2compress.runtimes.pytorch import is_tied, save_model
from gpt2compress.measure.memory import size_on_disk
from gpt2compress.build.sources import Source
from gpt2compress.build.stages.int8_scratch import Int8Config, quantize_int8_scratch
from gpt2compress.build.tokenizer import train_bpe
from gpt2compress.core.variants import Context, Settings, build

from helpers import random_gpt2

INT8 = ["int8-scratch", "pruned-finetuned-int8-scratch", "ov-int8-weights", "ov-int8-sym-weights", "ov-int8-static",
        "pruned-finetuned-ov-int8-static", "inc-int8", "pruned-finetuned-inc-int8"]
INT8_SIZE_LIMIT = 0.30  # a quarter, plus scales and the graph's constants


@pytest.fixture
def embedding_heavy(tmp_path):
    """Most parameters are the (tied) embedding: 16,384 x 256 against two 256-wide blocks (large enough
    that the exported graphs' own description is a small part of the size)."""
    corpus = load_corpus("embedded")
    tok = train_bpe(corpus.train_text[:40_000], 300, tmp_path / "tok")
    model = random_gpt2(n_layer=2, n_head=4, n_embd=256, vocab_size=16384)
    embedding = model.transformer.wte.weight.numel()
    assert embedding / sum(p.numel() for p in model.parameters()) > 0.7
    settings = Settings(seq_len=32, eval_samples=8, finetune_max_steps=2, finetune_samples=16, calibration_samples=8,
                        finetune_lr=1e-3)
    return Context(Source("heavy", model, tok, "embedding-heavy"), corpus, settings)


def test_tying_and_the_kv_cache_survive_prune_and_finetune(ctx):
    built = build("pruned-finetuned", ctx)
    assert is_tied(built.model) and built.model.config.use_cache  # Trainer turns use_cache off while training
    loaded = build("pruned-finetuned", ctx)
    assert is_tied(loaded.model) and loaded.model.config.use_cache


@pytest.mark.parametrize("variant", INT8)
def test_int8_is_a_quarter_of_fp32_when_the_embedding_dominates(embedding_heavy, variant):
    fp32 = size_on_disk(build("fp32", embedding_heavy).path)
    int8 = size_on_disk(build(variant, embedding_heavy).path)
    assert int8 / fp32 <= INT8_SIZE_LIMIT, f"{variant}: {int8 / fp32:.3f} of fp32's size"


def test_the_limit_fails_an_int8_model_that_kept_its_embedding_float(embedding_heavy, tmp_path):
    fp32 = size_on_disk(build("fp32", embedding_heavy).path)
    model = quantize_int8_scratch(copy.deepcopy(embedding_heavy.source.model), Int8Config(embeddings=False))
    save_model(model, tmp_path / "float-embedding", embedding_heavy.source.tokenizer)
    assert size_on_disk(tmp_path / "float-embedding") / fp32 > INT8_SIZE_LIMIT


def test_size_counts_the_model_not_the_tokenizer(ctx):
    built = build("int8-scratch", ctx)
    assert (built.path / "tokenizer.json").exists()  # saved beside it so the dir loads as a --model
    files = {p.name: p.stat().st_size for p in built.path.iterdir() if p.is_file()}
    assert size_on_disk(built.path) == files["model.safetensors"] + files["config.json"]
