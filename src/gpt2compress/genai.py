"""OpenVINO's own generation loop: openvino-genai's `LLMPipeline` on an OV variant's IR.

optimum-intel's `generate` is transformers' Python loop around one OpenVINO call per token; a
deployed OpenVINO LLM runs `LLMPipeline`'s C++ loop instead, on the same stateful IR with the same
greedy search. The bench times the OV variants' generation through it (their `runtime` reads
`openvino-genai`), on the pipeline's own per-token clock: `perf_metrics.raw_metrics` holds the
first token's time from the call's start (µs) and the instant each step's tokens were ready (ms),
the instants the logits processor stamps for torch. (Its `m_durations` splits each step's time
evenly over the batch's sequences, so a decode step is read off the ready times instead.) The prompts go in as
token ids (`TokenizedInputs`), so the IR needs no OpenVINO tokenizer beside it.

On CPU the pipeline runs continuous batching with prefix caching on by default: the same prompt again
then reuses its KV cache, and a 128-token prefill at the 124M shape "took" 8 ms instead of ~55 ms.
The bench times every round's full prefill (as it does torch's and llama.cpp's), so prefix caching is
off (decode measured 7.7–8.0 ms/token with it, 6.5–6.7 without, 124M int8 weights, AMD EPYC AVX-512).

Why it is opt-in (GPT2COMPRESS_GENAI=1, engines.py): with prefix caching off, openvino-genai 2026.4.1 made
the next `Core.compile_model` in the process segfault in 8 of 20 test runs (6 of 6 passed with the default
scheduler, whose cached prefill makes TTFT meaningless). Until a version holds both, the bench's default
OpenVINO generation stays optimum-intel's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .generation import GenerationTiming

US, MS = 1e-6, 1e-3


class GenAIGenerator:
    """`LLMPipeline` behind `timed_generate`, the call `generation.timed_generate` hands an engine."""

    runtime = "openvino-genai"

    def __init__(self, ir_dir: str | Path, properties: dict[str, Any]):
        import openvino_genai

        self.scheduler = openvino_genai.SchedulerConfig()  # held as long as the pipeline (see the docstring)
        self.scheduler.enable_prefix_caching = False  # else every round after the first skips the prompt's prefill
        self.pipeline = openvino_genai.LLMPipeline(str(ir_dir), "CPU", scheduler_config=self.scheduler, **properties)

    def generate(self, input_ids: torch.Tensor, new_tokens: int) -> Any:
        """Greedy search of exactly `new_tokens` tokens (EOS ignored, as `min_new_tokens` does for torch)."""
        import openvino as ov
        import openvino_genai

        ids = np.ascontiguousarray(input_ids.cpu().numpy().astype(np.int64))
        inputs = openvino_genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))
        config = openvino_genai.GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                 ignore_eos=True, do_sample=False)
        return self.pipeline.generate(inputs, config)

    def new_token_ids(self, input_ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
        return torch.tensor([list(row) for row in self.generate(input_ids, new_tokens).tokens])

    def timed_generate(self, input_ids: torch.Tensor, new_tokens: int) -> GenerationTiming:
        raw = self.generate(input_ids, new_tokens).perf_metrics.raw_metrics
        ready = list(raw.m_new_token_times)  # ms: when each step's tokens (one per sequence) were ready
        if len(ready) != new_tokens:
            raise RuntimeError(f"openvino-genai stamped {len(ready)} steps for {new_tokens} new tokens: its per-token "
                               "clock changed; check raw_metrics in this openvino-genai version")
        decode = [(b - a) * MS for a, b in zip(ready, ready[1:])]
        return GenerationTiming(input_ids.shape[0], input_ids.shape[1], raw.m_times_to_first_token[-1] * US, decode)
