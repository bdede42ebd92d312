"""What this CPU can do natively (which stages apply, how INT8 kernels are set up), and which CPUs a run may use."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Callable


@lru_cache
def _cpuinfo(field: str) -> str:
    """The first `field` line of /proc/cpuinfo ("" where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.partition(":")[0].strip() == field), "")
    except OSError:
        line = ""
    return line.partition(":")[2].strip()


def cpu_flags() -> frozenset[str]:
    return frozenset(_cpuinfo("flags").split())


def cpu_model() -> str:
    return _cpuinfo("model name")


def cpu_generation() -> dict[str, int]:
    """{"family": 23, "model": 1} ({} where /proc/cpuinfo has neither): what tells one "AMD EPYC" from another."""
    wanted = {"family": _cpuinfo("cpu family"), "model": _cpuinfo("model")}
    return {k: int(v) for k, v in wanted.items() if v.isdigit()}


# What a CPU class needs (any one flag): the classes a budget table can scope a limit to (budgets.py).
CPU_CLASSES = {
    "vnni": frozenset({"avx512_vnni", "avx_vnni", "amx_int8"}),  # int8 dot products (without: int16 accumulation)
    "bf16": frozenset({"avx512_bf16", "amx_bf16"}),  # bf16 compute (without: emulated, slower than fp32)
}


def cpu_classes(flags: frozenset[str] | None = None) -> tuple[str, ...]:
    """The CPU_CLASSES this CPU (or one with `flags`) belongs to, in CPU_CLASSES' order."""
    flags = cpu_flags() if flags is None else flags
    return tuple(name for name, needs in CPU_CLASSES.items() if flags & needs)


def has_vnni() -> bool:
    """int8 dot products in hardware (VNNI/AMX); without them u8*s8 kernels accumulate in int16."""
    return "vnni" in cpu_classes()


def has_native_bf16() -> bool:
    return "bf16" in cpu_classes()


def isa_summary() -> list[str]:
    return sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")) or "vnni" in f)


def isa_level(isa: list[str] | set[str]) -> str:
    """The widest vector ISA in an `isa_summary()` list: "amx", "avx512-vnni-bf16", "avx2", ... (what sets the speed
    of an INT8 or bf16 kernel; runner classes and report lines name it)."""
    isa = set(isa)
    if any(f.startswith("amx") for f in isa):
        return "amx"
    if "avx512f" in isa:
        return "avx512" + ("-vnni" if "avx512_vnni" in isa else "") + ("-bf16" if "avx512_bf16" in isa else "")
    return "avx2" if "avx2" in isa else "no-avx2"


def cpus_allowed() -> list[int]:
    """The CPUs this process may run on (a `taskset` narrows them): torch's and OpenVINO's thread pools follow it."""
    return sorted(os.sched_getaffinity(0))


def _topology(cpu: int) -> tuple[str, str]:
    base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
    try:
        return (base / "physical_package_id").read_text().strip(), (base / "core_id").read_text().strip()
    except OSError:
        return "0", str(cpu)  # no sysfs topology: every CPU counts as a core of its own


def distinct_cores(n: int, allowed: list[int] | None = None,
                   topology: Callable[[int], tuple[str, str]] = _topology) -> list[int]:
    """`n` CPUs on `n` different physical cores of one package (the one with the most cores among those allowed):
    what `taskset` should pin a 2-core run to on a bigger host. Two SMT siblings share one core's units, so they
    would be one core, not two; two packages would add a cross-socket hop no 2-core runner has."""
    allowed = cpus_allowed() if allowed is None else allowed
    if n < 1:
        raise ValueError(f"asked for {n} cores: ask for at least 1")
    packages: dict[str, dict[str, int]] = {}  # package -> core -> its first allowed CPU
    for cpu in sorted(allowed):
        package, core = topology(cpu)
        packages.setdefault(package, {}).setdefault(core, cpu)
    package, cores = max(packages.items(), key=lambda item: len(item[1]), default=("?", {}))
    if len(cores) < n:
        raise ValueError(f"only {len(cores)} physical core(s) on one package (package {package}) among the CPUs this "
                         f"process may use ({cpu_list(allowed)}): ask for at most {len(cores)}, or widen the affinity")
    return sorted(cores.values())[:n]


def cpu_list(cpus: list[int]) -> str:
    """0,1,2,5 -> "0-2,5": taskset's and /proc's way of writing CPU lists."""
    spans: list[list[int]] = []
    for cpu in sorted(cpus):
        if spans and cpu == spans[-1][1] + 1:
            spans[-1][1] = cpu
        else:
            spans.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
