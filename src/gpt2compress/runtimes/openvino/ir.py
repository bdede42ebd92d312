"""An OpenVINO IR on disk: where it is, which properties it compiles with, how it loads and is fed.

Build code (fingerprint.py): the stages that make IRs and the runtime that loads them share it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoConfig, AutoModelForSequenceClassification

from ..pytorch import auto_class

RUNTIME = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
OV_LIBRARIES = ("openvino", "optimum-intel", "optimum")
IR_FILE = "openvino_model.xml"
RUNTIME_NOTE = "ov_runtime"  # in stage_notes: the properties this entry runs with over RUNTIME
def _is_classifier(config) -> bool:
    return auto_class(config) is AutoModelForSequenceClassification


def is_causal_lm_ir(path: str | Path) -> bool:
    return not _is_classifier(AutoConfig.from_pretrained(path))


def load_openvino(path: str | Path, runtime: dict | None = None):
    """As `OVModelForCausalLM`, or `OVModelForSequenceClassification` for a classifier (seed 004). Compiled on its
    first call: the bench scores and generates an LM through the runtime's scorer and generator, not this object."""
    from optimum.intel import OVModelForCausalLM, OVModelForSequenceClassification

    classifier = _is_classifier(AutoConfig.from_pretrained(path))
    ov_class = OVModelForSequenceClassification if classifier else OVModelForCausalLM
    return ov_class.from_pretrained(path, ov_config=dict(runtime or RUNTIME), compile=False)


def runtime_properties(path: str | Path) -> dict:
    """The OpenVINO properties a cached entry runs with: RUNTIME, with what its stages recorded over it."""
    info = Path(path) / "info.json"
    notes = json.loads(info.read_text()).get("stage_notes", {}) if info.exists() else {}
    return {**RUNTIME, **notes.get(RUNTIME_NOTE, {})}


def ir_inputs(names, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """A causal-LM IR's inputs for a batch: the position ids and beam index it expects beside ids and mask."""
    item = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
    if "position_ids" in names:
        item["position_ids"] = np.where(mask == 1, np.cumsum(mask, 1) - 1, 1).astype(np.int64)
    if "beam_idx" in names:
        item["beam_idx"] = np.arange(ids.shape[0], dtype=np.int32)
    return item


def load(path: str | Path, device: str) -> Any:
    """The runtime's loader: the IR with the properties its stages recorded."""
    return load_openvino(path, runtime_properties(path))
