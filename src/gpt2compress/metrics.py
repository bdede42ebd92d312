"""What is measured, as plain functions the bench suite reuses.

Models here are anything called as `model(input_ids=..., attention_mask=...)` that
returns `.logits` (batch, seq, vocab): PyTorch GPT-2 variants and OpenVINO
`OVModelForCausalLM` alike, so every variant is scored on identical windows.
"""

from __future__ import annotations

import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import Windows


def model_device(model: Any) -> torch.device:
    if isinstance(model, torch.nn.Module):
        return next(model.parameters()).device
    return torch.device("cpu")  # OpenVINO and other runtimes take CPU tensors


def _logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).logits


@torch.inference_mode()
def nll_sum(model: Any, windows: Windows, batch_size: int = 8, progress: bool = False) -> tuple[float, int]:
    """Summed next-token NLL (fp32, full logits) over non-padding targets, and their count."""
    device, total, count = model_device(model), 0.0, 0
    batches = windows.batches(batch_size)
    for batch in tqdm(list(batches), desc="perplexity", leave=False) if progress else batches:
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


def fixed_batch(windows: Windows, batch_size: int = 1, seq_len: int | None = None) -> dict[str, torch.Tensor]:
    """The timing input: the first `batch_size` windows, unpadded (mask all ones)."""
    ids = windows.input_ids[:batch_size, :seq_len]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def forward_callable(model: Any, batch: dict[str, torch.Tensor]) -> Callable[[], Any]:
    """A zero-argument forward for timers; on CUDA it synchronizes so the time is the kernels' time."""
    device = model_device(model)
    batch = {k: v.to(device) for k, v in batch.items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def forward() -> Any:
        with torch.inference_mode():
            out = model(**batch)
        sync()
        return out

    return forward


def tokens_per_second(n_tokens: int, seconds: float) -> float:
    return n_tokens / seconds


def parameter_count(model: Any) -> int:
    """Weights and biases in the state dict, tied tensors once; INT8 weights count, their scalar scales don't."""
    if isinstance(model, torch.nn.Module):
        unique = {t.data_ptr(): t.numel() for t in model.state_dict().values() if t.dim() > 0}
        return sum(unique.values())
    raise TypeError(f"parameter_count needs a torch module; record it before converting ({type(model).__name__})")


def size_on_disk(path: str | os.PathLike) -> int:
    """Bytes of a saved variant (a file, or every file under a directory)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass
class PeakMemory:
    """Peak RSS (CPU) or peak allocated/reserved device memory (CUDA) inside the block, in bytes."""

    device: str = "cpu"
    peak: int = 0
    baseline: int = 0
    reserved: int | None = None

    @property
    def increase(self) -> int:
        return max(0, self.peak - self.baseline)


def _rss() -> int:
    return psutil.Process().memory_info().rss


@contextmanager
def peak_memory(device: str | torch.device = "cpu", interval_s: float = 0.002) -> Iterator[PeakMemory]:
    """CPU: a sampler thread polls RSS (torch kernels release the GIL, so it keeps up). CUDA: allocator stats."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = PeakMemory("cuda", baseline=torch.cuda.memory_allocated(device))
        yield result
        torch.cuda.synchronize(device)
        result.peak = torch.cuda.max_memory_allocated(device)
        result.reserved = torch.cuda.max_memory_reserved(device)
        return
    result = PeakMemory("cpu", baseline=_rss())
    result.peak = result.baseline
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            result.peak = max(result.peak, _rss())
            stop.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result.peak = max(result.peak, _rss())


def latency_stats(seconds: list[float]) -> dict[str, float]:
    """Mean and tail latency in milliseconds (p90/p99 by nearest rank)."""
    ordered = sorted(seconds)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] * 1e3

    return {"mean_ms": sum(ordered) / len(ordered) * 1e3, "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99)}


def time_calls(fn: Callable[[], Any], rounds: int = 10, warmup: int = 2) -> list[float]:
    """Wall seconds of `rounds` calls after `warmup` calls (for scripts; the bench uses pytest-benchmark)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
