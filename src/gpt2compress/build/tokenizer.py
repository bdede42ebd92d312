"""Tokenizers: the real GPT-2 BPE when available, a small trained byte-level BPE for `tiny`.

`tiny` must build on a fresh offline machine and train in minutes, and a 50,257-token
vocabulary would make its embedding and LM head most of its size and compute. So
`tiny` trains its own byte-level BPE (the GPT-2 algorithm, 4,096 tokens) on the
corpus's training text, and saves it as `vocab.json` + `merges.txt` like GPT-2's.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoTokenizer, GPT2TokenizerFast, PreTrainedTokenizerBase

EOS = "<|endoftext|>"


def ready_for_padding(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """GPT-2 ships without a pad token; padding uses EOS and is masked out of every loss."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def train_bpe(text: str, vocab_size: int, out_dir: Path) -> GPT2TokenizerFast:
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(text.splitlines(), vocab_size=vocab_size, special_tokens=[EOS], show_progress=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(out_dir))
    return load_tokenizer(out_dir)


def load_tokenizer(name_or_dir: str | os.PathLike, **hub_kwargs) -> PreTrainedTokenizerBase:
    """A dir with only `vocab.json` + `merges.txt` (e.g. ../shared/data/gpt2-tokenizer) loads as GPT-2's BPE."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir() and (path / "vocab.json").is_file() and not (path / "tokenizer_config.json").is_file():
        tok = GPT2TokenizerFast.from_pretrained(str(path), eos_token=EOS, bos_token=EOS, unk_token=EOS)
    else:
        tok = AutoTokenizer.from_pretrained(str(name_or_dir), **hub_kwargs)
    return ready_for_padding(tok)
