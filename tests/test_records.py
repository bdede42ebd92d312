"""Typed records: a round trip through pytest-benchmark's JSON keeps every field, ratios come from the kept
reference rounds, and a previous release's JSON is read (or a foreign one refused) with a clear message."""

import json

import pytest

from gpt2compress.core.metrics import METRICS, pair_ratios, ratio
from gpt2compress.cli import main
from gpt2compress.core.records import ForwardRecord, GenerateRecord, RecordError, from_extra_info
from gpt2compress.history.runs import load_run

from helpers import ROOT

V1 = ROOT / "tests" / "data" / "previous-release.json"  # written by the release before typed records (80e7d39)


def forward(samples, **fields) -> ForwardRecord:
    return ForwardRecord(variant="x", device="cpu", batch_shape=[1, 128], latency_samples_ms=samples, **fields)


def test_paired_latency_ratio_is_the_median_of_per_pair_ratios():
    """Load that doubles both sides of pairs 3-4 leaves the paired ratio at 0.5; the ratio of medians moves."""
    variant = forward([5.0, 5.0, 10.0, 10.0, 5.0], size_on_disk_bytes=100)
    reference = forward([10.0, 10.0, 20.0, 20.0, 10.0], size_on_disk_bytes=400)
    variant.against(reference)
    assert variant.ratios["latency"] == pytest.approx(0.5) and variant.ratios["tokens_per_s"] == pytest.approx(2.0)
    assert variant.ratios["size"] == pytest.approx(0.25)
    assert pair_ratios([1.0, 2.0], [1.0]) == []  # unpaired rounds are not paired by accident
    unpaired = ratio(METRICS["latency"], forward([5.0]), forward([10.0, 30.0]))
    assert unpaired == pytest.approx(5.0 / 20.0)  # then: the ratio of the medians


def test_a_record_round_trips_and_its_ratios_are_derived_again():
    record = forward([5.0, 6.0], perplexity=12.0, peak_memory_forward_bytes=3 * 2**20, extra={"someone": "else"})
    record.against(forward([10.0, 12.0], perplexity=10.0))
    info = json.loads(json.dumps(record.to_extra_info()))
    assert info["schema"] == 2 and info["kind"] == "forward" and info["median_ms"] == pytest.approx(5.5)
    assert info["someone"] == "else" and info["peak_memory_mb"] == pytest.approx(3.0)
    back = from_extra_info(info, "test")
    assert back == record
    info["ratios"]["latency"] = 123.0  # a stale or edited ratio is not believed
    assert from_extra_info(info, "test").ratios["latency"] == pytest.approx(0.5)


def test_generate_pairs_per_round_ttft_and_decode_rate():
    variant = GenerateRecord(variant="x", device="cpu", ttft_samples_ms=[2.0, 4.0, 2.0], ttft_ms=2.0,
                             decode_tokens_per_s_samples=[300.0, 150.0, 300.0], decode_tokens_per_s=250.0,
                             decode_p99_ms=3.0)
    reference = GenerateRecord(variant="fp32", device="cpu", ttft_samples_ms=[4.0, 8.0, 4.0], ttft_ms=4.0,
                               decode_tokens_per_s_samples=[100.0, 50.0, 100.0], decode_tokens_per_s=83.0,
                               decode_p99_ms=6.0)
    variant.against(reference)
    assert variant.ratios == pytest.approx({"ttft": 0.5, "decode_tokens_per_s": 3.0, "decode_p99": 0.5})
    assert variant.where() == "generate/cpu/x-b1"


def test_the_previous_release_json_is_read_with_its_ratios_recomputed():
    run = load_run(V1)
    assert {r.kind for r in run.records} == {"forward", "generate", "train"}
    int8 = run.record("cpu", "int8-scratch")
    fp32 = run.record("cpu", "fp32")
    assert int8.ratios["perplexity"] == pytest.approx(int8.perplexity / fp32.perplexity)
    assert int8.ratios["latency"] == pytest.approx(int8.median_ms / fp32.median_ms)  # unpaired in that release
    eager = run.record("cpu", "fp32-eager", "train")
    assert eager.ratios["train_tokens_per_s"] > 0


def test_compare_reads_the_previous_release_against_itself(capsys):
    assert main(["compare", str(V1), str(V1)]) == 0
    assert "0 regression(s)" in capsys.readouterr().out


@pytest.mark.parametrize("edit,message", [
    (lambda info: info.update(schema=99), "written with result schema 99, newer than this gpt2compress reads"),
    (lambda info: info.update(schema=2, kind="latency"), "unknown result kind 'latency'; known kinds: forward"),
    (lambda info: info.update(device=""), "a forward row without device"),
])
def test_a_foreign_row_is_refused_naming_the_file_and_what_is_wrong(tmp_path, capsys, edit, message):
    data = json.loads(V1.read_text())
    edit(data["benchmarks"][0]["extra_info"])
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=message):
        load_run(path)
    assert main(["plot", str(path), "--out", str(tmp_path / "charts")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "test_forward[fp32-cpu]" in err


def test_a_missing_json_points_at_its_journal(tmp_path):
    (tmp_path / "results.jsonl").write_text(json.dumps({"type": "session", "machine_info": {}}) + "\n")
    with pytest.raises(ValueError, match="journal .*results.jsonl holds every row measured before that"):
        load_run(tmp_path / "results.json")


def test_a_journal_cut_short_keeps_the_rows_before_the_cut(tmp_path):
    record = forward([5.0, 6.0], perplexity=12.0)
    lines = [json.dumps({"type": "session", "machine_info": {"node": "n"}}),
             json.dumps({"type": "record", "record": record.to_extra_info()}), '{"type": "rec']
    (tmp_path / "r.jsonl").write_text("\n".join(lines))
    run = load_run(tmp_path / "r.jsonl")
    assert [r.variant for r in run.records] == ["x"] and run.machine == {"node": "n"}
