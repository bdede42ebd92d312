"""Autoregressive generation per variant, device and batch size: time to first token and decode tokens/s.

pytest-benchmark times whole `generate` calls; a logits processor stamps each
token inside them, so prefill (TTFT) and per-token decode latency come from the
same rounds. Ratios divide by fp32's generate in the same session and batch.
"""

from __future__ import annotations

import pytest

from gpt2compress.generation import cannot_generate, prompt_batch, summarize, timed_generate
from gpt2compress.measure import provenance
from gpt2compress.metrics import peak_memory
from gpt2compress.variants import BASELINE, build

DEFAULT_PROMPT_LEN = 128


def _prompt(session, batch_size: int, pytestconfig):
    opt = pytestconfig.getoption
    prompt_len, new_tokens = opt("--prompt-len"), opt("--new-tokens")
    limit = session.ctx.source.model.config.n_positions
    if prompt_len is None:  # default: 128 tokens, shortened to fit a short-context model and the eval windows
        prompt_len = min(DEFAULT_PROMPT_LEN, limit - new_tokens, session.ctx.settings.seq_len)
    if prompt_len < 1 or prompt_len + new_tokens > limit:
        pytest.fail(f"--prompt-len {prompt_len} + --new-tokens {new_tokens} exceeds the model's {limit} positions: "
                    "lower one of them", pytrace=False)
    return prompt_batch(session.ctx.eval.input_ids, batch_size, prompt_len), new_tokens


@pytest.fixture
def generate_baseline(session, variant, gen_batch_size, pytestconfig) -> dict | None:
    """fp32's generate numbers for this batch size (measured here if fp32 was not selected or not yet run)."""
    if variant != BASELINE and gen_batch_size not in session.generate:
        prompt, new_tokens = _prompt(session, gen_batch_size, pytestconfig)
        model = build(BASELINE, session.ctx).model
        timings = [timed_generate(model, prompt, new_tokens) for _ in range(pytestconfig.getoption("--gen-rounds") + 1)]
        session.generate[gen_batch_size] = summarize(timings[1:])
    return session.generate.get(gen_batch_size)


def test_generate(benchmark, variant, device, built, session, gen_batch_size, generate_baseline, gate, pytestconfig):
    reason = cannot_generate(built.model, gen_batch_size)
    if reason:
        pytest.skip(reason)
    prompt, new_tokens = _prompt(session, gen_batch_size, pytestconfig)
    timings = []
    benchmark.group = f"generate-{device}-b{gen_batch_size}"
    with peak_memory(device) as mem:
        benchmark.pedantic(lambda: timings.append(timed_generate(built.model, prompt, new_tokens)),
                           rounds=pytestconfig.getoption("--gen-rounds"), warmup_rounds=1, iterations=1)
    result = summarize(timings[1:])  # the first call was the warm-up round
    if variant == BASELINE:
        session.generate[gen_batch_size] = result
    base = result if variant == BASELINE else generate_baseline

    info = benchmark.extra_info
    info.update(result)
    info.update({"kind": "generate", "variant": variant, "device": device, "model": pytestconfig.getoption("--model"),
                 "precision": built.info["precision"], "runtime": built.runtime, "chain": list(built.chain),
                 "build": provenance(built),
                 "peak_memory_bytes": mem.peak, "peak_memory_reserved_bytes": mem.reserved})
    info["ratios"] = {"decode_tokens_per_s_ratio": result["decode_tokens_per_s"] / base["decode_tokens_per_s"],
                      "ttft_ratio": result["ttft_ms"] / base["ttft_ms"]}
    gate(info, info["ratios"])

