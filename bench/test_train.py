"""Training throughput per setup and device (seed 003): tokens/s of full optimizer steps, peak memory, and
proof that the measured steps learn (the loss falls), since a benchmark of a broken step is worthless."""

from __future__ import annotations

from gpt2compress.core.metrics import TRAIN

KIND = TRAIN


def test_train(case, device, reference, measure, reuse, gate):
    if case.is_reference:  # its fixture measured it once: that is its row
        gate(reuse(reference))
    else:
        gate(measure(reference))
