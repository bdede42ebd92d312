"""This machine's ceiling (measure/ceiling.py) and each row set against it (measure/roofline.py): the probe's
machine code is what it says, its numbers bound known workloads, the work counted per pass matches the model's own
layers, and the share of the ceiling reaches rows, summary.md and the history."""

import json
import time

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from gpt2compress.build.hardware import cpu_flags, distinct_cores
from gpt2compress.build.stages.pruning import heads_per_layer, prune_heads
from gpt2compress.cli import main
from gpt2compress.core.records import ForwardRecord, GenerateRecord, from_extra_info
from gpt2compress.history.store import RunInfo, open_store
from gpt2compress.measure import ceiling as probe_module
from gpt2compress.measure.ceiling import Ceiling, Peak, assemble, probe, thread_counts
from gpt2compress.measure.roofline import (CPU_ONLY, Work, against_ceiling, compute_of, decode_work,
                                           forward_work, token_macs)
from gpt2compress.report.ceiling_table import ceiling_table

ALL_FLAGS = frozenset({"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"})


def _mnemonics(code: bytes) -> list[str]:
    """Each decoded instruction as text, VEX-encoded forms of AVX-512 instructions marked `{vex}`."""
    import iced_x86 as x

    formatter = x.Formatter(x.FormatterSyntax.INTEL)
    vex = {getattr(x.Code, name) for name in dir(x.Code) if name.startswith("VEX_VPDPBUSD")}
    return [("{vex} " if i.code in vex else "") + formatter.format(i) for i in x.Decoder(64, code)]


@pytest.mark.parametrize("flags, kind, expected", [
    (ALL_FLAGS, "fp32", "vfmadd231ps zmm0,zmm30,zmm31"),
    (ALL_FLAGS, "int8", "vpdpbusd zmm0,zmm30,zmm31"),
    (ALL_FLAGS, "bf16", "vdpbf16ps zmm0,zmm30,zmm31"),
    (frozenset({"avx2", "fma", "avx_vnni"}), "int8", "{vex} vpdpbusd ymm0,ymm14,ymm15"),
    (frozenset({"avx2", "fma"}), "fp32", "vfmadd231ps ymm0,ymm14,ymm15"),
    (frozenset({"avx2", "fma"}), "int8", "vpmaddubsw ymm0,ymm14,ymm15"),
])
def test_each_kernel_is_the_instruction_it_is_counted_as(flags, kind, expected):
    """Decoded back, including forms this CPU lacks (never run here): the loop is 12 (or 6 triples of) independent
    chains of the named instruction, then the counter, the branch back and the return."""
    instruction, macs = probe_module._kernels(flags)[kind]
    listing = _mnemonics(assemble(kind, instruction))
    body = [line for line in listing if not line.startswith(("vpxor", "sub", "jne", "vzeroupper", "ret"))]
    assert body[0] == expected
    per_instruction = {"fp32": 16 if "zmm" in expected else 8, "bf16": 32,
                       "int8": 64 if "zmm" in expected else 32}[kind]
    multiplies = [line for line in body if not line.startswith(("vpmaddwd", "vpaddd"))]
    assert len(multiplies) * per_instruction == macs
    assert len({line.split(",")[0] for line in multiplies}) == len(multiplies)  # every chain its own accumulator
    assert listing[-4:-2] == ["sub rdi,1", listing[-3]] and listing[-3].startswith("jne")
    assert listing[-2:] == ["vzeroupper", "ret"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """This CPU's ceiling at 1 thread, measured once for the module (the child process, as the bench runs it)."""
    if not {"avx2", "fma"} <= cpu_flags():
        pytest.skip("the probe needs AVX2/FMA")
    return probe_module.measure([1])


def test_the_probe_bounds_a_matmul_and_a_streaming_read(measured):
    """A known workload never beats the peaks it is held to: torch's fp32 GEMM (one thread, large enough to be
    compute-bound) stays under the fp32 peak and reaches a fair share of it; numpy reading an array far larger than
    any cache stays under the read bandwidth."""
    peak = measured.at(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
        torch.mm(a, b)
        best = min(_timed(lambda: torch.mm(a, b)) for _ in range(5))
    finally:
        torch.set_num_threads(threads)
    gemm = 1024**3 / best / 1e9
    assert gemm <= peak.gmacs["fp32"] * 1.05
    assert gemm >= peak.gmacs["fp32"] * 0.3  # the probe is not an overcount: a real GEMM gets near it
    with pytest.raises(KeyError):
        peak.gmacs["bf16" if "avx512_bf16" not in cpu_flags() else "none"]
    big = np.ones(512 * 2**20 // 8)
    big.sum()
    read = big.nbytes / min(_timed(big.sum) for _ in range(3)) / 1e9
    assert read <= peak.read_gbs * 1.25  # a one-thread sum against the one-thread read probe
    assert 1 <= peak.clock_ghz <= 6 and peak.gmacs["int8"] > peak.gmacs["fp32"]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_the_probe_runs_in_a_child_and_is_cached_by_cpu_and_code(monkeypatch):
    if not {"avx2", "fma"} <= cpu_flags():
        pytest.skip("the probe needs AVX2/FMA")
    calls = []
    real = probe_module.subprocess.run
    monkeypatch.setattr(probe_module.subprocess, "run", lambda *a, **k: calls.append(a) or real(*a, **k))
    first = probe(1)
    assert probe(1) == first and len(calls) == 1  # the second comes from the cache
    assert first.probe == probe_module.probe_hash() and first.at(1).threads == 1
    monkeypatch.setattr(probe_module, "probe_hash", lambda: "changed-code")
    probe(1)
    assert len(calls) == 2  # a changed probe measures anew


def test_ceiling_round_trips_and_picks_the_thread_count():
    c = Ceiling("cpu", {"family": 25}, "avx2", {"fp32": "vfmadd231ps ymm"},
                [Peak(1, 3.0, {"fp32": 48.0}, 15.0), Peak(2, 2.9, {"fp32": 92.0}, 25.0)])
    assert Ceiling.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert (c.at(1).threads, c.at(2).threads, c.at(3).threads) == (1, 2, 2)
    assert thread_counts(2) == [1, 2] and thread_counts(6) == [1, 2, 4, 6] and thread_counts(1) == [1]
    assert "16/cycle/core" in c.lines()[1]


def _conv_macs_per_token(model: GPT2LMHeadModel) -> int:
    """Counted from the model's own layers: every Conv1D / Linear weight is one multiply-add per token."""
    from transformers.pytorch_utils import Conv1D

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (Conv1D, torch.nn.Linear)))


def test_the_work_of_a_pass_is_what_the_models_layers_do():
    config = GPT2Config(n_layer=3, n_embd=64, n_head=4, vocab_size=500, n_positions=64)
    model = GPT2LMHeadModel(config)
    t, b = 16, 2
    attention = config.n_layer * 2 * t * config.n_embd  # Q·Kᵀ and the sum over V: T × width each, per token
    work = forward_work(config, None, [b, t], weight_bytes=1000)
    assert work.macs == b * t * (_conv_macs_per_token(model) + attention)
    assert work.bytes == 1000 + 4 * b * t * config.vocab_size  # weights once, fp32 logits out
    prune_heads(model, {0: [0, 1], 2: [3]})
    heads = heads_per_layer(model)
    assert heads == [2, 4, 3]
    pruned = forward_work(config, heads, [b, t], weight_bytes=1000)
    attention = sum(2 * t * h * 16 for h in heads)
    assert pruned.macs == b * t * (_conv_macs_per_token(model) + attention)
    step = decode_work(config, None, 4, 10, 4, weight_bytes=1000, kv_element_bytes=2)
    assert step.macs == 4 * token_macs(config, None, 12)
    assert step.bytes == 1000 + 4 * 3 * 2 * 12 * 64 * 2 + 4 * 4 * 500


@pytest.mark.parametrize("precision, runtime, bf16, expected", [
    ("fp32", "torch", False, "fp32"), ("int8-wa", "openvino", False, "int8"),
    ("int8-w (sym) + f32 activations", "openvino", True, "fp32"), ("int8-w", "openvino", True, "bf16"),
    ("int8-w", "openvino", False, "fp32"), ("int8-w (q8_0)", "llamacpp", False, "int8"),
    ("bf16", "torch", True, "bf16"), ("bf16", "torch", False, "fp32"),
    ("int8-w (dynamic activations)", "onnxruntime", False, "int8"), ("int4-w", "torch", False, "fp32"),
])
def test_each_variant_is_held_to_the_unit_it_computes_on(precision, runtime, bf16, expected):
    assert compute_of(precision, runtime, bf16) == expected


def _ceiling() -> Ceiling:
    return Ceiling("cpu", {}, "avx2", {"fp32": "vfmadd231ps ymm", "int8": "vpmaddubsw+vpmaddwd+vpaddd ymm"},
                   [Peak(2, 3.0, {"fp32": 100.0, "int8": 200.0}, 20.0)])


def test_a_row_carries_its_share_of_the_ceiling_through_json():
    record = ForwardRecord(variant="ov-int8-static", device="cpu", precision="int8-wa", runtime="openvino",
                           batch_shape=[1, 128], latency_samples_ms=[20.0, 20.0, 20.0])
    against_ceiling(record, Work(macs=2e9, bytes=1e8), _ceiling(), threads=2)
    assert record.roofline["compute"] == "int8" and record.roofline["peak_gmacs"] == 200.0
    # int8: 2e9 / 200e9 = 10 ms of compute; 1e8 / 20e9 = 5 ms of reading: compute binds, floor 10 ms, 20 ms measured
    assert (record.floor_ms, record.binding, record.ceiling_share) == (pytest.approx(10.0), "int8 compute", 0.5)
    assert (record.achieved_gmacs, record.achieved_gbs) == (pytest.approx(100.0), pytest.approx(5.0))
    info = json.loads(json.dumps(record.to_extra_info()))
    assert info["ceiling_share"] == 0.5 and info["binding"] == "int8 compute"
    back = from_extra_info(info, "row")
    assert back.roofline == record.roofline and back.ceiling_share == 0.5
    step = GenerateRecord(variant="fp32", device="cpu", precision="fp32", batch_size=2, decode_tokens_per_s=100.0)
    against_ceiling(step, Work(macs=1e6, bytes=4e8), _ceiling(), threads=2)
    assert (step.binding, step.floor_ms, step.ceiling_share) == ("memory", pytest.approx(20.0), pytest.approx(1.0))


def test_a_row_without_a_ceiling_says_why():
    gpu = ForwardRecord(variant="fp32", device="cuda")
    against_ceiling(gpu, Work(1, 1), _ceiling(), threads=2)
    cpu = ForwardRecord(variant="fp32", device="cpu")
    against_ceiling(cpu, Work(1, 1), "the ceiling probe could not run here: no AVX2", threads=2)
    assert gpu.missing["ceiling_share"] == CPU_ONLY and "no AVX2" in cpu.missing["ceiling_share"]
    assert gpu.ceiling_share is None and ceiling_table([gpu, cpu], "latency") == []


def test_summary_names_what_binds_the_fastest_variant_and_the_fastest_int8_one():
    rows = []
    for variant, precision, ms in (("fp32", "fp32", 40.0), ("ov-int8-weights", "int8-w", 15.0),
                                   ("ov-int8-static", "int8-wa", 20.0)):
        r = ForwardRecord(variant=variant, device="cpu", precision=precision, runtime="openvino",
                          batch_shape=[1, 128], latency_samples_ms=[ms] * 3)
        against_ceiling(r, Work(macs=1e9, bytes=1.2e8), _ceiling(), threads=2)
        rows.append(r)
    lines = ceiling_table(rows, "latency")
    assert "| ov-int8-static | int8 (vpmaddubsw+vpmaddwd+vpaddd ymm) | 200.0 | 20.0 |" in "\n".join(lines)
    floor = [line for line in lines if line.startswith("- b1 × 128")]
    assert floor[0].startswith("- b1 × 128: our fastest, ov-int8-weights, runs at 67 %")  # 10 ms floor / 15 ms
    assert floor[0].endswith("fp32 compute binds")
    assert floor[1].startswith("- b1 × 128: our fastest INT8, ov-int8-static, runs at 30 %")  # 6 ms of reading / 20 ms
    assert floor[1].endswith("memory binds")


def test_the_history_keeps_each_runs_ceiling_with_its_runner_class(location):
    store = open_store(location)
    rows = [ForwardRecord(variant="fp32", device="cpu", batch_shape=[1, 8], latency_samples_ms=[1.0])]
    machine = {"cpu": {"brand_raw": "AMD EPYC", "family": 25, "model": 1},
               "gpt2compress": {"cpu_isa": ["avx2"], "threads": 2, "ceiling": _ceiling().to_dict()}}
    store.record(RunInfo("cpu-x", "a" * 40, [], "refs/heads/main", None, machine), rows)
    [(runner, _, kept, source)] = store.ceilings("cpu-x")
    assert (runner, Ceiling.from_dict(kept), source.startswith("run ")) == ("cpu-x", _ceiling(), True)
    assert store.ceilings("other") == []


def test_cli_probes_records_and_lists_the_ceiling(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(probe_module, "probe", lambda threads: _ceiling())
    history = str(tmp_path / "h.sqlite")
    assert main(["ceiling", "--threads", "2", "--record", "--history", history, "--runner-class", "cpu-y"]) == 0
    assert "recorded for runner class cpu-y" in capsys.readouterr().out
    assert main(["ceiling", "--list", "--history", history]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("cpu-y — ") and "2 thread(s) at 3.00 GHz: fp32 100.0 G MAC/s" in listed


def test_the_default_thread_count_is_the_physical_cores_allowed():
    from gpt2compress.cli.ceiling import _physical_cores
    from gpt2compress.build.hardware import cpus_allowed

    n = _physical_cores(cpus_allowed())
    assert len(distinct_cores(n)) == n
