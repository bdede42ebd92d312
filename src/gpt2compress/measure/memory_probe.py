"""A CPU variant's memory, measured in a fresh process: what loading it and running its timed batch adds.

In the bench process the RSS holds the source model, the reference, every runtime loaded so far and what their
allocators kept, so a CPU variant's peak there says more about the session than about the variant (an INT8 IR
read 2.2 GiB beside fp32's 1.9). So the CPU figure comes from a new interpreter: it imports this package and
every stage module, takes the RSS, loads the variant (with whatever its runtime imports on load: a deployment
pays for that too), gives back what loading alone needed, and runs the timed batch's warm-up calls. The peak RSS
over those calls, less the RSS before loading, is the variant's: its weights as its runtime holds them, its
activations and its runtime's buffers. The whole process's peak is kept beside it. On CUDA the device's own
allocator counters say this in-process.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MARK = "gpt2compress-memory "
TIMEOUT_S = 900  # a 124M IR compiles in seconds; a probe that hangs fails its case, not the session


class MemoryProbeError(RuntimeError):
    """The fresh process could not load or run the variant."""


def fresh_process_memory(built: Any, inputs: Any, warmup: int) -> dict[str, int]:
    """`peak_memory_forward_bytes` (growth over the imported stack) and `peak_rss_forward_bytes` (the process's
    peak) of `built` loaded and called `warmup` times on `inputs` in a new interpreter."""
    from ..core.progress import say
    from ..core.registry import stage

    modules = tuple(dict.fromkeys(stage(name).module for name in built.chain))  # plugins register stages there
    say(f"measure {built.name}: peak memory in a fresh process")
    with tempfile.TemporaryDirectory(prefix="gpt2compress-memory-") as tmp:
        spec = Path(tmp) / "probe.pickle"
        spec.write_bytes(pickle.dumps({"built": dataclasses.replace(built, model=None), "inputs": inputs,
                                       "warmup": max(1, warmup), "modules": modules}))
        done = subprocess.run([sys.executable, "-m", __name__, str(spec)], capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    answers = [line[len(MARK):] for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not answers:
        raise MemoryProbeError(f"the fresh process measuring {built.name}'s memory failed (exit status "
                               f"{done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(answers[-1])


def _probe(spec: dict) -> dict[str, int]:
    import importlib

    for module in spec["modules"]:
        importlib.import_module(module)
    from ..core.registry import scoring_engine
    from .timing import forward_callable
    from .memory import peak_memory, release_memory, resident_bytes
    from ..core.registry import _load_all, runtime

    _load_all()  # every stage module: the same baseline for every variant
    built, inputs = spec["built"], spec["inputs"]
    release_memory()
    before = resident_bytes()
    engine = scoring_engine(built, inputs)  # an OpenVINO LM's stateless IR: its runtime's model is not needed
    if engine is None:
        engine = runtime(built.runtime).load(built.path, "cpu")
    forward = forward_callable(engine, inputs)
    release_memory()  # what loading needed only while it loaded (an fp32 model built before its INT8 swap)
    with peak_memory("cpu") as mem:
        for _ in range(spec["warmup"]):
            forward()
    return {"peak_memory_forward_bytes": mem.peak - before, "peak_rss_forward_bytes": mem.peak}


if __name__ == "__main__":
    print(MARK + json.dumps(_probe(pickle.loads(Path(sys.argv[1]).read_bytes()))), flush=True)
