"""The "torch" runtime: save and load PyTorch variants, whatever shapes the stages gave them.

A stage that changes a model's structure (pruned heads, INT8 layers, autocast,
attention kernel) records what it did in `config.gpt2compress`. Loading builds a
fresh model from the config, replays each record through the restorer its stage
registered (in the order they were done), then assigns the saved tensors strictly:
their dtypes come back as saved (a bf16 variant stays bf16), any missing or extra
tensor is an error, and a tied LM head is tied again. This module imports no stage.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedModel
from transformers.pytorch_utils import Conv1D

from ..core.registry import register_restorer, register_runtime, restorer

WEIGHTS = "model.safetensors"
PICKLED_WEIGHTS = "model.pt"  # tensor subclasses (torchao's quantized weights), which safetensors cannot hold
RECORD = "gpt2compress"  # the config attribute where stages note what they did
ORDER = "gpt2compress_order"  # ... and in which order (config.json is written with sorted keys)
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class LogitsOnly(torch.nn.Module):
    """What an exported graph computes (INC's PT2E, ONNX): tokens and mask in, every position's logits out, no KV
    cache."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def record(model: PreTrainedModel, key: str, value) -> PreTrainedModel:
    """Note in the config what a stage did, so `load_model` can redo it on a fresh model."""
    setattr(model.config, RECORD, {**notes(model.config), key: value})
    order = list(getattr(model.config, ORDER, None) or [])
    setattr(model.config, ORDER, order if key in order else [*order, key])
    return model


def notes(config) -> dict:
    return dict(getattr(config, RECORD, None) or {})


def register_note(note: str) -> None:
    """A record that changes no structure (what distillation or LoRA did): loading only keeps it."""
    register_restorer(note)(lambda model, value: record(model, note, value))


def conv1d_to_linear(model: torch.nn.Module) -> torch.nn.Module:
    """GPT-2's Conv1D computes x @ W + b with W (in, out); nn.Linear with W^T is exactly the same, and is what
    quantizers annotate (INC, torchao)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                linear = torch.nn.Linear(*child.weight.shape, dtype=child.weight.dtype, device=child.weight.device)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
    return model


def auto_class(config):
    """The Auto class a saved config rebuilds as: the sequence classifier (seed 004) or the causal LM."""
    if any(a.endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or []):
        return AutoModelForSequenceClassification
    return AutoModelForCausalLM


def is_tied(model: PreTrainedModel) -> bool:
    """The LM head reads the token embedding's own tensor (or, once INT8, the embedding module itself)."""
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None:
        return False
    weight = getattr(head, "weight", None)
    return getattr(head, "embedding", None) is embedding or (weight is not None and weight is embedding.weight)


def fresh_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A private fp32 copy of a source model: stages work in place, and the source is shared."""
    return copy.deepcopy(model).float()


def save_model(model: PreTrainedModel, out_dir: str | os.PathLike, tokenizer=None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]  # as save_pretrained records it (converters read it)
    model.config.save_pretrained(out)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if "lm_head.weight" in state and is_tied(model):
        del state["lm_head.weight"]  # tied: stored once, re-tied on load
    if any(type(v) is not torch.Tensor for v in state.values()):
        torch.save(state, out / PICKLED_WEIGHTS)  # loaded back with weights_only=True: tensors, no code
    else:
        save_file(state, out / WEIGHTS, metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def load_model(path: str | os.PathLike) -> PreTrainedModel:
    path = Path(path)
    config = AutoConfig.from_pretrained(path)
    recorded, order = notes(config), list(getattr(config, ORDER, None) or [])
    model = auto_class(config).from_config(config)
    setattr(model.config, RECORD, {})
    setattr(model.config, ORDER, [])
    for note in order + sorted(set(recorded) - set(order)):  # replayed in the order the stages did them
        model = restorer(note)(model, recorded[note])
    pickled = path / PICKLED_WEIGHTS
    state = torch.load(pickled, weights_only=True) if pickled.exists() else load_file(path / WEIGHTS)
    result = model.load_state_dict(state, strict=False, assign=True)
    missing = set(result.missing_keys) - {"lm_head.weight"}
    if missing or result.unexpected_keys:
        raise ValueError(f"{path}: weights do not match the recorded shapes (missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(result.unexpected_keys)[:5]})")
    if "lm_head.weight" in result.missing_keys:
        model.lm_head.weight = model.transformer.wte.weight
    floats = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(floats) == 1 and (dtype := floats.pop()) != model.dtype:  # buffers not saved (masks) follow the
        model = model.to(dtype)                                          # weights' dtype, as after a cast
    return model.eval()


def _stored(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The plain tensors a tensor is stored as: a tensor subclass (torchao's quantized weight, whose dtype is the
    one it computes in) is flattened into its own (INT8 data, scales)."""
    if type(tensor) in (torch.Tensor, torch.nn.Parameter) or not hasattr(tensor, "__tensor_flatten__"):
        return [tensor]
    names, _ = tensor.__tensor_flatten__()
    return [leaf for name in names for leaf in _stored(getattr(tensor, name))]


def precision_of(model: torch.nn.Module) -> str:
    """What the model computes in, read from its tensors (never from the recipe that built it)."""
    tensors = [leaf for t in (*model.parameters(), *model.buffers()) for leaf in _stored(t)]
    if any(t.dtype == torch.int8 for t in tensors):
        return "int8-w"
    by_size: dict[torch.dtype, int] = {}
    for t in tensors:
        if t.is_floating_point():
            by_size[t.dtype] = by_size.get(t.dtype, 0) + t.numel()
    largest = max(by_size, key=by_size.get)
    dtype = DTYPE_NAMES.get(largest, str(largest))
    autocast = notes(model.config).get("autocast") if hasattr(model, "config") else None
    return f"mixed-{autocast}" if autocast else dtype


register_runtime("torch", save=save_model, load=lambda path, device: load_model(path).to(device))
