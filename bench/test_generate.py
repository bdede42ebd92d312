"""Autoregressive generation per variant, device and batch size: time to first token and decode tokens/s.

pytest-benchmark times whole `generate` calls, each right after one of fp32's on the same prompts; a
logits processor stamps each token inside them, so prefill (TTFT) and per-token decode latency come from
the same rounds (`generation.py`). A variant without a KV-cache `generate` is skipped with the reason.
"""

from __future__ import annotations

from gpt2compress.core.metrics import GENERATE

KIND = GENERATE


def test_generate(case, device, gen_batch_size, reference, measure, gate):
    gate(measure(reference))
