"""Text corpora and the token windows every stage and metric reads.

A `Corpus` is two strings: training text (tokenizer training, `tiny` pretraining,
fine-tuning, pruning scores, calibration) and evaluation text (perplexity only).
Three sources, by name:

- `embedded` (default): the Python reference manual shipped inside the standard
  library (`pydoc_data.topics`), so a fresh offline machine needs no file at all;
- a WikiText-2 directory (`--data DIR` or `$GPT2COMPRESS_DATA`): eval = `wiki.test.raw`,
  train = the first of `wiki.train.raw`, `wiki.train.tokens`, `wiki.valid.raw`, `wiki.valid.tokens`;
- `wikitext2`: `wikitext-2-raw-v1` from the Hugging Face hub via `datasets`.

Evaluation follows seed 002: one sample per paragraph (non-empty, not a heading, at
least 50 characters), tokenized once, truncated and right-padded to a fixed window
(128 tokens by default); padding is masked out of the loss.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from ..core.cache import cached_dir, content_key, text_key
from ..core.fingerprint import code_fingerprint

EMBEDDED = "embedded"
HUB_WIKITEXT = "wikitext2"
MIN_SAMPLE_CHARS = 50
TRAIN_CANDIDATES = ("wiki.train.raw", "wiki.train.tokens", "wiki.valid.raw", "wiki.valid.tokens")
EVAL_FILE = "wiki.test.raw"
WINDOWS_FILE = "windows.pt"


class DataSourceError(ValueError):
    """A data source that cannot be read; the message says what to pass instead."""


@dataclass(frozen=True)
class Corpus:
    name: str
    train_text: str
    eval_text: str
    line_per_paragraph: bool = False  # WikiText: every line is a paragraph or a heading

    @property
    def cache_key(self) -> str:
        lines = ":line-per-paragraph" if self.line_per_paragraph else ""
        return f"{self.name}:{text_key(self.train_text)}:{text_key(self.eval_text)}{lines}"

    def paragraphs(self, text: str, min_chars: int = MIN_SAMPLE_CHARS) -> list[str]:
        return paragraphs(text, min_chars, self.line_per_paragraph)


def load_corpus(spec: str | os.PathLike | None = None) -> Corpus:
    """Resolve `--data`: None -> `$GPT2COMPRESS_DATA` or the embedded corpus."""
    spec = spec if spec is not None else os.environ.get("GPT2COMPRESS_DATA") or EMBEDDED
    spec = str(spec)
    if spec == EMBEDDED:
        return _embedded_corpus()
    if spec == HUB_WIKITEXT:
        return _hub_wikitext()
    return _wikitext_dir(Path(spec).expanduser())


def _embedded_corpus() -> Corpus:
    from pydoc_data.topics import topics

    names = sorted(topics)
    held_out = set(names[::8])  # every 8th topic is evaluation text, never trained on
    train = "\n\n".join(topics[n] for n in names if n not in held_out)
    seen = set(paragraphs(train, min_chars=1))  # the manual repeats some paragraphs across topics
    held = paragraphs("\n\n".join(topics[n] for n in sorted(held_out)), min_chars=1)
    return Corpus(EMBEDDED, train, "\n\n".join(p for p in held if p not in seen))


def _wikitext_dir(path: Path) -> Corpus:
    if not path.is_dir():
        raise DataSourceError(
            f"data directory {path} does not exist. Pass --data with a WikiText-2 directory "
            f"(containing {EVAL_FILE}), --data {HUB_WIKITEXT} to download it, or --data {EMBEDDED}."
        )
    eval_path = path / EVAL_FILE
    train_path = next((path / n for n in TRAIN_CANDIDATES if (path / n).is_file()), None)
    if not eval_path.is_file() or train_path is None:
        raise DataSourceError(
            f"{path} is not a WikiText-2 directory: it needs {EVAL_FILE} and one of "
            f"{', '.join(TRAIN_CANDIDATES)}. Point --data (or $GPT2COMPRESS_DATA) at such a directory, "
            f"or use --data {EMBEDDED}."
        )
    corpus = Corpus(f"wikitext2-dir:{path.name}", train_path.read_text("utf-8"), eval_path.read_text("utf-8"),
                    line_per_paragraph=True)
    for file, text in ((eval_path, corpus.eval_text), (train_path, corpus.train_text)):
        if not corpus.paragraphs(text):  # found now, not after minutes of training on the other file
            raise DataSourceError(f"{file} has no paragraph of ≥{MIN_SAMPLE_CHARS} characters: it is empty or not "
                                  f"WikiText-2 text. Point --data at a WikiText-2 directory, or use --data {EMBEDDED}.")
    return corpus


def _hub_wikitext() -> Corpus:
    import datasets

    try:
        ds = datasets.load_dataset("Salesforce/wikitext", "wikitext-2-raw-v1")
    except Exception as exc:  # offline, no cache
        raise DataSourceError(
            f"could not load wikitext-2-raw-v1 from the Hugging Face hub ({type(exc).__name__}). "
            f"Offline, pass --data DIR with a local WikiText-2 copy or --data {EMBEDDED}."
        ) from exc
    return Corpus(HUB_WIKITEXT, "".join(ds["train"]["text"]), "".join(ds["test"]["text"]), line_per_paragraph=True)


def paragraphs(text: str, min_chars: int = MIN_SAMPLE_CHARS, per_line: bool = False) -> list[str]:
    """Paragraphs (blank-line separated, or one per line), headings (`= Title =`) and short fragments dropped.

    WikiText is one paragraph per line, and some copies have no blank lines between
    them: joining lines there would make the whole file one sample."""
    out, current = [], []
    for line in text.splitlines() + [""]:
        stripped = line.strip()
        if stripped:
            current.append(stripped)
            if not per_line:
                continue
        para = " ".join(current)
        current = []
        if len(para) >= min_chars and not (para.startswith("=") and para.endswith("=")):
            out.append(para)
    return out


@dataclass(frozen=True)
class Windows:
    """Fixed-length token windows, right-padded; `attention_mask` marks real tokens."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    key: str

    @property
    def cache_key(self) -> str:
        return self.key

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def labels(self) -> torch.Tensor:
        return self.input_ids.masked_fill(self.attention_mask == 0, -100)

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def batches(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(0, len(self), batch_size):
            yield {
                "input_ids": self.input_ids[i : i + batch_size],
                "attention_mask": self.attention_mask[i : i + batch_size],
            }

    def head(self, n: int | None) -> Windows:
        if n is None or n >= len(self):
            return self
        return Windows(self.input_ids[:n], self.attention_mask[:n], f"{self.key}[:{n}]")


def tokenizer_key(tokenizer) -> str:
    return text_key(tokenizer.backend_tokenizer.to_str())


def _cached_windows(key: str, make) -> Windows:
    """Tokenized once per (recipe, tokenizer, this module's code), then read back from the cache."""
    key = content_key(key, code_fingerprint((__name__,)))

    def build(out: Path) -> None:
        ids, mask = make()
        torch.save({"input_ids": ids, "attention_mask": mask}, out / WINDOWS_FILE)

    path = cached_dir("windows", key, build, meta={"label": "token windows"})
    saved = torch.load(path / WINDOWS_FILE)
    return Windows(saved["input_ids"], saved["attention_mask"], key)


def _pad(samples: list[list[int]], seq_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(samples), seq_len), pad_id, dtype=torch.long)
    mask = torch.zeros((len(samples), seq_len), dtype=torch.long)
    for row, sample in enumerate(samples):
        sample = sample[:seq_len]
        ids[row, : len(sample)] = torch.tensor(sample, dtype=torch.long)
        mask[row, : len(sample)] = 1
    return ids, mask


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def eval_windows(corpus: Corpus, tokenizer, seq_len: int = 128, max_samples: int | None = None) -> Windows:
    """Seed 002's evaluation set: one window per eval paragraph, in corpus order."""
    key = content_key("eval", corpus.cache_key, tokenizer_key(tokenizer), seq_len, max_samples)

    def make():
        texts = corpus.paragraphs(corpus.eval_text)[:max_samples]
        if not texts:
            raise DataSourceError(f"corpus {corpus.name} has no evaluation paragraph of ≥{MIN_SAMPLE_CHARS} chars")
        return _pad(_encode(tokenizer, texts), seq_len, tokenizer.pad_token_id)

    return _cached_windows(key, make)


def train_windows(corpus: Corpus, tokenizer, seq_len: int = 128, max_samples: int | None = None) -> Windows:
    """Fine-tuning set: one padded window per training paragraph, shuffled with a fixed seed."""
    key = content_key("train", corpus.cache_key, tokenizer_key(tokenizer), seq_len, max_samples)

    def make():
        texts = corpus.paragraphs(corpus.train_text)
        random.Random(0).shuffle(texts)
        return _pad(_encode(tokenizer, texts[:max_samples]), seq_len, tokenizer.pad_token_id)

    return _cached_windows(key, make)


def packed_windows(corpus: Corpus, tokenizer, seq_len: int = 128) -> Windows:
    """Pretraining set: the whole training text as back-to-back full windows (no padding)."""
    key = content_key("packed", corpus.cache_key, tokenizer_key(tokenizer), seq_len)

    def make():
        texts = corpus.paragraphs(corpus.train_text, min_chars=1)
        ids = [t for chunk in _encode(tokenizer, texts) for t in chunk + [tokenizer.eos_token_id]]
        n = len(ids) // seq_len
        tensor = torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)
        return tensor, torch.ones_like(tensor)

    return _cached_windows(key, make)


def calibration_windows(
    corpus: Corpus, tokenizer, seq_len: int = 128, n_samples: int = 64, min_tokens: int = 32
) -> Windows:
    """Quantization calibration: training paragraphs that are non-empty and at least `min_tokens` long."""
    key = content_key("calib", corpus.cache_key, tokenizer_key(tokenizer), seq_len, n_samples, min_tokens)

    def make():
        texts = corpus.paragraphs(corpus.train_text)
        random.Random(1).shuffle(texts)
        samples = [s for s in _encode(tokenizer, texts) if len(s) >= min_tokens][:n_samples]
        if not samples:
            raise DataSourceError(f"corpus {corpus.name} has no training paragraph of ≥{min_tokens} tokens")
        return _pad(samples, seq_len, tokenizer.pad_token_id)

    return _cached_windows(key, make)
