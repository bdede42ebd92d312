"""--traces and --memray-captures leave one trace / capture per stage, named by stage; OpenVINO stages their per-layer
counters."""

import json
from types import SimpleNamespace

from gpt2compress.kinds import forward
from gpt2compress.measure import pairing as measure
from gpt2compress.measure import profiling
from gpt2compress.core.budgets import Budget
from gpt2compress.core.records import ForwardRecord

from helpers import run_bench


def test_profile_and_memray_outputs(tmp_path, local_checkpoint):
    budgets = tmp_path / "open.toml"
    budgets.write_text("version = 1\n")
    run = run_bench(local_checkpoint, tmp_path / "r.json", "--stages", "fp32,int8-scratch,ov-int8-static",
                    "--budgets", str(budgets), "--traces", str(tmp_path / "traces"),
                    "--memray-captures", str(tmp_path / "mem"))
    assert run.returncode == 0, run.stdout[-3000:]
    for stage in ("fp32", "int8-scratch"):
        trace = json.loads((tmp_path / "traces" / f"cpu-{stage}.trace.json").read_text())
        assert any(e.get("name", "").startswith("aten::") for e in trace["traceEvents"])
        assert (tmp_path / "mem" / f"cpu-{stage}-build.bin").stat().st_size > 0
        assert "<html" in (tmp_path / "mem" / f"cpu-{stage}-build.html").read_text()[:2000].lower()
    assert list((tmp_path / "traces" / "tensorboard").glob("*.pt.trace.json"))
    assert "aten::" in (tmp_path / "traces" / "cpu-int8-scratch.ops.md").read_text()
    layers = json.loads((tmp_path / "traces" / "cpu-ov-int8-static.ov-layers.json").read_text())
    assert layers and all(row["ms_per_forward"] >= 0 for row in layers)
    assert any("i8" in row["kernel"].lower() for row in layers if row["layer_type"].startswith("FullyConnected"))
    assert "| FullyConnected" in (tmp_path / "traces" / "cpu-ov-int8-static.ov-layers.md").read_text()


def test_a_profile_that_fails_keeps_the_measured_row_and_fails_the_case(monkeypatch, tmp_path):
    def broken(*args):
        raise RuntimeError("the profiler broke")

    measured = ForwardRecord(variant="x", device="cpu")
    monkeypatch.setattr(forward, "forward_record", lambda *args: measured)
    monkeypatch.setattr(profiling, "profile_forward", broken)
    record = measure.measure_case("forward", SimpleNamespace(name="x"), SimpleNamespace(device="cpu"),
                                  SimpleNamespace(inputs=None), None, {"profile": tmp_path})
    assert record is measured
    assert Budget({}).violations(record) == ["--traces failed after the measurement: RuntimeError: the profiler broke"]
