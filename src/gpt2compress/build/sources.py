"""Model sources: one entry point, `load_source(name)`.

- `tiny` (default): a GPT-2-architecture model (4 layers, 5 heads of 32 dims, so
  20 % pruning is exactly one head per layer) with its own 4,096-token byte-level
  BPE, pretrained from a fixed seed on the corpus's training text. Built once per
  (recipe, corpus) and cached; later uses load it in seconds.
- `gpt2-random`: the `gpt2` (124M) config with random weights, built offline, for
  latency and memory at true scale. Its perplexity is meaningless (reported, never gated).
- `NAME-outliers` (`tiny-outliers`, `gpt2-random-outliers`, any of these with the suffix): the source NAME with
  GPT-2's activation outliers planted, computing the same logits (`outliers.py`).
- anything else: a Hugging Face hub id (`gpt2`, `distilgpt2`) or a local checkpoint
  directory (ours, pruned or INT8, or any `save_pretrained` output).

A source's key is what its weights depend on: the recipe, corpus, code and library
versions for the models built here; the resolved commit for a hub id (a new upload
under the same name is a new key); the bytes of the files for a local directory
(touching a file changes nothing, editing one changes the key).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PreTrainedModel

from ..core.cache import cached_dir, content_key
from ..core.fingerprint import fingerprint
from .data import Corpus, packed_windows, tokenizer_key
from .outliers import SUFFIX, outlier_source
from ..runtimes.pytorch import load_model, save_model
from ..core.progress import say
from .tokenizer import load_tokenizer, train_bpe

TINY = "tiny"
GPT2_RANDOM = "gpt2-random"
BUILT_WITH = ("torch", "transformers", "tokenizers", "accelerate", "datasets")  # tiny's BPE and pretraining


def _built_here() -> dict:
    """The code and libraries that make `tiny` and `gpt2-random` (this module and all it imports)."""
    return fingerprint((__name__,), BUILT_WITH)


class ModelSourceError(ValueError):
    """A model that cannot be loaded; the message names what works offline."""


@dataclass(frozen=True)
class TinyRecipe:
    """Everything that decides `tiny`'s weights; its hash is the cache key."""

    n_layer: int = 4
    n_head: int = 5
    n_embd: int = 160
    n_positions: int = 256
    vocab_size: int = 4096
    seq_len: int = 128
    epochs: float = 8.0
    max_steps: int = 270  # ~0.55 s a step on 2 cores: under 3 minutes
    batch_size: int = 16
    learning_rate: float = 2e-3
    seed: int = 0


@dataclass
class Source:
    name: str
    model: PreTrainedModel
    tokenizer: object
    key: str  # content key: changes whenever the weights would
    perplexity_meaningful: bool = True


def load_source(name: str = TINY, corpus: Corpus | None = None, tokenizer: str | None = None) -> Source:
    """`tiny` and `gpt2-random` need `corpus` (tiny trains on it; both tokenize from it)."""
    tokenizer = tokenizer or os.environ.get("GPT2COMPRESS_TOKENIZER")
    if name.endswith(SUFFIX) and not Path(name).expanduser().is_dir():
        return outlier_source(load_source(parent_of(name), corpus, tokenizer))
    if name == TINY:
        return _tiny(_need(corpus, name), TinyRecipe())
    if name == GPT2_RANDOM:
        return _gpt2_random(_need(corpus, name), tokenizer)
    return _pretrained(name)


def parent_of(name: str) -> str:
    """The source a derived one is made from (`tiny-outliers` -> `tiny`): its settings are the parent's."""
    return name.removesuffix(SUFFIX)


def _need(corpus: Corpus | None, name: str) -> Corpus:
    if corpus is None:
        raise ValueError(f"model source {name!r} is built from a corpus; pass corpus=load_corpus(...)")
    return corpus


def _tiny(corpus: Corpus, recipe: TinyRecipe) -> Source:
    built_by = _built_here()
    key = content_key("tiny", recipe, corpus.cache_key, built_by)

    def build(out: Path) -> None:
        from .stages.finetune import FinetuneConfig, finetune

        tok = train_bpe(corpus.train_text, recipe.vocab_size, out)
        torch.manual_seed(recipe.seed)
        config = GPT2Config(
            vocab_size=len(tok), n_positions=recipe.n_positions, n_embd=recipe.n_embd,
            n_layer=recipe.n_layer, n_head=recipe.n_head, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
        )
        model = GPT2LMHeadModel(config)
        data = packed_windows(corpus, tok, recipe.seq_len)
        steps = min(recipe.max_steps, math.ceil(recipe.epochs * len(data) / recipe.batch_size))
        say(f"training tiny ({model.num_parameters():,} params, {steps} steps) on {corpus.name}, once: it is cached")
        finetune(model, FinetuneConfig(data, max_steps=steps, learning_rate=recipe.learning_rate,
                                       batch_size=recipe.batch_size, seed=recipe.seed))
        save_model(model, out, tok)
        (out / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))

    path = cached_dir("tiny", key, build, meta={"label": f"tiny on {corpus.name}", "fingerprint": built_by["code"]})
    return Source(TINY, load_model(path), load_tokenizer(path), key)


def _gpt2_random(corpus: Corpus, tokenizer: str | None) -> Source:
    """Tokenizer: the one given (--tokenizer / $GPT2COMPRESS_TOKENIZER), else GPT-2's BPE if the hub cache has it,
    else tiny's (ids fit GPT-2's vocab)."""
    if tokenizer:
        try:
            tok = load_tokenizer(tokenizer, local_files_only=True)
        except (OSError, ValueError) as err:  # a typo must not quietly measure with another vocabulary
            raise ModelSourceError(f"--tokenizer {tokenizer}: cannot load it ({str(err).strip()[:200]}); pass a "
                                   "directory with GPT-2's tokenizer files (e.g. ../shared/data/gpt2-tokenizer) "
                                   "or leave --tokenizer out") from None
    else:
        try:
            tok = load_tokenizer("gpt2", local_files_only=True)
        except (OSError, ValueError):
            tok = _tiny_tokenizer(corpus)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    key = content_key("gpt2-random", 0, tokenizer_key(tok), _built_here())  # the vocabulary, not where it was read
    return Source(GPT2_RANDOM, model, tok, key, perplexity_meaningful=False)


def _tiny_tokenizer(corpus: Corpus):
    recipe = TinyRecipe()
    trained_by = fingerprint(("gpt2compress.build.tokenizer",), ("tokenizers", "transformers"))
    path = cached_dir("tokenizer", content_key(recipe.vocab_size, corpus.cache_key, trained_by),
                      lambda out: train_bpe(corpus.train_text, recipe.vocab_size, out),
                      meta={"label": f"tiny's BPE on {corpus.name}", "fingerprint": trained_by["code"]})
    return load_tokenizer(path)


def _pretrained(name: str) -> Source:
    path = Path(name).expanduser()
    if path.is_dir():
        return Source(path.name, load_model(path), load_tokenizer(path), content_key("dir", files_key(path)))
    if name.startswith((".", "/", "~")):
        raise ModelSourceError(f"model directory {name} does not exist")
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(name, local_files_only=True)
        except OSError:
            model = AutoModelForCausalLM.from_pretrained(name)
        tok = load_tokenizer(name)
    except Exception as exc:  # the hub's and the cache's errors vary by version; say what it was
        said = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelSourceError(
            f"cannot load model {name!r}: not a local directory, not in the Hugging Face cache, and the hub "
            f"did not give it ({type(exc).__name__}: {said}). Offline, use --model {TINY} (embedded, trained here) or "
            f"--model {GPT2_RANDOM} (GPT-2 124M shape, random weights), or a local checkpoint directory."
        ) from exc
    return Source(name, model.eval(), tok, content_key("hub", name, hub_revision(model)))


def hub_revision(model: PreTrainedModel) -> str:
    """The commit the hub (or its local cache) resolved the name to; the weights' own hash if none was recorded."""
    commit = getattr(model.config, "_commit_hash", None)
    if commit:
        return commit
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return f"weights:{digest.hexdigest()[:16]}"


def files_key(path: Path) -> str:
    """The bytes of every file in a checkpoint directory (names included), not their modification times."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
