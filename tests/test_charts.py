"""Charts and summary tables read records: a bar panel switches to a log axis only when one value would flatten
the others, axes carry the catalog's labels, and every × in a table is the record's own ratio (paired rounds),
not a division of medians done by the report."""

from types import SimpleNamespace

import pytest

from gpt2compress.report import charts
from gpt2compress.core.metrics import METRICS
from gpt2compress.report.stage_charts import summary_markdown
from gpt2compress.core.records import ClassifyRecord, ForwardRecord, GenerateRecord, TrainRecord
from gpt2compress.history.runs import Run, describe_machine, measured_on
from gpt2compress.report.throughput_pages import generate_charts, train_charts

# Paired rounds whose per-pair ratios have median 2 while their medians' ratio is 4 / 3: a table showing "1.33"
# divided the medians itself instead of reading `record.ratios`.
VARIANT_ROUNDS, REFERENCE_ROUNDS = [2.0, 4.0, 9.0], [1.0, 4.0, 3.0]


@pytest.fixture
def axes_scale(monkeypatch):
    seen = {}
    monkeypatch.setattr(charts, "save", lambda fig, out, name: seen.update(
        {name: fig.axes[0].get_ylabel()}, scale=fig.axes[0].get_yscale(), label=fig.axes[0].get_ylabel())
        or out / f"{name}.png")
    return seen


@pytest.mark.parametrize("values, scale", [({"fp32": 500.0, "bf16 emulated": 24_000.0}, "log"),
                                           ({"fp32": 500.0, "int8": 390.0, "b8": 3_400.0}, "linear")])
def test_log_axis_only_for_values_spanning_more_than_the_limit(values, scale, axes_scale, tmp_path):
    run = SimpleNamespace(devices=["cpu"], label="run", machine={})
    charts.bar_panels([run], tmp_path, "ttft", "TTFT", "ms", lambda r, device: values)
    assert axes_scale["scale"] == scale
    assert ("log scale" in axes_scale["label"]) == (scale == "log")


def forward(variant: str, rounds: list[float], **fields) -> ForwardRecord:
    return ForwardRecord(variant=variant, device="cpu", precision="fp32", batch_shape=[1, 8],
                         latency_samples_ms=rounds, **fields)


def generate(variant: str, rounds: list[float], decode: list[float]) -> GenerateRecord:
    return GenerateRecord(variant=variant, device="cpu", prompt_len=8, new_tokens=4, ttft_samples_ms=rounds,
                          ttft_ms=sorted(rounds)[1], decode_tokens_per_s_samples=decode,
                          decode_tokens_per_s=sum(decode) / len(decode))


def train(variant: str, tokens_per_s: float) -> TrainRecord:
    return TrainRecord(variant=variant, device="cpu", precision="fp32", attention="sdpa", tokens_per_step=64,
                       accumulation=1, step_ms=64 / tokens_per_s * 1e3, train_tokens_per_s=tokens_per_s,
                       peak_memory_train_bytes=2**20, losses=[5.0, 4.0])


def classify(variant: str, accuracy: float, size: int) -> ClassifyRecord:
    return ClassifyRecord(variant=variant, device="cpu", chain=[variant], precision="fp32", dataset="ag_news",
                          batch_size=4, accuracy=accuracy, f1_macro=accuracy, precision_macro=accuracy,
                          recall_macro=accuracy, size_on_disk_bytes=size, latency_samples_ms=[4.0],
                          classes=["World", "Sports"], confusion_matrix=[[9, 1], [1, 9]])


@pytest.fixture
def run() -> Run:
    fp32 = forward("fp32", REFERENCE_ROUNDS, perplexity=10.0, size_on_disk_bytes=4 * 2**20, energy_per_sample_mj=8.0)
    int8 = forward("int8", VARIANT_ROUNDS, perplexity=11.0, size_on_disk_bytes=2**20, chain=["int8_scratch"],
                   energy_per_sample_mj=2.0, peak_memory_reserved_bytes=2**21)
    gen_fp32 = generate("fp32", REFERENCE_ROUNDS, [20.0, 20.0, 20.0])
    gen_int8 = generate("int8", VARIANT_ROUNDS, [10.0, 30.0, 40.0])  # paired ×decode 1.5; means' ratio 1.33
    train_fp32, cls_fp32 = train("fp32", 1000.0), classify("cls-fp32", 0.90, 4 * 2**20)
    return Run("run", {}, [fp32, int8.against(fp32), gen_fp32, gen_int8.against(gen_fp32), train_fp32,
                           train("int8", 1500.0).against(train_fp32), cls_fp32.against(cls_fp32),
                           classify("cls-int8", 0.88, 2**20).against(cls_fp32)])


def cells(summary: str, start: str) -> list[str]:
    line = next(line for line in summary.splitlines() if line.startswith(start))
    return [c.strip() for c in line.strip("|").split("|")]


def test_summary_shows_each_records_own_ratios(run):
    summary = summary_markdown([run])
    assert "## Forward: run — cpu" in summary
    # median, the rounds' standard deviation (seeds 001/002), ×latency: paired
    assert cells(summary, "| int8 | int8_scratch |")[3:8] == ["11.00", "1.1", "4.00", "3.61", "2"]
    assert cells(summary, "| int8 | int8_scratch |")[11] == "0.25"  # ×size
    assert cells(summary, "| fp32 | (baseline) |")[4] == "–"  # no ratios kept: a dash, never a division here
    assert cells(summary, "| int8 | – | 2 |")[-1] == "4"  # reserved 2 MiB; ×energy efficiency: 8 mJ / 2 mJ
    assert cells(summary, "| int8 | 1 |")[2:4] == ["4.0", "2"] and cells(summary, "| int8 | 1 |")[-1] == "1.5"
    assert cells(summary, "| int8 | fp32 | sdpa |")[6] == "1.5"  # ×tokens/s of training
    assert cells(summary, "| cls-int8 | cls-int8 |")[-2:] == ["4.00", "-2.00"]  # compression ×, Δ accuracy points
    assert cells(summary, "| cls-fp32 | cls-fp32 |")[-1] == "+0.00"


def test_chart_axes_carry_the_catalog_labels(run, axes_scale, tmp_path):
    generate_charts([run], tmp_path), train_charts([run], tmp_path)
    assert axes_scale["ttft"] == METRICS["ttft"].label
    assert axes_scale["train_memory"] == METRICS["train_peak_memory"].label


def test_seed_004s_performance_and_efficiency_are_charted_per_classifier(run, tmp_path):
    from gpt2compress.report.task_pages import classify_charts

    names = {path.name for path in classify_charts([run], tmp_path)}
    assert {"classify-accuracy.png", "classify-f1.png", "classify-size.png", "classify-latency.png"} <= names
    assert "confusion-cpu-cls-int8.png" in names


PINNED = {"cpu": {"brand_raw": "Intel(R) Xeon(R) Platinum 8480+", "family": 6, "model": 143},
          "gpt2compress": {"cpu_isa": ["amx_bf16", "amx_int8", "avx2", "avx512f"], "threads": 2,
                           "cpus_allowed": [0, 2], "cpus_online": 16, "versions": {"torch": "2.14.1", "openvino": "x"}}}


def test_the_summary_and_every_chart_name_the_machine_that_measured(run):
    assert describe_machine(PINNED) == ("Intel(R) Xeon(R) Platinum 8480+ (family 6, model 143; amx), 2 threads on "
                                        "CPUs 0,2 of 16; torch 2.14.1, openvino x")
    pinned = Run("pinned", PINNED, run.records)
    assert f"Measured on {describe_machine(PINNED)}." in summary_markdown([pinned]).splitlines()[:4]
    host = Run("host", {**PINNED, "gpt2compress": {**PINNED["gpt2compress"], "threads": 16}}, run.records)
    assert [line.split(":")[0] for line in measured_on([pinned, host])] == ["pinned", "host"]  # one line each
    assert measured_on([pinned, pinned]) == [describe_machine(PINNED)]  # the same machine: said once
    fig, _ = charts.panels([pinned], "every chart's panels")  # the footer a PNG pasted into a PR keeps
    assert describe_machine(PINNED) in [text.get_text() for text in fig.texts]
    charts.plt.close(fig)


def test_the_results_csv_has_a_row_per_record_with_values_and_ratios(run, tmp_path):
    import csv

    from gpt2compress.report.results_csv import write_results_csv

    with write_results_csv([run], tmp_path).open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(run.records)
    int8 = next(r for r in rows if r["kind"] == "forward" and r["variant"] == "int8")
    assert int8["perplexity"] == "11" and int8["latency ×reference"] == "2" and int8["size ×reference"] == "0.25"
    assert int8["accuracy"] == ""  # not a forward metric: empty, not zero
    assert next(r for r in rows if r["variant"] == "cls-int8")["accuracy"] == "0.88"
