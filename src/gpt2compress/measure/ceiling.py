"""This machine's limits: multiply-add peaks (fp32, bf16, INT8) and memory read bandwidth per thread count, which
every forward and decode row is set against (roofline.py), so a row says how far it is from what this CPU can do.

The peaks come from machine code assembled here at run time (iced-x86: no compiler or build step on the runner),
the widest form this CPU has of each multiply-add, in the loop a kernel's inner block is made of:
- each peak: every thread (one per physical core, pinned) runs 12 independent multiply-add chains, enough to hide
  the instruction's latency, so the rate is the units' throughput;
- INT8 without VNNI: the triple AVX2 kernels use (`vpmaddubsw`, `vpmaddwd`, `vpaddd`: 32 u8×s8 multiply-adds);
- the clock: a chain of dependent adds (one cycle each) on the same threads, so per-cycle rates can be read;
- bandwidth: every thread streams 32-byte loads over its own buffer, far larger than any last-level cache.
Best of `REPEATS`. The probe runs in a child process (`python -m gpt2compress.measure.ceiling`): an instruction the
OS refuses ends the child, and the bench goes on without a ceiling, saying why. AMX tiles are not probed: on an
AMX CPU the INT8 and bf16 peaks are the vector units' (`Ceiling.note` says so, and every row that uses it).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..build.hardware import cpu_flags, cpu_generation, cpu_model, cpus_allowed, distinct_cores, isa_level, isa_summary

REPEATS = 7
TARGET_S = 0.05  # seconds per timed call: short, so that the best of REPEATS misses what preempts a core now and then
BUFFER_MIB = 256  # per thread: 8× the largest L3 slice a 2-core runner sees
CHAINS = 12


@dataclass(frozen=True)
class Kernel:
    """One multiply-add loop: its name, what it needs, and how many multiply-adds one iteration does."""

    name: str
    needs: frozenset[str]
    macs_per_iteration: int


@dataclass
class Peak:
    """What `threads` cores do together: G multiply-adds/s per kind, GB/s read from memory, the clock under load."""

    threads: int
    clock_ghz: float
    gmacs: dict[str, float]  # "fp32" | "bf16" | "int8" -> G MAC/s (bf16 only where the CPU computes it natively)
    read_gbs: float


@dataclass
class Ceiling:
    cpu: str
    generation: dict
    isa: str
    kernels: dict[str, str]  # kind -> the instruction measured ("vpdpbusd zmm", ...)
    peaks: list[Peak] = field(default_factory=list)
    note: str = ""
    probe: str = ""  # the probe's code hash: a changed probe measures anew

    def at(self, threads: int) -> Peak | None:
        """The peak at `threads` threads (the nearest measured count below, else the smallest)."""
        below = [p for p in self.peaks if p.threads <= threads]
        return max(below, key=lambda p: p.threads) if below else min(self.peaks, key=lambda p: p.threads, default=None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Ceiling:
        return cls(**{**data, "peaks": [Peak(**p) for p in data.get("peaks", [])]})

    def lines(self) -> list[str]:
        out = [f"{self.cpu} (family {self.generation.get('family')}, model {self.generation.get('model')}), "
               f"{self.isa}; kernels: " + ", ".join(f"{k} {v}" for k, v in self.kernels.items())]
        for p in self.peaks:
            rates = "  ".join(f"{k} {v:,.1f} G MAC/s ({v / p.clock_ghz / p.threads:.0f}/cycle/core)"
                              for k, v in p.gmacs.items())
            out.append(f"{p.threads} thread(s) at {p.clock_ghz:.2f} GHz: {rates}  read {p.read_gbs:.1f} GB/s")
        return out + ([self.note] if self.note else [])


# -- the kernels: machine code, assembled here -----------------------------------------------------------------------

def _kernels(flags: frozenset[str]) -> dict[str, tuple[str, int]]:
    """kind -> (the instruction measured, multiply-adds per loop iteration): the widest form this CPU has."""
    out = {}
    if "avx512f" in flags:
        out["fp32"] = ("vfmadd231ps zmm", CHAINS * 16)
    elif {"avx2", "fma"} <= flags:
        out["fp32"] = ("vfmadd231ps ymm", CHAINS * 8)
    if "avx512_bf16" in flags:
        out["bf16"] = ("vdpbf16ps zmm", CHAINS * 32)
    if "avx512_vnni" in flags:
        out["int8"] = ("vpdpbusd zmm", CHAINS * 64)
    elif "avx_vnni" in flags:
        out["int8"] = ("vpdpbusd ymm (VEX)", CHAINS * 32)
    elif "avx2" in flags:
        out["int8"] = ("vpmaddubsw+vpmaddwd+vpaddd ymm", 6 * 32)
    return out


def _body(kind: str, instruction: str) -> list:
    """The loop body of one kernel (iced-x86 instructions), its registers zeroed first (no denormal slow path)."""
    import iced_x86 as x

    C, R, Ins = x.Code, x.Register, x.Instruction
    if kind == "clock":
        return [Ins.create_reg_i32(C.ADD_RM64_IMM8, R.RAX, 1) for _ in range(4)]
    if kind == "read":
        load = C.VEX_VMOVDQU_YMM_YMMM256
        return ([Ins.create_reg_mem(load, getattr(R, f"YMM{i}"), x.MemoryOperand(R.RSI, displ=32 * i))
                 for i in range(8)] + [Ins.create_reg_i32(C.ADD_RM64_IMM32, R.RSI, 256)])
    zmm = "zmm" in instruction
    reg = (lambda i: getattr(R, f"ZMM{i}")) if zmm else (lambda i: getattr(R, f"YMM{i}"))
    a, b = (reg(30), reg(31)) if zmm else (reg(14), reg(15))
    if instruction.startswith("vpmaddubsw"):  # t = u8·s8 pairs (int16), t = t·1 summed to int32, acc += t
        one = reg(13)
        return [ins for i in range(6) for ins in (
            Ins.create_reg_reg_reg(C.VEX_VPMADDUBSW_YMM_YMM_YMMM256, reg(i), a, b),
            Ins.create_reg_reg_reg(C.VEX_VPMADDWD_YMM_YMM_YMMM256, reg(i), reg(i), one),
            Ins.create_reg_reg_reg(C.VEX_VPADDD_YMM_YMM_YMMM256, reg(6 + i), reg(6 + i), reg(i)))]
    code = {"vfmadd231ps zmm": C.EVEX_VFMADD231PS_ZMM_K1Z_ZMM_ZMMM512B32_ER,
            "vfmadd231ps ymm": C.VEX_VFMADD231PS_YMM_YMM_YMMM256,
            "vdpbf16ps zmm": C.EVEX_VDPBF16PS_ZMM_K1Z_ZMM_ZMMM512B32,
            "vpdpbusd zmm": C.EVEX_VPDPBUSD_ZMM_K1Z_ZMM_ZMMM512B32,
            "vpdpbusd ymm (VEX)": C.VEX_VPDPBUSD_YMM_YMM_YMMM256}[instruction]
    return [Ins.create_reg_reg_reg(code, reg(i), a, b) for i in range(CHAINS)]


def _zeroed(instruction: str) -> list:
    import iced_x86 as x

    C, R, Ins = x.Code, x.Register, x.Instruction
    if "zmm" in instruction:
        xor, regs = C.EVEX_VPXORD_ZMM_K1Z_ZMM_ZMMM512B32, [getattr(R, f"ZMM{i}") for i in [*range(CHAINS), 30, 31]]
    else:
        xor, regs = C.VEX_VPXOR_YMM_YMM_YMMM256, [getattr(R, f"YMM{i}") for i in range(16)]
    return [Ins.create_reg_reg_reg(xor, r, r, r) for r in regs]


def assemble(kind: str, instruction: str = "") -> bytes:
    """`void f(int64 iterations, void *buffer)`: the zeroed registers, then the body `iterations` times."""
    import iced_x86 as x

    C, R, Ins = x.Code, x.Register, x.Instruction
    loop = 0x1000
    body = _body(kind, instruction)
    body[0].ip = loop
    tail = [Ins.create_reg_i32(C.SUB_RM64_IMM8, R.RDI, 1), Ins.create_branch(C.JNE_REL32_64, loop),
            Ins.create(C.VEX_VZEROUPPER), Ins.create(C.RETNQ)]
    encoder = x.BlockEncoder(64)
    encoder.add_many((_zeroed(instruction) if kind not in ("clock",) else []) + body + tail)
    return encoder.encode(0x0)


class _Code:
    """Machine code in an executable page, callable through ctypes (which lets go of the GIL during the call)."""

    def __init__(self, code: bytes) -> None:
        self.page = mmap.mmap(-1, max(4096, len(code)), prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self.page.write(code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self.page))
        self.call = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p)(address)


def _on_threads(call, iterations: int, cpus: list[int], buffers: list | None = None) -> list[tuple[float, float]]:
    """Every thread, pinned to its CPU, runs `call(iterations, its buffer)` after a barrier: each (start, end)."""
    barrier, spans = threading.Barrier(len(cpus)), [(0.0, 0.0)] * len(cpus)

    def work(i: int) -> None:
        os.sched_setaffinity(0, {cpus[i]})  # this thread only (Linux: pid 0 is the calling thread)
        barrier.wait()
        start = time.perf_counter()
        call(iterations, buffers[i] if buffers else None)
        spans[i] = (start, time.perf_counter())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cpus))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return spans


def _wall(spans: list[tuple[float, float]]) -> float:
    return max(end for _, end in spans) - min(start for start, _ in spans)


def _iterations(call, cpus: list[int]) -> int:
    """Iterations that take about TARGET_S on these threads."""
    iterations = 10_000
    while (seconds := _wall(_on_threads(call, iterations, cpus))) < TARGET_S / 4:
        iterations *= 4
    return max(1, int(iterations * TARGET_S / seconds))


def _peak(threads: int, kernels: dict[str, tuple[str, int]], compiled: dict[str, _Code]) -> Peak:
    """Every kernel timed once per round, REPEATS rounds, so each kernel's tries spread over the whole probe. A core's
    units are its own: a compute peak sums each thread's best try (all threads ran at once in every round, so a
    clock that drops with more cores busy shows), and a neighbour that took one core in one round spoils that thread's
    try only. Memory is shared: bandwidth is all bytes over the best round's wall time."""
    import numpy as np

    cpus = distinct_cores(threads)
    blocks = BUFFER_MIB * 2**20 // 256
    arrays = [np.ones(blocks * 256, dtype=np.uint8) for _ in cpus]  # touched: no page faults inside the timing
    buffers = [a.ctypes.data for a in arrays]
    work = {"clock": 4, **{kind: macs for kind, (_, macs) in kernels.items()}}
    iterations = {kind: _iterations(compiled[kind].call, cpus) for kind in work}
    best = {kind: [float("inf")] * threads for kind in work}
    best_read = float("inf")
    for _ in range(REPEATS):
        for kind in work:
            spans = _on_threads(compiled[kind].call, iterations[kind], cpus)
            best[kind] = [min(b, end - start) for b, (start, end) in zip(best[kind], spans)]
        best_read = min(best_read, _wall(_on_threads(compiled["read"].call, blocks, cpus, buffers)))
    rate = {kind: sum(work[kind] * iterations[kind] / seconds for seconds in best[kind]) / 1e9 for kind in work}
    return Peak(threads, round(rate["clock"] / threads, 3), {k: round(rate[k], 2) for k in kernels},
                round(256 * blocks * threads / best_read / 1e9, 2))


def probe_hash() -> str:
    from ..core.fingerprint import source_hash

    return source_hash(Path(__file__))


def measure(thread_counts: list[int]) -> Ceiling:
    """Measure in this process (the child's side of `probe`)."""
    flags = cpu_flags()
    kernels = _kernels(flags)
    compiled = {kind: _Code(assemble(kind, instruction)) for kind, (instruction, _) in kernels.items()}
    compiled |= {"clock": _Code(assemble("clock")), "read": _Code(assemble("read", "ymm"))}
    note = ("AMX tiles are not probed: the INT8 and bf16 peaks are the vector units' (an AMX kernel can exceed them)"
            if any(f.startswith("amx") for f in flags) else "")
    return Ceiling(cpu_model(), cpu_generation(), isa_level(isa_summary()), {k: v[0] for k, v in kernels.items()},
                   [_peak(n, kernels, compiled) for n in thread_counts], note, probe_hash())


def thread_counts(up_to: int) -> list[int]:
    """1, 2, 4, … and `up_to` itself: the counts a run may use."""
    counts, n = [], 1
    while n < up_to:
        counts.append(n)
        n *= 2
    return counts + [up_to]


class CeilingError(RuntimeError):
    """The probe could not run here; the message says why (rows then carry no share of the ceiling)."""


def probe(threads: int) -> Ceiling:
    """This machine's ceiling for 1 … `threads` threads, measured in a child process (a refused instruction ends the
    child, not the caller), cached by CPU, allowed CPUs and the probe's code."""
    from ..core.cache import cached_dir, content_key

    if not {"avx2", "fma"} <= cpu_flags():
        raise CeilingError("no AVX2/FMA on this CPU (or not an x86-64 one): the ceiling probe has no kernel for it")
    counts = thread_counts(threads)
    key = content_key(cpu_model(), cpu_generation(), sorted(cpu_flags()), cpus_allowed(), counts, probe_hash())

    def build(out: Path) -> None:
        child = subprocess.run([sys.executable, "-m", __name__, "--threads", ",".join(map(str, counts)), "--json"],
                               capture_output=True, text=True, timeout=600)
        if child.returncode != 0:
            raise CeilingError(f"the ceiling probe ended with status {child.returncode}: "
                               f"{(child.stderr.strip().splitlines() or ['no message'])[-1]}")
        (out / "ceiling.json").write_text(child.stdout)

    entry = cached_dir("ceiling", key, build, {"label": f"ceiling of {cpu_model()} at {counts} threads"})
    return Ceiling.from_dict(json.loads((entry / "ceiling.json").read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2compress.measure.ceiling")
    parser.add_argument("--threads", default="1")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ceiling = measure([int(n) for n in args.threads.split(",")])
    print(json.dumps(ceiling.to_dict()) if args.json else "\n".join(ceiling.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
