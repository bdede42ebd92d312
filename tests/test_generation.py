"""Generation timing: per-token stamps that do not change what is generated, and the numbers derived from them."""

import pytest
import torch

from gpt2compress.measure.generation import (GenerationTiming, TokenTimestamps, cannot_generate, prompt_batch,
                                                 summarize, timed_generate)


def test_stamps_one_token_at_a_time_without_changing_the_output(model):
    prompt = torch.randint(0, 97, (2, 10))
    timing = timed_generate(model, prompt, new_tokens=6)
    assert (timing.batch_size, timing.prompt_len, timing.new_tokens, len(timing.decode_s)) == (2, 10, 6, 5)
    assert timing.prefill_s > 0 and all(s > 0 for s in timing.decode_s)
    plain = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=6,
                           min_new_tokens=6, pad_token_id=0)
    stamps = TokenTimestamps()
    stamped = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=6,
                             min_new_tokens=6, pad_token_id=0, logits_processor=[stamps])
    assert torch.equal(plain, stamped) and len(stamps.stamps) == 6


def test_decode_throughput_counts_every_sequence_and_excludes_the_first_token():
    timing = GenerationTiming(batch_size=8, prompt_len=128, prefill_s=0.5, decode_s=[0.1] * 63)
    assert timing.new_tokens == 64
    assert timing.decode_tokens_per_s == pytest.approx(8 * 63 / 6.3)
    summary = summarize([timing, GenerationTiming(8, 128, 0.7, [0.2] * 63)])
    assert summary["decode_tokens_per_s"] == pytest.approx(8 * 126 / (6.3 + 12.6))
    assert summary["ttft_samples_ms"] == pytest.approx([500, 700])
    assert summary["per_token_stamps"] is True
    assert summary["decode_p99_ms"] == pytest.approx(200)


def test_a_runtime_that_skips_the_logits_processor_falls_back_to_two_calls(model, monkeypatch):
    """On a clock of its own (each generated token costs 1 ms): the arithmetic, not this machine's load, is tested."""
    from types import SimpleNamespace

    from gpt2compress.measure import generation

    real, asked, clock = model.generate, [], [0.0]

    def no_processors(**kw):
        asked.append(kw["max_new_tokens"])
        clock[0] += kw["max_new_tokens"] * 1e-3
        return real(**{**kw, "logits_processor": None})

    monkeypatch.setattr(model, "generate", no_processors)
    monkeypatch.setattr(generation, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    timing = timed_generate(model, torch.randint(0, 97, (2, 5)), new_tokens=12)
    assert asked == [12, 1]  # the full generate, then a 1-token one: the prefill
    assert not timing.stamped and timing.prefill_s > 0
    assert len(timing.decode_s) == 11 and timing.decode_s == [pytest.approx(1e-3)] * 11  # (12 ms - 1 ms) / 11
    summary = summarize([timing, timing])
    assert summary["per_token_stamps"] is False
    assert summary["decode_p90_ms"] is None and summary["decode_p99_ms"] is None  # means have no tail
    assert summary["decode_tokens_per_s"] == pytest.approx(2 / timing.decode_s[0])


def test_forward_only_graphs_say_why_they_cannot_generate(model):
    assert cannot_generate(model) is None
    assert "no generate()" in cannot_generate(torch.nn.Linear(2, 2))


def test_prompts_that_do_not_fit_name_the_options_to_change():
    with pytest.raises(ValueError, match="--prompt-len"):
        prompt_batch(torch.zeros(4, 64, dtype=torch.long), batch_size=8, prompt_len=32)
    assert prompt_batch(torch.arange(256).view(4, 64), 2, 16).shape == (2, 16)
