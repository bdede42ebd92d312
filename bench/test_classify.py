"""AG News classification per compression variant and device (seed 004): accuracy, macro F1, size, latency.

Each variant is the fp32 classifier (fine-tuned once, cached) put through the same stages as the LM
variants; budgets gate its accuracy drop against that fp32 classifier, measured in the same run.
"""

from __future__ import annotations

from gpt2compress.core.metrics import CLASSIFY

KIND = CLASSIFY


def test_classify(case, device, reference, measure, gate):
    gate(measure(reference))
