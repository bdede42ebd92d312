"""Save and load PyTorch variants whose shapes the plain GPT-2 config cannot describe.

A pruned or from-scratch-INT8 model records what was done to it in
`config.gpt2compress`; loading rebuilds those shapes on a fresh model from the
config, then loads the saved tensors strictly (any missing or extra tensor is an error).
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedModel

WEIGHTS = "model.safetensors"
RECORD = "gpt2compress"  # the config attribute where stages note what they did


def record(model: PreTrainedModel, key: str, value) -> PreTrainedModel:
    """Note in the config what a stage did, so `load_model` can redo it on a fresh model."""
    setattr(model.config, RECORD, {**(getattr(model.config, RECORD, None) or {}), key: value})
    return model


def auto_class(config):
    """The Auto class a saved config rebuilds as: the sequence classifier (seed 004) or the causal LM."""
    if any(a.endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or []):
        return AutoModelForSequenceClassification
    return AutoModelForCausalLM


def save_model(model: PreTrainedModel, out_dir: str | os.PathLike, tokenizer=None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]  # as save_pretrained records it (converters read it)
    model.config.save_pretrained(out)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if "lm_head.weight" in state and model.lm_head.weight is model.transformer.wte.weight:
        del state["lm_head.weight"]  # tied: stored once, re-tied on load
    save_file(state, out / WEIGHTS, metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def load_model(path: str | os.PathLike) -> PreTrainedModel:
    path = Path(path)
    config = AutoConfig.from_pretrained(path)
    notes = getattr(config, RECORD, None) or {}
    if not notes:
        return auto_class(config).from_pretrained(path).eval()
    from .stages.int8_scratch import Int8Config, quantize_int8_scratch
    from .stages.precision import enable_autocast
    from .stages.pruning import restore_pruned_shapes

    model = auto_class(config).from_config(config, attn_implementation=notes.get("attn_implementation"))
    if notes.get("pruned_heads"):
        restore_pruned_shapes(model, notes["pruned_heads"])
    if "int8_scratch" in notes:
        quantize_int8_scratch(model, Int8Config(**notes["int8_scratch"]))
    state = load_file(path / WEIGHTS)
    result = model.load_state_dict(state, strict=False)
    missing = set(result.missing_keys) - {"lm_head.weight"}
    if missing or result.unexpected_keys:
        raise ValueError(f"{path}: weights do not match the recorded shapes (missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(result.unexpected_keys)[:5]})")
    if "lm_head.weight" in result.missing_keys:
        model.tie_weights()
    dtype = next(v.dtype for v in state.values() if v.is_floating_point())
    model = model.to(dtype).eval()
    return enable_autocast(model, notes["autocast"]) if notes.get("autocast") else model
