"""The CUDA path without a GPU: energy sampling on a fake power source, the synchronization guard,
mixed precision, attention implementations, bitsandbytes (on CPU when installed) and GPU-aware reports."""

import importlib.util
import json
import time

import pytest
import torch

from gpt2compress.measure import timing as metrics
from gpt2compress.core.budgets import Budget
from gpt2compress.core.records import ForwardRecord
from gpt2compress.measure.energy import PowerSampler, energy_per_sample, gpu_power_source
from gpt2compress.runtimes.pytorch import load_model, save_model
from gpt2compress.report.stage_charts import plot
from gpt2compress.history.runs import load_run
from gpt2compress.build.stages import StageNotApplicable, check_chain
from gpt2compress.build.stages.attention import AttentionConfig, flash_attention_2, set_attention
from gpt2compress.build.stages.precision import PrecisionConfig, mixed_precision

from helpers import random_gpt2


class Ramp:
    """A fake power sensor: watts rise linearly with time, so the trapezoid integral is exact."""

    def __init__(self, base=40.0, slope=100.0):
        self.t0, self.base, self.slope = time.perf_counter(), base, slope

    def __call__(self) -> float:
        return self.base + self.slope * (time.perf_counter() - self.t0)


def test_power_sampler_integrates_a_known_power_curve():
    source = Ramp()
    with PowerSampler(source, interval_s=0.01) as sampler:
        time.sleep(0.2)
    (t0, w0), (t1, w1) = sampler.readings[0], sampler.readings[-1]
    assert len(sampler.readings) >= 5
    assert sampler.joules == pytest.approx((t1 - t0) * (w0 + w1) / 2, rel=1e-3)  # linear: exact up to clock reads
    assert w0 <= sampler.mean_watts <= w1


def test_energy_per_sample_divides_by_every_sample_of_every_call():
    calls = []
    result = energy_per_sample(lambda: calls.append(time.sleep(0.01)), lambda: 50.0, samples_per_call=4,
                               min_seconds=0.1, interval_s=0.01)
    assert result["mean_power_w"] == pytest.approx(50.0)
    assert result["energy_calls"] == len(calls) - 1  # the warm-up call is not counted
    expected_mj = 50.0 * result["energy_seconds"] / (result["energy_calls"] * 4) * 1e3
    assert result["energy_per_sample_mj"] == pytest.approx(expected_mj)


def test_no_gpu_means_no_energy_source():
    assert gpu_power_source("cpu") is None


def test_timer_guard_flags_a_timer_faster_than_the_gpu():
    reason = metrics.unsynchronized_timer(wall_ms=0.05, gpu_ms=3.0)
    assert reason and "synchronize" in reason
    assert metrics.unsynchronized_timer(wall_ms=3.1, gpu_ms=3.0) is None


def test_forward_callable_synchronizes_on_cuda(monkeypatch, model):
    events = []
    monkeypatch.setattr(metrics, "model_device", lambda m: torch.device("cuda"))
    monkeypatch.setattr(metrics, "_move", lambda batch, device: batch)  # no GPU here: keep tensors on CPU
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: events.append("sync"))
    wrapped = model.forward
    monkeypatch.setattr(model, "forward", lambda **kw: (events.append("forward"), wrapped(**kw))[1])
    forward = metrics.forward_callable(model, {"input_ids": torch.ones(1, 4, dtype=torch.long)})
    forward()
    assert events == ["forward", "sync"]  # the clock is read only after the kernels finished


def test_mixed_precision_keeps_fp32_weights_and_survives_save_load(model, tmp_path):
    ids = torch.randint(0, 97, (2, 12))
    reference = model(ids).logits
    mixed = mixed_precision(model, PrecisionConfig("bf16"))  # CPU autocast supports bf16
    assert all(p.dtype == torch.float32 for p in mixed.parameters())
    out = mixed(ids).logits
    assert out.dtype == torch.bfloat16 and not torch.equal(out.float(), reference)
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.05)
    loaded = load_model(save_model(mixed, tmp_path / "m"))
    assert torch.equal(loaded(ids).logits, out)


def test_eager_and_sdpa_attention_agree_and_the_choice_is_saved(model, tmp_path):
    ids = torch.randint(0, 97, (2, 12))
    sdpa = model(ids).logits
    eager = set_attention(model, AttentionConfig("eager"))
    torch.testing.assert_close(eager(ids).logits, sdpa, atol=1e-5, rtol=1e-5)
    loaded = load_model(save_model(eager, tmp_path / "m"))
    assert loaded.config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="choose one of"):
        set_attention(model, AttentionConfig("flash"))


def test_cuda_only_stages_skip_with_a_reason_on_cpu(monkeypatch):
    for chain in [("fp16",), ("mixed_fp16",), ("bnb_nf4",), ("attn_flash2",)]:
        with pytest.raises(StageNotApplicable, match=f"stage {chain[-1]!r} does not apply to device 'cpu'"):
            check_chain(chain, "cpu")
    assert "CUDA" in flash_attention_2("cpu")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "bitsandbytes" else real(name))
    with pytest.raises(StageNotApplicable, match=r"pip install -e '\.\[gpu\]'"):
        check_chain(("bnb_int8",), "cuda")


def test_energy_efficiency_budget_fails_a_hungrier_variant():
    budget = Budget({"min_energy_efficiency": 1.2})

    def variant(energy_mj: float | None) -> ForwardRecord:
        record = ForwardRecord(variant="fp16", device="cuda", energy_per_sample_mj=energy_mj)
        if energy_mj is None:
            record.missing["energy_per_sample"] = "no GPU power sensor readable (NVML or nvidia-smi)"
        return record.against(ForwardRecord(variant="fp32", device="cuda", energy_per_sample_mj=6.0))

    assert budget.violations(variant(4.0)) == []  # efficiency 6 / 4 = 1.5
    assert "min_energy_efficiency: measured 0.75" in budget.violations(variant(8.0))[0]
    assert budget.violations(variant(None)) == [  # no sensor: a budget on energy cannot pass
        "min_energy_efficiency: energy_per_sample was not measured (no GPU power sensor readable (NVML or "
        "nvidia-smi)); a budget on it cannot pass"]


def _row(device, variant, energy=None, ms=10.0):
    info = {"kind": "forward", "variant": variant, "device": device, "perplexity": 100.0, "median_ms": ms,
            "tokens_per_s": 128 / ms * 1e3, "size_on_disk_bytes": 2**20, "peak_memory_forward_bytes": 2**21,
            "latency_samples_ms": [ms, ms * 1.1, ms * 0.9]}
    if device == "cuda":
        info.update(peak_memory_reserved_bytes=2**22)
        if energy:
            info.update(energy_per_sample_mj=energy, mean_power_w=60.0)
    return {"name": f"test_forward[{variant}-{device}]", "extra_info": info, "stats": {}}


def test_a_mixed_cpu_and_gpu_run_charts_energy_only_where_measured(tmp_path):
    rows = [_row("cpu", "fp32"), _row("cpu", "pruned"), _row("cuda", "fp32", energy=8.0, ms=2.0),
            _row("cuda", "fp16", energy=4.0, ms=1.0)]
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": rows}))
    written = {p.name for p in plot([load_run(path)], tmp_path / "charts")}
    assert {"latency.png", "energy.png", "summary.md"} <= written
    summary = (tmp_path / "charts" / "summary.md").read_text()
    assert "## Forward: run — cpu" in summary and "## Forward: run — cuda" in summary
    assert "| fp16 | 2 | 4 | 60.0 | 4 | 2 |" in summary  # energy efficiency = 8 mJ / 4 mJ
    cpu_only = tmp_path / "cpu.json"
    cpu_only.write_text(json.dumps({"machine_info": {}, "benchmarks": rows[:2]}))
    assert "energy.png" not in {p.name for p in plot([load_run(cpu_only)], tmp_path / "cpu-charts")}


bnb = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                         reason="bitsandbytes not installed (pip install -e '.[gpu]')")


@bnb
@pytest.mark.parametrize("mode, layer", [("int8", "Linear8bitLt"), ("nf4", "Linear4bit")])
def test_bitsandbytes_quantizes_saves_and_reloads(mode, layer, tmp_path):
    from gpt2compress.build.stages.bnb import BnbConfig, load_bnb, quantize_bnb

    model = random_gpt2(n_embd=64, n_head=4)
    ids = torch.randint(0, 97, (1, 12))
    reference = model(ids).logits
    quantized = quantize_bnb(model, BnbConfig(mode, device="cpu"))  # bitsandbytes has CPU kernels too
    assert type(quantized.transformer.h[0].attn.c_attn).__name__ == layer
    out = quantized(ids).logits.float()
    assert 0 < (out - reference).abs().max() < 0.5
    quantized.save_pretrained(tmp_path / "q")
    assert torch.equal(load_bnb(tmp_path / "q", "cpu")(ids).logits.float(), out)


@bnb
def test_bitsandbytes_refuses_a_pruned_model(model):
    from gpt2compress.build.stages.bnb import BnbConfig, quantize_bnb
    from gpt2compress.build.stages.pruning import prune_heads

    with pytest.raises(StageNotApplicable, match="pruned_heads"):
        quantize_bnb(prune_heads(model, {0: [1]}), BnbConfig("nf4", device="cpu"))


def test_nf4_config_is_double_quantized_with_fp16_compute():
    from gpt2compress.build.stages.bnb import BnbConfig, quantization_config

    config = quantization_config(BnbConfig("nf4"))
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.float16
    assert quantization_config(BnbConfig("int8")).load_in_8bit
