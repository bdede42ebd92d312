"""How much faster this CPU multiplies in INT8 than in fp32, on the matmuls of one GPT-2 forward (issue 16): the
floor under any INT8 variant's forward ratio to fp32 on this runner, whichever engine runs it.

    python investigations/int8_ceiling.py [--layers 12] [--width 768] [--vocab 50257] [--tokens 128] [--threads 2]

A forward at b1 × 128 with full logits is almost all matmuls (a block's four, and the LM head: 98 % of PyTorch
fp32's time on an AVX2 EPYC). Each is timed alone: fp32 through `torch.nn.Linear` against INT8 through fbgemm,
the x86 INT8 GEMM that PyTorch ships (`quantize_dynamic`: s8 weights, u8 activations quantized per call), and
against the bare INT8 GEMM of oneDNN (`torch._int_mm`, s8 x s8 -> s32: no quantizing, no epilogue), rounds
interleaved. The total weighs a block's matmuls by the layer count; its ratio is the best an INT8 forward can do here
with these kernels. The targets of issue 16 assume more (≤ 0.35× on AVX2): on a CPU whose INT8 GEMM is not much
faster than its fp32 one, this says so in numbers.

    python investigations/int8_ceiling.py --openvino --tokens 1

The same matmuls in OpenVINO's CPU kernels instead, all of one forward in one graph (each layer its own weights, so a
b1 decode step reads them from memory as it does in a model), per NNCF weight format: fp32, INT8 asymmetric (NNCF's
default), INT8 symmetric, INT4 symmetric in groups of 32, and INT8 weights and activations (`nncf.quantize`, the
u8 x i8 GEMMs ov-int8-static runs). With `--tokens 1` that is the floor under an OpenVINO variant's decode step, to
set beside a peer engine's whole step (llama.cpp's, in the bench's generate rows); with `--tokens 128`, the
"int8 static" row is the floor under ov-int8-static's forward, and its G MAC/s, set beside the CPU's INT8 peak
(`investigations/vnni_peak.c` measures it), says how far OpenVINO's kernels are from the hardware at these shapes.
"""

from __future__ import annotations

import argparse
import copy
import functools
import logging
import statistics
import time
import warnings
from typing import Callable

import torch
from torch import nn

from gpt2compress.build.hardware import cpu_model, isa_summary
from gpt2compress.build.stages.openvino import RUNTIME


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_medians(kernels: dict[str, Callable[[], object]], rounds: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds per kernel, the kernels taking turns each round so a slow moment of the machine hits each;
    the warm-up calls pack weights and allocate."""
    for _ in range(warmup):
        for run in kernels.values():
            run()
    times: dict[str, list[float]] = {key: [] for key in kernels}
    for _ in range(rounds):
        for key, run in kernels.items():
            times[key].append(seconds(run))
    return {key: statistics.median(t) for key, t in times.items()}


def int8_linear(linear: nn.Linear) -> nn.Module:
    with warnings.catch_warnings():  # torch.ao's eager quantization is deprecated in favour of torchao's
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8)


def int8_gemm(m: int, k: int, n: int) -> functools.partial:
    """The bare INT8 GEMM, s8 x s8 -> s32 through `torch._int_mm` (oneDNN's VNNI/AMX kernels on x86), on random
    operands quantized beforehand: no activation quantizing, no rescaling epilogue. What a fused INT8 matmul could
    cost at best with these kernels, and the G MAC/s to set beside the CPU's peak (investigations/vnni_peak.c)."""
    a = torch.randint(-127, 128, (m, k), dtype=torch.int8)
    b = torch.randint(-127, 128, (n, k), dtype=torch.int8).t()  # [k, n], column-major as a linear's weight is
    return functools.partial(torch._int_mm, a, b)


def matmuls(layers: int, width: int, vocab: int) -> list[tuple[str, int, int, int]]:
    """(name, in, out, how many per forward) for GPT-2's matmuls."""
    return [("qkv", width, 3 * width, layers), ("attn out", width, width, layers),
            ("mlp up", width, 4 * width, layers), ("mlp down", 4 * width, width, layers), ("lm head", width, vocab, 1)]


def ceiling(layers: int, width: int, vocab: int, seq_len: int, rounds: int) -> list[dict]:
    """Per matmul: fp32 and INT8 seconds (median of interleaved rounds) and how many run per forward."""
    rows = []
    with torch.inference_mode():
        for name, k, n, count in matmuls(layers, width, vocab):
            linear, x = nn.Linear(k, n), torch.randn(seq_len, k)
            quantized, gemm = int8_linear(copy.deepcopy(linear)), int8_gemm(seq_len, k, n)
            kernels = {"fp32_s": lambda: linear(x), "int8_s": lambda: quantized(x), "gemm_s": gemm}
            rows.append({"matmul": name, "shape": (seq_len, k, n), "count": count,
                         **interleaved_medians(kernels, rounds)})
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = ["| matmul | m × k × n | per forward | fp32 ms (GFLOP/s) | INT8 ms (GOP/s) | INT8 / fp32 "
             "| INT8 GEMM alone, ms (G MAC/s) | GEMM / fp32 |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, k, n = r["shape"]
        macs = m * k * n / 1e9
        lines.append(f"| {r['matmul']} | {m} × {k} × {n} | {r['count']} | {r['fp32_s'] * 1e3:.2f} "
                     f"({2 * macs / r['fp32_s']:.0f}) | {r['int8_s'] * 1e3:.2f} ({2 * macs / r['int8_s']:.0f}) | "
                     f"{r['int8_s'] / r['fp32_s']:.2f} | {r['gemm_s'] * 1e3:.2f} ({macs / r['gemm_s']:.0f}) | "
                     f"{r['gemm_s'] / r['fp32_s']:.2f} |")
    fp32, int8, gemm = (sum(r[key] * r["count"] for r in rows) for key in ("fp32_s", "int8_s", "gemm_s"))
    lines.append(f"| all of one forward | | | {fp32 * 1e3:.0f} | {int8 * 1e3:.0f} | **{int8 / fp32:.2f}** "
                 f"| {gemm * 1e3:.0f} | **{gemm / fp32:.2f}** |")
    return lines


OV_RUNTIME = {**RUNTIME, "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}  # the bench's OV runtime, as f32act runs it


def matmul_graph(layers: int, width: int, vocab: int, seq_len: int):
    """Every matmul of one forward as an OpenVINO model: one input per inner width, one output per matmul."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    inputs = {k: ops.parameter([seq_len, k], np.float32, name=f"x{k}") for k in (width, 4 * width)}
    outputs = [ops.matmul(inputs[k], ops.constant((rng.standard_normal((n, k)) * 0.02).astype(np.float32)), False,
                          True)
               for _, k, n, count in matmuls(layers, width, vocab) for _ in range(count)]
    return ov.Model(outputs, list(inputs.values()), "matmuls")


def matmul_inputs(width: int, seq_len: int, seed: int = 1) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {f"x{k}": rng.standard_normal((seq_len, k)).astype(np.float32) for k in (width, 4 * width)}


def weights_only(mode: str, **options) -> Callable:
    """An NNCF weight-compression format: weights stored in `mode`, activations stay f32."""
    def compress(model, width: int, seq_len: int):
        import nncf

        return nncf.compress_weights(model, mode=getattr(nncf.CompressWeightsMode, mode), **options)
    return compress


def static_int8(model, width: int, seq_len: int):
    """Weights and activations INT8 (`nncf.quantize`, calibrated on random inputs): the CPU plugin then runs the
    u8 x i8 GEMMs ov-int8-static runs."""
    import nncf

    calibration = nncf.Dataset([matmul_inputs(width, seq_len, seed) for seed in range(4)])
    return nncf.quantize(model, calibration, subset_size=4, fast_bias_correction=True)


OV_FORMATS: dict[str, Callable] = {
    "fp32": lambda model, width, seq_len: model, "int8 asym": weights_only("INT8_ASYM"),
    "int8 sym": weights_only("INT8_SYM"),
    "int4 sym g32": weights_only("INT4_SYM", group_size=32, ratio=1.0, all_layers=True),
    "int8 static": static_int8}


def format_graph(name: str, layers: int, width: int, vocab: int, seq_len: int):
    """`matmul_graph` in one of `OV_FORMATS`."""
    return OV_FORMATS[name](matmul_graph(layers, width, vocab, seq_len), width, seq_len)


def openvino_formats(layers: int, width: int, vocab: int, seq_len: int, threads: int, rounds: int) -> dict:
    """Per weight format: seconds for all the matmuls of one forward (median of interleaved rounds)."""
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)  # its per-model statistics table would interleave with ours on stdout
    core, requests = ov.Core(), {}
    for name in OV_FORMATS:
        compiled = core.compile_model(format_graph(name, layers, width, vocab, seq_len), "CPU",
                                      {**OV_RUNTIME, "INFERENCE_NUM_THREADS": str(threads)})
        requests[name] = compiled.create_infer_request()
    feeds = matmul_inputs(width, seq_len)
    return interleaved_medians({name: functools.partial(request.infer, feeds) for name, request in requests.items()},
                               rounds)


def openvino_table(formats: dict[str, float], macs: int) -> list[str]:
    lines = ["| weights | all matmuls of one forward, ms (G MAC/s) | ×fp32 |", "|---|---|---|"]
    return lines + [f"| {name} | {s * 1e3:.2f} ({macs / s / 1e9:.0f}) | {s / formats['fp32']:.2f} |"
                    for name, s in formats.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--tokens", type=int, default=128, help="rows of each matmul: the tokens of one forward")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--openvino", action="store_true", help="OpenVINO's kernels per NNCF weight format")
    args = parser.parse_args(argv)
    if args.openvino:
        import openvino

        formats = openvino_formats(args.layers, args.width, args.vocab, args.tokens, args.threads, args.rounds)
        print(f"{cpu_model()}: {', '.join(isa_summary())}; {args.threads} threads, {args.tokens} tokens, "
              f"OpenVINO {openvino.__version__}")
        macs = args.tokens * sum(k * n * count for _, k, n, count in matmuls(args.layers, args.width, args.vocab))
        print("\n".join(openvino_table(formats, macs)))
        return 0
    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
    rows = ceiling(args.layers, args.width, args.vocab, args.tokens, args.rounds)
    print(f"{cpu_model()}: {', '.join(isa_summary())}; {args.threads} threads, torch {torch.__version__}, "
          f"INT8 engine {torch.backends.quantized.engine}")
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
