"""What this CPU can do natively: decides which stages apply and how INT8 kernels are set up."""

from __future__ import annotations

from functools import lru_cache


@lru_cache
def _cpuinfo(field: str) -> str:
    """The first `field` line of /proc/cpuinfo ("" where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith(field)), "")
    except OSError:
        line = ""
    return line.partition(":")[2].strip()


def cpu_flags() -> frozenset[str]:
    return frozenset(_cpuinfo("flags").split())


def cpu_model() -> str:
    return _cpuinfo("model name")


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
