"""Where a variant's forward spends its time, saved per stage beside the benchmark JSON.

- PyTorch variants: torch.profiler traces (Chrome/Perfetto JSON plus TensorBoard logs) and a table of the
  operators with the most self time (`NAME.ops.md`).
- OpenVINO variants: OpenVINO's own per-layer counters (`PERF_COUNT`, what `benchmark_app -pc` prints) on a
  compile of the stateless IR the bench scores on, summed per layer type and kernel (`NAME.ov-layers.md`, rows in
  `NAME.ov-layers.json`): the kernel names say which ISA ran (`brgemm_avx512_amx`, `gemm_mlas_f32`, ...) and
  whether an INT8 layer really ran as INT8 (`..._I8`) or fell back to float.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, tensorboard_trace_handler

from .timing import Inputs, forward_callable

TOP = 15


def profile_forward(directory: str | None, name: str, built: Any, inputs: Inputs, steps: int = 3) -> Path | None:
    """`steps` forwards of `inputs`, profiled the way the variant's runtime can be; the main file written."""
    if not directory:
        return None
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if built.runtime == "openvino":
        return openvino_layers(out, name, built, inputs, steps)
    if not isinstance(built.model, torch.nn.Module):
        return None  # a native engine in its own process (llama.cpp): its own tools profile it
    return torch_trace(out, name, forward_callable(built.model, inputs), steps)


def torch_trace(out: Path, name: str, forward, steps: int) -> Path:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities, record_shapes=True, with_stack=False) as prof:
        for _ in range(steps):
            forward()
    logs = out / "tensorboard"
    tensorboard_trace_handler(str(logs), worker_name=name)(prof)  # kineto saves a trace only once:
    written = max(logs.glob(f"{name}.*.pt.trace.json"), key=lambda p: p.stat().st_mtime)
    trace = out / f"{name}.trace.json"  # ...and that file is a Chrome trace; a stable name beside the logs
    shutil.copyfile(written, trace)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=TOP)
    (out / f"{name}.ops.md").write_text(f"# {name}: top {TOP} operators by self CPU time, {steps} forwards\n\n"
                                        f"```\n{table}\n```\n")
    return trace


def openvino_layers(out: Path, name: str, built: Any, inputs: Inputs, steps: int) -> Path:
    from ..core.registry import scoring_engine

    scorer = scoring_engine(built, inputs, PERF_COUNT="YES")  # the compile the bench times, with its counters
    forward = forward_callable(scorer, inputs)
    forward()  # the first inference also prepares kernels
    per_layer: dict[tuple[str, str], float] = defaultdict(float)
    for _ in range(steps):
        forward()
        for layer in scorer.request.get_profiling_info():
            if layer.status == layer.Status.EXECUTED:
                per_layer[(layer.node_type, layer.exec_type)] += layer.real_time.total_seconds() * 1e3 / steps
    rows = [{"layer_type": t, "kernel": k, "ms_per_forward": ms} for (t, k), ms in
            sorted(per_layer.items(), key=lambda item: -item[1])]
    (out / f"{name}.ov-layers.json").write_text(json.dumps(rows, indent=1))
    total = sum(r["ms_per_forward"] for r in rows) or 1.0
    lines = [f"# {name}: OpenVINO per-layer counters, mean of {steps} forwards ({total:.2f} ms in layers)", "",
             "| layer type | kernel | ms / forward | share |", "|---|---|---|---|"]
    lines += [f"| {r['layer_type']} | {r['kernel']} | {r['ms_per_forward']:.3f} | {r['ms_per_forward'] / total:.1%} |"
              for r in rows[:TOP]]
    table = out / f"{name}.ov-layers.md"
    table.write_text("\n".join(lines) + "\n")
    return table
