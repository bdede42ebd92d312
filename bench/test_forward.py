"""One forward pass per variant and device: perplexity, size, peak memory, and latency in rounds that alternate
with fp32's (timed by pytest-benchmark), gated by budgets."""

from __future__ import annotations

from gpt2compress.core.metrics import FORWARD

KIND = FORWARD


def test_forward(case, device, reference, measure, gate):
    gate(measure(reference))
