"""What runs a built variant for each kind of measurement: the model itself, or, for an OpenVINO causal LM, the
paths OpenVINO deploys it on. Builds stay what stages made (optimum-intel models, which NNCF quantizes); only
the measurement picks the engine.

- scoring (perplexity, forward latency, HellaSwag): the IR compiled without its KV-cache state, with static
  shapes for the batch the bench times (`ov_scorer.StatelessScorer`);
- generation: openvino-genai's `LLMPipeline` on the same IR, in a process of its own (`genai.GenAIGenerator`;
  GPT2COMPRESS_GENAI=0 times optimum-intel's `generate` instead).
"""

from __future__ import annotations

import os
from typing import Any

GENAI_ENV = "GPT2COMPRESS_GENAI"


def _openvino_lm(built: Any) -> bool:
    from .stages.openvino import is_causal_lm_ir

    return built.runtime == "openvino" and is_causal_lm_ir(built.path)


def scoring_engine(built: Any, timed: Any = None, **properties: str) -> Any:
    """What scores windows for a built variant: a stateless compiled IR for an OpenVINO LM (static shapes for
    `timed`'s batches, the inputs the caller will time; `properties` over the variant's runtime ones, e.g.
    PERF_COUNT="YES" to read its per-layer counters), the model otherwise."""
    if _openvino_lm(built):
        from .metrics import shape_of
        from .ov_scorer import StatelessScorer
        from .stages.openvino import runtime_properties

        shape = None if timed is None else tuple(shape_of(timed))
        return StatelessScorer(built.path, {**runtime_properties(built.path), **properties}, shape)
    return built.model


def generation_engine(built: Any) -> Any:
    """What generates for a built variant: `LLMPipeline` on an OpenVINO LM's IR (the loop OpenVINO deploys;
    GPT2COMPRESS_GENAI=0: optimum-intel's `generate`), the model itself otherwise."""
    if os.environ.get(GENAI_ENV) != "0" and _openvino_lm(built):
        from .genai import GenAIGenerator
        from .stages.openvino import runtime_properties

        return GenAIGenerator(built.path, runtime_properties(built.path))
    return built.model
