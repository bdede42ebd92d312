"""WikiText-2 perplexity as lm-eval-harness's `wikitext` task reports it: whole documents, rolling windows, word
perplexity, byte perplexity and bits per byte (`--eval-protocol documents`; tests/test_documents.py runs lm-eval's
own task on the same model and documents and compares).

- A document is one article: the raw test file split before each top-level ` = Title = ` heading (the split of
  `EleutherAI/wikitext_document_level`, which lm-eval reads from the hub).
- Its text is the raw page detokenized as lm-eval's `wikitext_detokenizer` does (` @-@ ` → `-`, ` , ` → `, `, ...).
- Its tokens are scored in disjoint windows of the model's context (`rolling_windows`): each window's targets
  follow the previous window's, and the model reads as many tokens before them as fit; the first token is scored
  after the end-of-text token (lm-eval's `loglikelihood_rolling`).
- word_perplexity = exp(−Σ log p / Σ words), byte_perplexity = exp(−Σ log p / Σ bytes), bits_per_byte =
  −Σ log p / Σ bytes / ln 2, where words and UTF-8 bytes are counted on the raw page, before detokenizing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..core.progress import track
from .timing import model_device

HEADING = re.compile(r"^ = [^=].* = $")  # a top-level heading line: " = Title = " (sections are " = = ... = = ")


def documents(raw: str) -> list[str]:
    """The articles of a raw WikiText file, each from its top-level heading to the next."""
    pages, lines = [], []
    for line in raw.split("\n"):
        if HEADING.match(line) and any(part.strip() for part in lines):
            pages.append("\n".join(lines))
            lines = []
        lines.append(line)
    if any(part.strip() for part in lines):
        pages.append("\n".join(lines))
    return pages


DETOKENIZE = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" : ", ": "), (" ; ", "; "), (" . ", ". "),
              (" ! ", "! "), (" ? ", "? "), (" , ", ", "))
BRACKETS = ((r"\(\s*([^\)]*?)\s*\)", r"(\1)"), (r"\[\s*([^\]]*?)\s*\]", r"[\1]"), (r"{\s*([^}]*?)\s*}", r"{\1}"),
            (r"\"\s*([^\"]*?)\s*\"", r'"\1"'), (r"'\s*([^']*?)\s*'", r"'\1'"))
AFTER = (("= = = =", "===="), ("= = =", "==="), ("= =", "=="), (" \N{DEGREE SIGN} ", "\N{DEGREE SIGN}"), (" \n", "\n"),
         ("\n ", "\n"), (" N ", " 1 "), (" 's", "'s"))


def detokenize(page: str) -> str:
    """WikiText's tokenized spacing undone, step for step as lm-eval's `wikitext_detokenizer`."""
    text = page.replace("s '", "s'")
    text = re.sub(r"/' [0-9]/", r"/'[0-9]/", text)
    for old, new in DETOKENIZE:
        text = text.replace(old, new)
    for pattern, replacement in BRACKETS:
        text = re.sub(pattern, replacement, text)
    for old, new in AFTER:
        text = text.replace(old, new)
    return text


def rolling_windows(tokens: list[int], prefix: int, max_len: int) -> list[tuple[list[int], list[int]]]:
    """(the tokens the model reads, the tokens scored) per window: targets in disjoint runs of `max_len`, each read
    after as many earlier tokens as fit (the first after `prefix`); the targets are the last positions' next tokens."""
    full = [prefix] + tokens  # full[i] is the token before tokens[i]
    windows = []
    for start in range(0, len(tokens), max_len):
        end = min(start + max_len, len(tokens))
        windows.append((full[max(0, end - max_len): end], tokens[start:end]))
    return windows


@dataclass(frozen=True)
class DocumentScores:
    loglikelihood: float
    words: int
    bytes: int

    @property
    def word_perplexity(self) -> float:
        return math.exp(-self.loglikelihood / self.words)

    @property
    def byte_perplexity(self) -> float:
        return math.exp(-self.loglikelihood / self.bytes)

    @property
    def bits_per_byte(self) -> float:
        return -self.loglikelihood / self.bytes / math.log(2)


@torch.inference_mode()
def loglikelihood(model: Any, tokenizer: Any, page: str, max_len: int) -> float:
    """Σ log p of the detokenized page's tokens, window by window."""
    tokens = tokenizer.encode(detokenize(page), add_special_tokens=False)
    device, total = model_device(model), 0.0
    for inputs, targets in rolling_windows(tokens, tokenizer.eos_token_id, max_len):
        logits = model(input_ids=torch.tensor([inputs], device=device)).logits[0, -len(targets):].float()
        total += float(F.log_softmax(logits, dim=-1).gather(-1, torch.tensor(targets, device=device)[:, None]).sum())
    return total


def score(model: Any, tokenizer: Any, pages: list[str], max_len: int, progress: bool = True) -> DocumentScores:
    """The pages' summed log-likelihood, words and bytes (the raw page's)."""
    total = sum(loglikelihood(model, tokenizer, page, max_len) for page in track(pages, "documents", bar=progress))
    return DocumentScores(total, sum(len(re.split(r"\s+", p)) for p in pages), sum(len(p.encode()) for p in pages))
