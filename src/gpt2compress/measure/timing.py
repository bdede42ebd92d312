"""Timed calls: the inputs a forward is timed on, the call itself, its rounds, and the threads around it.

Models here are anything called as `model(input_ids=..., attention_mask=...)` that returns `.logits`: PyTorch
GPT-2 variants, OpenVINO's compiled IR and the peer engines alike, so every variant is timed on identical inputs.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, Callable

import torch

from ..build.data import Windows
from ..core.records import percentile


def model_device(model: Any) -> torch.device:
    if isinstance(model, torch.nn.Module):
        return next(model.parameters()).device
    return torch.device("cpu")  # OpenVINO and other runtimes take CPU tensors


Batch = dict[str, torch.Tensor]
Inputs = Batch | list[Batch]  # the timed input: one batch every round, or one per round in turn


def fixed_batch(windows: Windows, batch_size: int = 1, seq_len: int | None = None, start: int = 0) -> Batch:
    """The timing input: `batch_size` windows from `start` (default the first), unpadded (mask all ones)."""
    ids = windows.input_ids[start:start + batch_size, :seq_len]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def timed_inputs(windows: Windows, batch_size: int = 1, seq_len: int | None = None, cycle: int = 0) -> Inputs:
    """The first batch every round; with `cycle` rounds (seed 002), the eval windows in turn, wrapping around."""
    if not cycle:
        return fixed_batch(windows, batch_size, seq_len)
    batches = max(1, len(windows) // batch_size)
    return [fixed_batch(windows, batch_size, seq_len, (i % batches) * batch_size) for i in range(cycle)]


def first_batch(inputs: Inputs) -> Batch:
    return inputs[0] if isinstance(inputs, list) else inputs


def shape_of(inputs: Inputs) -> list[int]:
    """The timed batch's [batch, length]: what records report and what an engine compiles static shapes for."""
    return list(first_batch(inputs)["input_ids"].shape)


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What a timer must call before reading the clock: CUDA kernels run asynchronously."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _move(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def forward_callable(model: Any, inputs: Inputs) -> Callable[[], Any]:
    """A zero-argument forward for timers (each call the next batch of a list); on CUDA it synchronizes so the
    time is the kernels' time."""
    device = model_device(model)
    batches = itertools.cycle([_move(b, device) for b in (inputs if isinstance(inputs, list) else [inputs])])
    sync = synchronizer(device)

    def forward() -> Any:
        with torch.inference_mode():
            out = model(**next(batches))
        sync()
        return out

    return forward


def cuda_event_ms(fn: Callable[[], Any], rounds: int = 5) -> list[float]:
    """GPU-side milliseconds per call, from CUDA events: what a wall-clock timer must not undercut."""
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def unsynchronized_timer(wall_ms: float, gpu_ms: float, tolerance: float = 0.8) -> str | None:
    """Why a wall-clock time is implausible (faster than the GPU's own time for the work), else None.

    Pass the fastest call of each: a synchronized call is never shorter than the GPU's time for it, and an
    unsynchronized one is shorter every time. Medians taken at different moments are not comparable: on an
    H200 a 124M mixed-fp16 forward had a 20-round wall median of 8.6 ms against a 5-round event median of
    13.9 ms in one bench run, while the same forward measured both ways in isolation agreed (5.8 vs 6.0 ms)."""
    if wall_ms < tolerance * gpu_ms:
        return (f"wall-clock {wall_ms:.3g} ms is below the GPU's own {gpu_ms:.3g} ms for the same call: "
                "the timed callable returns before the GPU finishes (missing torch.cuda.synchronize)")
    return None


def latency_stats(seconds: list[float]) -> dict[str, float]:
    """Mean and tail latency in milliseconds (p90/p99 by nearest rank)."""
    ms = [s * 1e3 for s in seconds]
    return {"mean_ms": sum(ms) / len(ms), **{f"p{p}_ms": percentile(ms, p) for p in (50, 90, 99)}}


def busy_threads() -> set[int]:
    """Other threads of this process running or waiting to run now (state R in /proc/self/task/*/stat). Off Linux,
    where there is no /proc, none."""
    me, busy = threading.get_native_id(), set()
    for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ():
        with suppress(OSError):  # a thread may end between listing and reading
            if int(tid) != me and Path(f"/proc/self/task/{tid}/stat").read_text().rpartition(")")[2].split()[0] == "R":
                busy.add(int(tid))
    return busy


def settle_threads(max_wait_s: float = 0.2, poll_s: float = 0.0005,
                   busy: Callable[[], set[int]] = busy_threads) -> bool:
    """Wait until no other thread of this process is running or waiting to run.

    Why: a thread pool spins on after its work before it sleeps (torch's libgomp about 7 ms on a Zen 4, ONNX Runtime's
    about 37 ms). On a 2-core runner the next timed call, by another runtime's threads, shares the cores with that
    spin for its first milliseconds. False if still busy after `max_wait_s`."""
    deadline = time.perf_counter() + max_wait_s
    while busy():
        if time.perf_counter() > deadline:
            return False
        time.sleep(poll_s)
    return True


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
