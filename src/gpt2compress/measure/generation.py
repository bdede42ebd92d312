"""Autoregressive generation timing: time to first token (prefill) and per-token decode latency.

GPT-2 is used one token at a time, so a deployed variant is judged on how long
the first token takes (the prompt's forward, compute-bound) and how many tokens
per second follow (one token per step against the KV cache, memory-bound at
batch ≈ 1). A logits processor stamps the clock each time `generate` asks for the
next token's scores, as optimum-benchmark does; it works for PyTorch and
OpenVINO models alike because both run HF `generate`. A runtime that does not
call the processor once per token falls back to two calls (optimum-benchmark's
other method): `generate` of one token is the prefill, and the rest of a full
`generate` divided by its decode steps is each token's latency (a mean, so no
per-token percentiles: `per_token_stamps` is False and p90/p99 are absent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .timing import latency_stats, model_device, synchronizer


@dataclass
class GenerationTiming:
    """Clock readings of one `generate` call: prefill seconds, then one duration per decoded token."""

    batch_size: int
    prompt_len: int
    prefill_s: float
    decode_s: list[float] = field(default_factory=list)
    stamped: bool = True  # False: the fallback, every decode step is the mean

    @property
    def new_tokens(self) -> int:
        return len(self.decode_s) + 1

    @property
    def decode_tokens_per_s(self) -> float:
        """batch × (new_tokens − 1) / decode time: the first token belongs to prefill."""
        return self.batch_size * len(self.decode_s) / sum(self.decode_s)


class TokenTimestamps(LogitsProcessor):
    """Records the time each next-token distribution is ready (after the device finished computing it)."""

    def __init__(self, sync: Callable[[], None] = lambda: None) -> None:
        self.sync = sync
        self.stamps: list[float] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.sync()
        self.stamps.append(time.perf_counter())
        return scores


def cannot_generate(model: Any, batch_size: int = 1) -> str | None:
    """Why a variant cannot be timed autoregressively at this batch size (None if it can)."""
    if not callable(getattr(model, "generate", None)) and not callable(getattr(model, "timed_generate", None)):
        return (f"{type(model).__name__} has no generate(): it is a forward-only graph without a KV cache "
                "(its forward is benchmarked instead)")
    limit = getattr(model, "max_batch_size", None)
    if limit is not None and batch_size > limit:
        return f"{type(model).__name__} generates at most {limit} sequence(s) at a time, not {batch_size}"
    return None


def prompt_batch(input_ids: torch.Tensor, batch_size: int, prompt_len: int) -> torch.Tensor:
    """The first `batch_size` rows, `prompt_len` tokens each: the same prompts for every variant."""
    if input_ids.shape[0] < batch_size or input_ids.shape[1] < prompt_len:
        raise ValueError(f"need {batch_size} prompts of {prompt_len} tokens; the eval windows are "
                         f"{tuple(input_ids.shape)}: lower --prompt-len/--gen-batch-sizes or raise --seq-len")
    return input_ids[:batch_size, :prompt_len]


def _generate(model: Any, input_ids: torch.Tensor, new_tokens: int, processors: list) -> None:
    with torch.inference_mode():
        model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                       use_cache=True, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       logits_processor=LogitsProcessorList(processors), pad_token_id=0)


def timed_generate(model: Any, input_ids: torch.Tensor, new_tokens: int) -> GenerationTiming:
    """Greedy `generate` of exactly `new_tokens` tokens with the KV cache, stamped per token. An engine with a
    clock of its own (`timed_generate`, e.g. openvino-genai's) reads it instead."""
    if new_tokens < 2:
        raise ValueError("new_tokens must be ≥ 2: one for prefill and at least one decode step")
    if callable(getattr(model, "timed_generate", None)):
        return model.timed_generate(input_ids, new_tokens)
    device = model_device(model)
    input_ids, sync = input_ids.to(device), synchronizer(device)
    batch, prompt_len = input_ids.shape
    stamps = TokenTimestamps(sync)
    start = time.perf_counter()
    _generate(model, input_ids, new_tokens, [stamps])
    sync()
    total = time.perf_counter() - start
    if len(stamps.stamps) == new_tokens:
        times = [start, *stamps.stamps]
        steps = [b - a for a, b in zip(times, times[1:])]
        return GenerationTiming(batch, prompt_len, steps[0], steps[1:])
    start = time.perf_counter()  # fallback: this runtime does not call the processor once per token
    _generate(model, input_ids, 1, [])
    sync()
    prefill = time.perf_counter() - start
    if prefill >= total:
        raise RuntimeError(f"without per-token timestamps, decode time is a full generate ({total * 1e3:.1f} ms) "
                           f"minus a 1-token one ({prefill * 1e3:.1f} ms), which came out ≤ 0: raise --new-tokens")
    return GenerationTiming(batch, prompt_len, prefill, [(total - prefill) / (new_tokens - 1)] * (new_tokens - 1),
                            stamped=False)


def summarize(timings: list[GenerationTiming]) -> dict[str, Any]:
    """What a generate row records: TTFT and per-token decode latency over all rounds, and decode tokens/s."""
    first = timings[0]
    decode = [s for t in timings for s in t.decode_s]
    ttft = latency_stats([t.prefill_s for t in timings])
    per_token = latency_stats(decode)
    summary = {
        "batch_size": first.batch_size, "prompt_len": first.prompt_len, "new_tokens": first.new_tokens,
        "ttft_ms": ttft["p50_ms"], "ttft_mean_ms": ttft["mean_ms"], "ttft_p90_ms": ttft["p90_ms"],
        **{f"decode_{k}": v for k, v in per_token.items()},
        "decode_tokens_per_s": first.batch_size * len(decode) / sum(decode),
        "ttft_samples_ms": [t.prefill_s * 1e3 for t in timings],
        "per_token_stamps": all(t.stamped for t in timings),
    }
    if not summary["per_token_stamps"]:  # the fallback's decode steps are means: no tail to report
        summary.update(decode_p90_ms=None, decode_p99_ms=None)
    return summary
