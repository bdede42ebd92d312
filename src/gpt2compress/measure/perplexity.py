"""Perplexity: token-weighted next-token NLL over the eval windows, the same for every variant and runtime."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..build.data import Windows
from ..core.progress import track
from .timing import model_device


def _logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).logits


@torch.inference_mode()
def nll_sum(model: Any, windows: Windows, batch_size: int = 8, progress: bool = False) -> tuple[float, int]:
    """Summed next-token NLL (fp32, full logits) over non-padding targets, and their count."""
    device, total, count = model_device(model), 0.0, 0
    batches = windows.batches(batch_size)
    for batch in track(list(batches), "perplexity", bar=progress):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = _logits(model, batch)[:, :-1].float()
        targets = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum").item()
        count += int((targets != -100).sum())
    return total, count


def perplexity(model: Any, windows: Windows, batch_size: int = 8, progress: bool = False) -> float:
    """exp(token-weighted mean NLL): independent of batch size and padding."""
    total, count = nll_sum(model, windows, batch_size, progress)
    if count == 0:
        raise ValueError("perplexity needs at least one non-padding target token")
    return math.exp(total / count)
