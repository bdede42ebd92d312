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


def has_vnni() -> bool:
    """int8 dot products in hardware (VNNI/AMX); without them u8*s8 kernels accumulate in int16."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def has_native_bf16() -> bool:
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def isa_summary() -> list[str]:
    return sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")) or "vnni" in f)
