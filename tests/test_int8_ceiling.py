"""bench/int8_ceiling.py (issue 16): fp32 against INT8 on GPT-2's matmul shapes, the floor under any INT8 forward
ratio on the runner. Its timings are the runner's; here only that it measures the matmuls it names, in INT8."""

import importlib.util
import subprocess
import sys

import torch
from torch import nn

from helpers import ROOT

SCRIPT = ROOT / "bench" / "int8_ceiling.py"


def test_the_int8_matmul_it_times_computes_the_fp32_one_within_quantization_error():
    spec = importlib.util.spec_from_file_location("int8_ceiling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    linear, x = nn.Linear(64, 48), torch.randn(8, 64)
    quantized = module.int8_linear(linear)
    with torch.inference_mode():
        want, got = linear(x), quantized(x)
    assert type(quantized[0]).__module__.startswith("torch.ao.nn.quantized.dynamic")  # the INT8 kernel is timed
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    assert [row[1:] for row in module.matmuls(12, 768, 50257)] == [
        (768, 2304, 12), (768, 768, 12), (768, 3072, 12), (3072, 768, 12), (768, 50257, 1)]


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
    assert float(rows[-1].split("**")[1]) > 0
