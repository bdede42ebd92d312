"""What runs a built variant for each kind of measurement: the model itself, or, for an OpenVINO causal LM, the
paths OpenVINO deploys it on. Builds stay what stages made (optimum-intel models, which NNCF quantizes); only
the measurement picks the engine.

- scoring (perplexity, forward latency, HellaSwag): the IR compiled without its KV-cache state
  (`stages.openvino.StatelessScorer`);
- generation: optimum-intel's `generate`; opt-in (GPT2COMPRESS_GENAI=1), openvino-genai's `LLMPipeline` on the
  same IR (`genai.GenAIGenerator`), which is not the default yet (genai.py says why).
"""

from __future__ import annotations

import os
from typing import Any

GENAI_ENV = "GPT2COMPRESS_GENAI"


def _openvino_lm(built: Any) -> bool:
    from .stages.openvino import is_causal_lm_ir

    return built.runtime == "openvino" and is_causal_lm_ir(built.path)


def scoring_engine(built: Any) -> Any:
    """What scores windows for a built variant: a stateless compiled IR for an OpenVINO LM, the model otherwise."""
    if _openvino_lm(built):
        from .stages.openvino import StatelessScorer, runtime_properties

        return StatelessScorer(built.path, runtime_properties(built.path))
    return built.model


def generation_engine(built: Any) -> Any:
    """What generates for a built variant: the model itself (optimum-intel's `generate` for OpenVINO); with
    GPT2COMPRESS_GENAI=1, `LLMPipeline` on an OpenVINO LM's IR. Opt-in: see genai.py for why."""
    if os.environ.get(GENAI_ENV) == "1" and _openvino_lm(built):
        from .genai import GenAIGenerator
        from .stages.openvino import runtime_properties

        return GenAIGenerator(built.path, runtime_properties(built.path))
    return built.model
