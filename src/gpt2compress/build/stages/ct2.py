"""CTranslate2 as a peer runtime: the same model converted by CTranslate2's own `TransformersConverter`.

`ct2-int8` stores and computes the linear layers in INT8 (per-row scales, activations quantized on
the fly); `ct2-int8-float32` is CTranslate2's name for the same INT8 weights with everything else in
fp32. The converted model answers the calls the bench makes of a transformers LM: a forward that
returns every position's logits (`Generator.forward_batch`: perplexity, forward latency) and a greedy
`generate` with its KV cache (`generate_batch`), whose step callback is the per-token clock. An
optional extra: `pip install -e '.[peers]'`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers.modeling_outputs import CausalLMOutput

from ...runtimes.pytorch import save_model
from ...core.registry import CPU, StageNotApplicable, register_runtime, register_stage
from ...runtimes.peers import ConvertedModel, converting_dir, not_a_float_gpt2, not_installed

if TYPE_CHECKING:
    from ...core.variants import Context

CT2_LIBRARIES = ("ctranslate2",)


@dataclass(frozen=True)
class CTranslate2Config:
    quantization: str = "int8"  # or int8_float32, float32
    tokenizer: Any = field(default=None, metadata={"hash": False})  # the source's: part of the source key already


def ctranslate2_missing(device: str) -> str | None:
    return not_installed("ctranslate2", "peers", "ctranslate2")


def ct2_config(ctx: Context, quantization: str) -> CTranslate2Config:
    return CTranslate2Config(quantization, tokenizer=ctx.source.tokenizer)


@register_stage("ct2_int8", lambda ctx: ct2_config(ctx, "int8"), devices=(CPU,), gives="ctranslate2",
                precision="int8-wa", libraries=CT2_LIBRARIES, unsupported=ctranslate2_missing,
                about="CTranslate2 peer: INT8 linear layers (TransformersConverter, quantization=int8)")
@register_stage("ct2_int8_float32", lambda ctx: ct2_config(ctx, "int8_float32"), devices=(CPU,), gives="ctranslate2",
                precision="int8-wa (rest fp32)", libraries=CT2_LIBRARIES, unsupported=ctranslate2_missing,
                about="CTranslate2 peer: INT8 weights, the other ops in fp32 (quantization=int8_float32)")
def to_ctranslate2(model: Any, config: CTranslate2Config) -> CTranslate2LM:
    import ctranslate2

    reason = not_a_float_gpt2(model)
    if reason:
        raise StageNotApplicable(reason)
    scratch = converting_dir("ct2")
    tokenizer = a_token_per_row(config.tokenizer, model.config.vocab_size)
    hf = save_model(model.float().cpu(), scratch / "hf", tokenizer)
    ctranslate2.converters.TransformersConverter(str(hf)).convert(str(scratch / "ct2"),
                                                                  quantization=config.quantization)
    return CTranslate2LM(scratch / "ct2", scratch)


def a_token_per_row(tokenizer: Any, rows: int) -> Any:
    """CTranslate2 names every output row by a token and refuses fewer tokens than rows. `gpt2-random` without
    `--tokenizer` pairs GPT-2's 50,257 rows with tiny's 4,096-token BPE, so the rest get placeholder names: the
    ids the tokenizer makes are unchanged, and the model may still generate any row."""
    if tokenizer is None or len(tokenizer) >= rows:
        return tokenizer
    padded = copy.deepcopy(tokenizer)
    padded.add_tokens([f"<|unused{i}|>" for i in range(len(tokenizer), rows)])
    return padded


class CTranslate2LM(ConvertedModel):
    """A CTranslate2 model directory behind a transformers LM's forward and generate."""

    @cached_property
    def generator(self):
        import ctranslate2

        return ctranslate2.Generator(str(self.path), device="cpu", intra_threads=self.threads)

    @cached_property
    def vocabulary(self) -> list[str]:
        """generate_batch takes token strings; ids index this list."""
        return json.loads((self.path / "vocabulary.json").read_text())

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> CausalLMOutput:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        rows = [ids[:keep] for ids, keep in zip(input_ids.tolist(), mask.sum(1).tolist())]  # right padding
        scored = torch.as_tensor(np.asarray(self.generator.forward_batch(rows)))
        if scored.shape[1] == input_ids.shape[1]:  # no padding: no copy (26 MB of logits at b1 x 128, 124M: 5 %)
            return CausalLMOutput(logits=scored)
        logits = torch.zeros(*input_ids.shape, scored.shape[-1])
        logits[:, : scored.shape[1]] = scored
        return CausalLMOutput(logits=logits)

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, logits_processor=(), **_: Any) -> torch.Tensor:
        """Greedy, exactly `max_new_tokens` tokens. Each processor is called once per step, when the step's last
        sequence has its token, with `scores=None`: search runs inside CTranslate2, so processors observe (the
        per-token clock) and cannot steer."""
        last = input_ids.shape[0] - 1

        def step(result) -> bool:
            if result.batch_id == last:
                for processor in logits_processor:
                    processor(None, None)
            return False  # False: go on

        prompts = [[self.vocabulary[i] for i in row] for row in input_ids.tolist()]
        results = self.generator.generate_batch(prompts, max_length=max_new_tokens, min_length=max_new_tokens,
                                                sampling_topk=1, include_prompt_in_result=False, callback=step)
        return torch.cat([input_ids, torch.tensor([r.sequences_ids[0] for r in results])], 1)


register_runtime("ctranslate2", load=lambda path, device: CTranslate2LM(path), libraries=CT2_LIBRARIES)
