"""GPU energy per sample (seed 002): power sampled in the background while the workload repeats.

A `PowerSampler` reads watts from a source every `interval_s` on a thread; energy
is the time integral of those readings (trapezoid rule). Sources: NVML
(`nvidia-ml-py`, milliwatt resolution), else `nvidia-smi --query-gpu=power.draw`
as the seed did. On a CPU-only machine there is no source and no energy figure:
absent, not zero. Tests pass a fake source.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

PowerSource = Callable[[], float]  # current draw, watts


def nvml_power(index: int = 0) -> PowerSource | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetPowerUsage(handle)
    except Exception:  # no library, no driver, no GPU, or no power sensor
        return None
    return lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0


def nvidia_smi_power(index: int = 0) -> PowerSource | None:
    if shutil.which("nvidia-smi") is None:
        return None
    command = ["nvidia-smi", f"--id={index}", "--query-gpu=power.draw", "--format=csv,noheader,nounits"]

    def read() -> float:
        return float(subprocess.run(command, capture_output=True, text=True, timeout=5, check=True).stdout.strip())

    try:
        read()
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return read


def gpu_power_source(device: str, index: int = 0) -> PowerSource | None:
    """The best power reading for `device`, or None (CPU, or a GPU without a readable sensor)."""
    if device != "cuda":
        return None
    return nvml_power(index) or nvidia_smi_power(index)


@dataclass
class PowerSampler:
    source: PowerSource
    interval_s: float = 0.05
    readings: list[tuple[float, float]] = field(default_factory=list)  # (time, watts)

    def __enter__(self) -> PowerSampler:
        self._stop = threading.Event()
        self.readings.append((time.perf_counter(), self.source()))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.readings.append((time.perf_counter(), self.source()))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.readings.append((time.perf_counter(), self.source()))

    @property
    def seconds(self) -> float:
        return self.readings[-1][0] - self.readings[0][0]

    @property
    def joules(self) -> float:
        pairs = zip(self.readings, self.readings[1:])
        return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in pairs)

    @property
    def mean_watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else self.readings[-1][1]


def energy_per_sample(fn: Callable[[], Any], source: PowerSource, samples_per_call: int,
                      min_seconds: float = 2.0, interval_s: float = 0.05) -> dict[str, float]:
    """Repeat `fn` for at least `min_seconds` under the sampler: mean power and millijoules per sample.

    Timing rounds are too short to integrate 50 ms readings, so energy gets its own
    repeated run of the same callable (which synchronizes on CUDA).
    """
    fn()  # warm
    calls = 0
    with PowerSampler(source, interval_s) as sampler:
        start = time.perf_counter()
        while calls == 0 or time.perf_counter() - start < min_seconds:
            fn()
            calls += 1
    return {"mean_power_w": sampler.mean_watts,
            "energy_per_sample_mj": sampler.joules / (calls * samples_per_call) * 1e3,
            "energy_calls": calls, "energy_seconds": sampler.seconds}
