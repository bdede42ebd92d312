"""HellaSwag zero-shot (seed 003), scored as lm-eval-harness's `hellaswag` task scores it (its code is the judge:
tests/test_hellaswag.py runs lm-eval on the same model and rows and compares every log-likelihood).

Each example is a context and four candidate endings. The hub's rows (`activity_label`, `ctx_a`, `ctx_b`) become
lm-eval's query, `preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`, and its choices,
`preprocess(ending)` (WikiHow's `[title]` and bracket artifacts removed). Each choice is scored by the summed
log-probability of its tokens given the query, encoded as lm-eval's HF model encodes a pair: the query alone, then
query + " " + choice, the choice's tokens being what the second adds.
- acc: the choice with the highest sum;
- acc_norm: the highest sum divided by the choice's length in characters (lm-eval's acc_norm: the choice without
  the space before it). Characters, not tokens, so `tiny`'s BPE and GPT-2's compare fairly.
Each comes with its standard error over the examples, as lm-eval reports it. Ties go to the lowest index.

Data: the hub's rows from a local jsonl (a dump of `Rowan/hellaswag`: activity_label, ctx_a, ctx_b, endings, label)
or `hellaswag`: the hub's validation split via `datasets`. build-nanogpt's `hellaswag_val.jsonl` (ctx, endings,
label: no activity label) is read too and scored on its raw `ctx`: llm.c's completion-style protocol, not lm-eval's
(GPT-2 124M's acc_norm: 29.55 there against 31.14 in lm-eval).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..build.data import DataSourceError
from .timing import model_device
from ..core.progress import track

HUB_HELLASWAG = "hellaswag"
HUB_ID = "Rowan/hellaswag"


@dataclass(frozen=True)
class Example:
    context: str
    endings: tuple[str, ...]
    label: int


def preprocess(text: str) -> str:
    """lm-eval's hellaswag `preprocess`: WikiHow's brackets are artifacts of the dataset."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def parse(record: dict[str, Any]) -> Example:
    """The hub's rows (lm-eval's query and choices) or build-nanogpt's jsonl (raw `ctx`, raw endings)."""
    try:
        if "activity_label" in record:
            context = preprocess(f"{record['activity_label']}: {record['ctx_a']} {record['ctx_b'].capitalize()}")
            endings = tuple(preprocess(e) for e in record["endings"])
        else:
            context = record.get("ctx") or f"{record['ctx_a']} {record['ctx_b'].capitalize()}"
            endings = tuple(record["endings"])
        label = int(record["label"])
    except (KeyError, TypeError, ValueError) as err:
        raise DataSourceError(f"a HellaSwag row needs ctx (or ctx_a, ctx_b), endings and an integer label; "
                              f"got keys {sorted(record)} ({err!r})") from err
    if not 0 <= label < len(endings):
        raise DataSourceError(f"HellaSwag label {label} is not an index into its {len(endings)} endings")
    return Example(context.strip(), endings, label)


def load_hellaswag(spec: str | Path, limit: int | None = None) -> list[Example]:
    """`spec`: a jsonl file, or `hellaswag` for the hub's validation split."""
    if str(spec) == HUB_HELLASWAG:
        rows: Iterable[dict] = _hub_rows()
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise DataSourceError(f"HellaSwag file {path} not found; pass --hellaswag a jsonl file "
                                  f"(ctx, endings, label per line) or `{HUB_HELLASWAG}` for the hub")
        rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return [parse(row) for row, _ in zip(rows, range(limit if limit is not None else 10**9))]


def _hub_rows() -> Iterable[dict]:
    try:
        import datasets

        return datasets.load_dataset(HUB_ID, split="validation")
    except Exception as exc:
        raise DataSourceError(f"cannot load {HUB_ID} from the hub ({type(exc).__name__}); offline, pass "
                              "--hellaswag a local jsonl (build-nanogpt's hellaswag_val.jsonl)") from exc


def _rows(context: list[int], endings: list[list[int]], max_len: int | None) -> list[list[int]]:
    """Each ending after the context, as lm-eval scores a pair: the last `max_len` + 1 tokens of the two (the
    context cut from the left), of which the model reads all but the last."""
    if not context:
        raise ValueError("a HellaSwag context must have at least one token")
    return [(context + ending)[-(max_len + 1):] if max_len is not None else context + ending for ending in endings]


@torch.inference_mode()
def ending_logprobs(model: Any, tokenizer, example: Example, max_len: int | None = None) -> list[float]:
    """Summed log p(ending tokens | context) per ending, from one batched, right-padded forward; the pair encoded
    as lm-eval's HF model encodes it (`_encode_pair`: the ending's tokens are what " " + ending adds to the
    context's)."""
    context = tokenizer.encode(example.context, add_special_tokens=False)
    endings = [tokenizer.encode(example.context + " " + e, add_special_tokens=False)[len(context):]
               for e in example.endings]
    rows = _rows(context, endings, max_len)
    width = max(len(row) for row in rows) - 1
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row) - 1], mask[i, : len(row) - 1] = torch.tensor(row[:-1]), 1
    device = model_device(model)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
    logprobs = F.log_softmax(logits, dim=-1)
    sums = []
    for i, (row, ending) in enumerate(zip(rows, endings)):
        start = len(row) - 1 - len(ending)  # the position whose logits predict the ending's first token
        targets = torch.tensor(row[start + 1:])
        sums.append(float(logprobs[i, start: len(row) - 1].gather(-1, targets[:, None]).sum()))
    return sums


def evaluate(model: Any, tokenizer, examples: list[Example], max_len: int | None = None,
             progress: bool = True) -> dict[str, float]:
    """acc and acc_norm over `examples`, each with its standard error; np.argmax breaks ties towards the first."""
    if not examples:
        raise ValueError("HellaSwag needs at least one example")
    hits, hits_norm = [], []
    for example in track(examples, "hellaswag", bar=progress):
        sums = np.array(ending_logprobs(model, tokenizer, example, max_len))
        chars = np.array([len(e) for e in example.endings])
        hits.append(int(int(np.argmax(sums)) == example.label))
        hits_norm.append(int(int(np.argmax(sums / chars)) == example.label))
    return {"hellaswag_acc": statistics.fmean(hits), "hellaswag_acc_norm": statistics.fmean(hits_norm),
            "hellaswag_acc_stderr": stderr(hits), "hellaswag_acc_norm_stderr": stderr(hits_norm),
            "hellaswag_examples": len(examples)}


def stderr(hits: list[int]) -> float | None:
    """lm-eval's standard error of a mean: the sample standard deviation over sqrt(n)."""
    return statistics.stdev(hits) / math.sqrt(len(hits)) if len(hits) > 1 else None
