"""Chart primitives: a bar panel switches to a log axis only when one value would flatten the others."""

from types import SimpleNamespace

import pytest

from gpt2compress import charts


@pytest.fixture
def axes_scale(monkeypatch):
    seen = {}
    monkeypatch.setattr(charts, "save", lambda fig, out, name: seen.update(
        scale=fig.axes[0].get_yscale(), label=fig.axes[0].get_ylabel()) or out / f"{name}.png")
    return seen


@pytest.mark.parametrize("values, scale", [({"fp32": 500.0, "bf16 emulated": 24_000.0}, "log"),
                                           ({"fp32": 500.0, "int8": 390.0, "b8": 3_400.0}, "linear")])
def test_log_axis_only_for_values_spanning_more_than_the_limit(values, scale, axes_scale, tmp_path):
    run = SimpleNamespace(devices=["cpu"], label="run")
    charts.bar_panels([run], tmp_path, "ttft", "TTFT", "ms", lambda r, device: values)
    assert axes_scale["scale"] == scale
    assert ("log scale" in axes_scale["label"]) == (scale == "log")
