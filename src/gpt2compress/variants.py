"""Variants: named chains of stages, built once and cached on disk.

`build(name, ctx)` walks the chain; every prefix is cached under a key hashed from
the source model, the stage names and their configs (data included by content),
so a warm run loads instead of rebuilding and a changed recipe never reuses stale
weights. Each cached directory also holds `info.json` (parameters, heads per
layer, precision) recorded while the model was still a PyTorch module.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from .cache import cached_dir, content_key
from .data import Corpus, Windows, calibration_windows, eval_windows, train_windows
from .io import RECORD, load_model, save_model
from .metrics import parameter_count
from .sources import GPT2_RANDOM, TINY, Source
from .stages import STAGES, check_chain
from .stages.pruning import heads_per_layer

BASELINE = "fp32"

VARIANTS: dict[str, tuple[str, ...]] = {
    BASELINE: (),
    "bf16": ("bf16",),
    "fp16": ("fp16",),
    "mixed-fp16": ("mixed_fp16",),
    "mixed-bf16": ("mixed_bf16",),
    "eager": ("attn_eager",),
    "fp16-eager": ("fp16", "attn_eager"),
    "fp16-flash-attn2": ("fp16", "attn_flash2"),
    "bnb-int8": ("bnb_int8",),
    "bnb-nf4": ("bnb_nf4",),
    "pruned": ("prune",),
    "pruned-fp16": ("prune", "fp16"),
    "pruned-finetuned": ("prune", "finetune"),
    "pruned-finetuned-bf16": ("prune", "finetune", "bf16"),
    "pruned-finetuned-fp16": ("prune", "finetune", "fp16"),
    "int8-scratch": ("int8_scratch",),
    "ov-fp32": ("openvino",),
    "ov-int8-weights": ("openvino", "ov_int8_weights"),
    "ov-int8-static": ("openvino", "ov_int8_static"),
    "inc-int8": ("inc_int8",),
    "pruned-finetuned-int8-scratch": ("prune", "finetune", "int8_scratch"),
    "pruned-finetuned-ov-int8-static": ("prune", "finetune", "openvino", "ov_int8_static"),
    "pruned-finetuned-inc-int8": ("prune", "finetune", "inc_int8"),
    "llamacpp-f32": ("gguf_f32",),  # peer engine: the same model in llama.cpp
    "llamacpp-q8_0": ("gguf_q8_0",),
    "distilled": ("distill",),
    "distilled-lora": ("distill", "lora"),
    "distilled-lora-pruned": ("distill", "lora_pruned"),
    "distilled-lora-pruned-int8": ("distill", "lora_pruned", "inc_int8"),
    "distilled-lora-pruned-nf4": ("distill", "lora_pruned", "bnb_nf4"),
}


@dataclass(frozen=True)
class Settings:
    """Run-wide knobs; every field that changes a built model is part of the cache key."""

    seq_len: int = 128
    eval_samples: int | None = None
    prune_fraction: float = 0.2
    finetune_epochs: float = 1.0
    finetune_max_steps: int = -1
    finetune_samples: int | None = 1024
    finetune_lr: float = 5e-5
    calibration_samples: int = 64
    distill_layers: tuple[int, ...] | None = None  # teacher blocks the student keeps; None: every other one
    lora_rank: int = 8
    lora_lr: float = 1e-3
    adapter_sparsity: float = 0.8

    @classmethod
    def for_model(cls, model: str, **overrides: Any) -> Settings:
        """Defaults that fit each source: `tiny` learns fast, `gpt2-random` only needs a token fine-tune."""
        base = {TINY: cls(finetune_lr=5e-4), GPT2_RANDOM: cls(finetune_max_steps=8, eval_samples=32)}.get(model, cls())
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Context:
    source: Source
    corpus: Corpus
    settings: Settings = field(default_factory=Settings)
    device: str = "cpu"

    def __post_init__(self) -> None:
        limit = getattr(self.source.model.config, "n_positions", None)
        if limit is not None and self.settings.seq_len > limit:
            raise ValueError(f"--seq-len {self.settings.seq_len} is longer than {self.source.name}'s "
                             f"{limit} positions; pass --seq-len {limit} or less")

    @cached_property
    def calibration(self) -> Windows:
        return calibration_windows(self.corpus, self.source.tokenizer, self.settings.seq_len,
                                   self.settings.calibration_samples)

    @cached_property
    def train(self) -> Windows:
        return train_windows(self.corpus, self.source.tokenizer, self.settings.seq_len,
                             self.settings.finetune_samples)

    @cached_property
    def eval(self) -> Windows:
        return eval_windows(self.corpus, self.source.tokenizer, self.settings.seq_len, self.settings.eval_samples)


@dataclass
class Built:
    name: str
    chain: tuple[str, ...]
    model: Any
    path: Path
    runtime: str
    info: dict


def _save(model: Any, runtime: str, out: Path, tokenizer) -> None:
    if runtime == "torch":
        save_model(model, out, tokenizer)
    else:
        model.save_pretrained(out)  # OpenVINO IR, INC export, bitsandbytes, GGUF: their own formats


def _load(path: Path, runtime: str, device: str) -> Any:
    if runtime == "torch":
        return load_model(path).to(device)
    if runtime == "openvino":
        from .stages.openvino import load_openvino

        return load_openvino(path)
    if runtime == "bnb":
        from .stages.bnb import load_bnb

        return load_bnb(path, device)
    if runtime == "llamacpp":
        from .stages.llamacpp import load_llamacpp

        return load_llamacpp(path)
    from .stages.inc import load_inc

    return load_inc(path)


def _torch_info(model: torch.nn.Module, precision: str) -> dict:
    """`stage_notes`: what stages recorded in the config (LoRA's trainable %, adapter sizes, ...), for the report."""
    return {"parameters": parameter_count(model), "heads_per_layer": heads_per_layer(model), "precision": precision,
            "stage_notes": getattr(model.config, RECORD, None) or {}}


def build(name: str, ctx: Context, chain: tuple[str, ...] | None = None) -> Built:
    """Build (or load from cache) variant `name` on `ctx.device`."""
    if chain is None and name not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; known variants: {', '.join(VARIANTS)}")
    chain = VARIANTS[name] if chain is None else chain
    check_chain(chain, ctx.device)
    model, runtime, info, path = None, "torch", {}, None
    for depth in range(len(chain) + 1):
        steps = [(s, STAGES[s].make_config(ctx)) for s in chain[:depth]]
        built_now = False

        def make(out: Path) -> None:
            nonlocal model, runtime, info, built_now
            if depth == 0:  # a private copy: stages work in place and the source is shared
                model = copy.deepcopy(ctx.source.model).float()
                info = _torch_info(model, "fp32")
            else:
                stage_name, config = steps[-1]
                stage = STAGES[stage_name]
                model = _load(path, runtime, ctx.device) if model is None else model
                model = stage.apply(model.to(ctx.device) if runtime == "torch" else model, config)
                runtime, info = stage.gives, {**info, "precision": stage.precision or info["precision"]}
                if runtime == "torch":
                    info.update(_torch_info(model, info["precision"]))
            _save(model, runtime, out, ctx.source.tokenizer)
            (out / "info.json").write_text(json.dumps({**info, "runtime": runtime}))
            built_now = True

        path = cached_dir("variants", content_key(ctx.source.key, steps), make)
        if not built_now:  # cached: read its record, load the model only if something needs it
            info = json.loads((path / "info.json").read_text())
            runtime, model = info.pop("runtime"), None
    if model is None:
        model = _load(path, runtime, ctx.device)
    elif runtime == "torch":
        model = model.to(ctx.device)
    return Built(name, chain, model, path, runtime, info)
