"""HellaSwag zero-shot (seed 003), completion style as in lm-eval-harness and karpathy's build-nanogpt.

Each example is a context and four candidate endings. Every ending is appended to
the context (tokenized apart, the ending with its leading space, as build-nanogpt
does) and scored by the summed log-probability of its tokens given the context:
- acc: the ending with the highest sum;
- acc_norm: the highest sum divided by the ending's length in characters
  (lm-eval's acc_norm). Characters, not tokens, so the normalization is the same
  for every tokenizer: `tiny`'s 4,096-token BPE and GPT-2's compare fairly.
Ties go to the lowest index, so uniform logits on equal-length endings pick ending 0.

Data: a local jsonl (build-nanogpt's `hellaswag_val.jsonl`: ctx, endings, label;
the hub's ctx_a / ctx_b form is accepted too) or `hellaswag`: the hub's
`Rowan/hellaswag` validation split via `datasets`.
"""

from __future__ import annotations

import json
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


def parse(record: dict[str, Any]) -> Example:
    """build-nanogpt's jsonl (`ctx`) or the hub's rows (`ctx_a` + `ctx_b`, label as a string)."""
    try:
        context = record.get("ctx") or f"{record['ctx_a']} {record['ctx_b'].capitalize()}"
        endings, label = tuple(record["endings"]), int(record["label"])
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


def _rows(context: list[int], endings: list[list[int]], max_len: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One right-padded row per ending: context + ending, the context cut from the left to fit `max_len`."""
    longest = max(map(len, endings))
    if not context:
        raise ValueError("a HellaSwag context must have at least one token")
    if max_len is not None:
        context = context[min(max(0, len(context) + longest - max_len), len(context) - 1):]
    ids = torch.zeros((len(endings), len(context) + longest), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, ending in enumerate(endings):
        ids[row, : len(context) + len(ending)] = torch.tensor(context + ending)
        mask[row, : len(context) + len(ending)] = 1
    return ids, mask


@torch.inference_mode()
def ending_logprobs(model: Any, tokenizer, example: Example, max_len: int | None = None) -> list[float]:
    """Summed log p(ending tokens | context) per ending, from one batched forward."""
    context = tokenizer.encode(example.context, add_special_tokens=False)
    endings = [tokenizer.encode(" " + e, add_special_tokens=False) for e in example.endings]
    ids, mask = _rows(context, endings, max_len)
    start = ids.shape[1] - max(map(len, endings))  # the first ending token (after any context cut)
    device = model_device(model)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
    logprobs = F.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
    return [float(logprobs[row, start - 1: start - 1 + len(e)].sum()) for row, e in enumerate(endings)]


def evaluate(model: Any, tokenizer, examples: list[Example], max_len: int | None = None,
             progress: bool = True) -> dict[str, float]:
    """acc and acc_norm over `examples`; np.argmax breaks ties towards the first ending."""
    if not examples:
        raise ValueError("HellaSwag needs at least one example")
    hits, hits_norm = 0, 0
    for example in track(examples, "hellaswag", bar=progress):
        sums = np.array(ending_logprobs(model, tokenizer, example, max_len))
        chars = np.array([len(" " + e) for e in example.endings])
        hits += int(np.argmax(sums)) == example.label
        hits_norm += int(np.argmax(sums / chars)) == example.label
    n = len(examples)
    return {"hellaswag_acc": hits / n, "hellaswag_acc_norm": hits_norm / n, "hellaswag_examples": n}
