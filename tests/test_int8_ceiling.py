"""investigations/int8_ceiling.py (issue 16): fp32 against INT8 on GPT-2's matmul shapes, the floor under any INT8
forward ratio on the runner. Its timings are the runner's; here only that it measures the matmuls it names, in INT8."""

import importlib.util
import subprocess
import sys

import pytest
import torch
from torch import nn

from helpers import ROOT

SCRIPT = ROOT / "investigations" / "int8_ceiling.py"


def load():
    spec = importlib.util.spec_from_file_location("int8_ceiling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_int8_matmul_it_times_computes_the_fp32_one_within_quantization_error():
    module = load()
    torch.manual_seed(0)
    linear, x = nn.Linear(64, 48), torch.randn(8, 64)
    quantized = module.int8_linear(linear)
    with torch.inference_mode():
        want, got = linear(x), quantized(x)
    assert type(quantized[0]).__module__.startswith("torch.ao.nn.quantized.dynamic")  # the INT8 kernel is timed
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    assert [row[1:] for row in module.matmuls(12, 768, 50257)] == [
        (768, 2304, 12), (768, 768, 12), (768, 3072, 12), (3072, 768, 12), (768, 50257, 1)]


def test_the_bare_gemm_it_times_is_the_exact_integer_product():
    torch.manual_seed(0)
    gemm = load().int8_gemm(32, 64, 48)
    got, (a, b) = gemm(), gemm.args
    assert got.dtype == torch.int32 and got.shape == (32, 48)
    assert torch.equal(got, (a.long() @ b.long()).int())


def test_it_prints_each_matmul_and_the_forwards_ratio_with_the_cpu():
    done = subprocess.run([sys.executable, str(SCRIPT), "--layers", "2", "--width", "32", "--vocab", "96",
                           "--tokens", "8", "--rounds", "2", "--threads", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "threads" in lines[0] and "INT8 engine" in lines[0]
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| qkv", "| attn out", "| mlp up", "| mlp down", "| lm head",
                                                     "| all of one forward"]
    assert float(rows[-1].split("**")[1]) > 0 and float(rows[-1].split("**")[3]) > 0  # fbgemm's, the bare GEMM's


def test_its_openvino_graph_holds_each_matmul_and_each_format_compresses_its_weights():
    import numpy as np
    import openvino as ov

    module = load()
    model = module.format_graph("fp32", layers=2, width=32, vocab=96, seq_len=1)
    assert len(model.outputs) == 4 * 2 + 1
    feeds = {"x32": np.ones((1, 32), np.float32), "x128": np.ones((1, 128), np.float32)}
    want = ov.Core().compile_model(model, "CPU", module.OV_RUNTIME)(feeds)
    for name in [n for n in module.OV_FORMATS if n not in ("fp32", "int8 static")]:
        compressed = module.format_graph(name, 2, 32, 96, 1)
        types = {op.get_element_type().get_type_name() for op in compressed.get_ops()
                 if op.get_type_name() == "Constant" and np.prod(op.get_shape()) >= 32 * 32}  # weights, not scales
        assert "f32" not in types and types & {"u8", "i8", "i4"}, (name, types)
        got = ov.Core().compile_model(compressed, "CPU", module.OV_RUNTIME)(feeds)
        error = 0.2 if "int4" in name else 0.02  # of the output's norm: about a step of the format, relatively
        for a, b in zip(want.values(), got.values()):
            assert 0 < np.linalg.norm(a - b) < error * np.linalg.norm(a), name


def test_with_openvino_it_prints_a_row_per_weight_format_with_the_cpu():
    done = subprocess.run([sys.executable, str(SCRIPT), "--openvino", "--layers", "2", "--width", "32", "--vocab",
                           "96", "--tokens", "1", "--rounds", "2", "--threads", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()  # after NNCF's progress bars
    assert "OpenVINO" in next(line for line in lines if "threads" in line)
    rows = [line.split(" | ")[0] for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert rows == ["| fp32", "| int8 asym", "| int8 sym", "| int4 sym g32", "| int8 static"]


def test_its_static_int8_graph_runs_int8_matmuls_on_quantized_activations():
    import numpy as np
    import openvino as ov

    module = load()
    feeds = module.matmul_inputs(32, 8, seed=9)
    want = ov.Core().compile_model(module.format_graph("fp32", 2, 32, 96, 8), "CPU", module.OV_RUNTIME)(feeds)
    compiled = ov.Core().compile_model(module.format_graph("int8 static", 2, 32, 96, 8), "CPU", module.OV_RUNTIME)
    ran = [(op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str))
           for op in compiled.get_runtime_model().get_ordered_ops()]
    assert [p for t, p in ran if t == "FullyConnected"] == ["i8"] * 9  # every matmul, in INT8, none fell back
    for a, b in zip(want.values(), compiled(feeds).values()):
        # activations quantized too: a bit coarser (relative error 5.6 % on an AVX2-only Zen 3, whose u8 x i8 kernel
        # has no VNNI; under 5 % on VNNI CPUs), never garbage
        assert 0 < np.linalg.norm(a - b) < 0.10 * np.linalg.norm(a)


def test_the_vnni_probe_measures_int8_and_fp32_peaks_per_cycle(tmp_path):
    import re
    import shutil

    from gpt2compress.build.hardware import cpu_flags

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or "avx512_vnni" not in cpu_flags():
        pytest.skip("investigations/vnni_peak.c needs a C compiler and a CPU with AVX-512 VNNI")
    binary = tmp_path / "vnni_peak"
    subprocess.run([compiler, "-O2", "-mavx512f", "-mavx512vnni", "-fopenmp",
                    str(ROOT / "investigations" / "vnni_peak.c"),
                    "-o", str(binary)], check=True, capture_output=True, timeout=120)
    out = subprocess.run([str(binary), "1", "2000000"], check=True, capture_output=True, text=True, timeout=60).stdout
    rows = [[float(x) for x in re.findall(r"(?:clock|vnni|fma)=([\d.]+)", line)] for line in out.splitlines()]
    assert len(rows) == 3 and all(len(row) == 3 for row in rows), out
    # One core's zmm VNNI does 64 MACs per instruction and its FMA 16: 2-4x as many INT8 MACs per cycle (Intel
    # issues VNNI on one port and FMA on two, Zen 4 both on two), whatever the clock. A peak is the best of the
    # three repeats: a scheduler slice lost in a few-ms run only ever lowers one.
    ghz, int8, fp32 = (max(column) for column in zip(*rows))
    assert ghz > 0.5 and 1.5 < int8 / fp32 < 6, out
