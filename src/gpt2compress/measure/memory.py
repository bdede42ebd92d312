"""Memory and size: a model's parameters and bytes on disk, peak memory inside a block, memory given back."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import psutil
import torch


def parameter_count(model: Any) -> int:
    """Weights and biases in the state dict, tied tensors once; INT8 weights count, their scalar scales don't."""
    if isinstance(model, torch.nn.Module):
        unique = {t.data_ptr(): t.numel() for t in model.state_dict().values() if t.dim() > 0}
        return sum(unique.values())
    raise TypeError(f"parameter_count needs a torch module; record it before converting ({type(model).__name__})")


NOT_MODEL_FILES = frozenset({  # saved beside a model, but not the model: the tokenizer and our records
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
    "added_tokens.json", "chat_template.jinja", "info.json", "generation_config.json",
})


def size_on_disk(path: str | os.PathLike) -> int:
    """Bytes of a saved model (a file, or the model files under a directory: the tokenizer, which every
    variant shares and a 50k-token vocabulary makes megabytes, and the cache's own records are not counted)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*")
               if p.is_file() and p.name not in NOT_MODEL_FILES and not p.name.startswith("."))


def release_memory() -> None:
    """Give freed memory back (glibc keeps freed heap, CUDA its cache), so the next peak is the next model's own."""
    import ctypes
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


@dataclass
class PeakMemory:
    """Peak inside the block, in bytes: RSS on CPU; on CUDA, allocated/reserved device memory plus host RSS."""

    device: str = "cpu"
    peak: int = 0
    baseline: int = 0
    reserved: int | None = None
    rss_peak: int = 0

    @property
    def increase(self) -> int:
        return max(0, self.peak - self.baseline)


def tensor_bytes(model: torch.nn.Module) -> int:
    """The bytes of a model's parameters and buffers, as held in memory (a tied weight once)."""
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def resident_bytes() -> int:
    """This process's resident set size (RSS)."""
    return psutil.Process().memory_info().rss


@contextmanager
def _rss_peak(interval_s: float) -> Iterator[list[int]]:
    """A sampler thread polls RSS (torch kernels release the GIL, so it keeps up); yields [baseline, peak]."""
    seen = [resident_bytes()] * 2
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen[1] = max(seen[1], resident_bytes())
            stop.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()
        seen[1] = max(seen[1], resident_bytes())


@contextmanager
def peak_memory(device: str | torch.device = "cpu", interval_s: float = 0.002) -> Iterator[PeakMemory]:
    """CPU: peak RSS. CUDA: `max_memory_allocated`/`reserved` after a reset, and host RSS beside them."""
    device = torch.device(device)
    result = PeakMemory(device.type)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        result.baseline = torch.cuda.memory_allocated(device)
    with _rss_peak(interval_s) as rss:
        yield result
    result.rss_peak = rss[1]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        result.peak = torch.cuda.max_memory_allocated(device)
        result.reserved = torch.cuda.max_memory_reserved(device)
    else:
        result.baseline, result.peak = rss
