"""torch.profiler traces of a variant's forward: Chrome/Perfetto JSON plus TensorBoard logs, one per stage."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile, tensorboard_trace_handler


def profile_forward(directory: str | None, name: str, built: Any, forward: Callable[[], Any], steps: int = 3) -> Path | None:
    """Trace `steps` forwards of a PyTorch variant into DIR/NAME.trace.json and DIR/tensorboard/NAME."""
    if not directory or not isinstance(built.model, torch.nn.Module):
        return None  # OpenVINO runs outside PyTorch: its own tools (benchmark_app -pc) profile it
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities, record_shapes=True, with_stack=False) as prof:
        for _ in range(steps):
            forward()
    logs = out / "tensorboard"
    tensorboard_trace_handler(str(logs), worker_name=name)(prof)  # kineto saves a trace only once:
    written = max(logs.glob(f"{name}.*.pt.trace.json"), key=lambda p: p.stat().st_mtime)
    trace = out / f"{name}.trace.json"  # ...and that file is a Chrome trace; a stable name beside the logs
    shutil.copyfile(written, trace)
    return trace
