"""Variants: named chains of stages, built once and cached on disk.

`build(name, ctx)` walks the chain; every prefix is cached under a key chained from
the source model's key and, per stage, its name, its config (data included by
content), its code fingerprint and the versions of the libraries it runs (see
`plan`), so a warm run loads instead of rebuilding, and a changed recipe, stage
code or library never reuses stale weights. Each cached directory also holds
`info.json`: parameters, heads per layer, precision, and which code built it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from .cache import cached_dir, content_key
from ..build.data import Corpus, Windows, calibration_windows, eval_windows, train_windows
from .fingerprint import fingerprint, project_commit
from ..runtimes.pytorch import fresh_copy, notes, precision_of
from ..measure.memory import parameter_count
from .progress import add_build, say
from .records import LM_REFERENCE
from .registry import TORCH_LIBRARIES, Stage, check_chain, runtime, stage
from ..build.sources import GPT2_RANDOM, TINY, Source, parent_of
from ..build.stages.pruning import heads_per_layer

BASELINE = LM_REFERENCE  # the variant every LM ratio divides by (forward, generate, train)

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
    "ov-int8-weights-f32act": ("openvino", "ov_int8_weights", "ov_f32_activations"),
    "ov-int8-sym-weights": ("openvino", "ov_int8_sym_weights"),
    "ov-int8-sym-weights-f32act": ("openvino", "ov_int8_sym_weights", "ov_f32_activations"),
    "ov-int4-weights": ("openvino", "ov_int4_weights"),
    "ov-int8-static": ("openvino", "ov_int8_static"),
    "ov-int8-static-plain": ("openvino", "ov_int8_static_plain"),  # without SmoothQuant: see --model tiny-outliers
    "ov-bf16": ("openvino", "ov_bf16"),
    "ov-int8-static-bf16": ("openvino", "ov_int8_static", "ov_bf16"),
    "inc-int8": ("inc_int8",),
    "torchao-int8-dynamic": ("torchao_int8_dynamic",),  # PyTorch's own quantization (build/stages/torchao.py)
    "torchao-int8-weights": ("torchao_int8_weights",),
    "torchao-int4-weights": ("torchao_int4_weights",),
    "pruned-finetuned-int8-scratch": ("prune", "finetune", "int8_scratch"),
    "pruned-finetuned-ov-int8-static": ("prune", "finetune", "openvino", "ov_int8_static"),
    "pruned-finetuned-inc-int8": ("prune", "finetune", "inc_int8"),
    "llamacpp-f32": ("gguf_f32",),  # peer engine: the same model in llama.cpp
    "llamacpp-q8_0": ("gguf_q8_0",),
    "llamacpp-q4_0": ("gguf_q4_0",),
    "ct2-int8": ("ct2_int8",),  # peer engines: CTranslate2, ONNX Runtime
    "ct2-int8-float32": ("ct2_int8_float32",),
    "ort-int8-dynamic": ("ort_int8_dynamic",),
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
    eval_protocol: str = "windows"  # how perplexity is scored: windows | documents (measure/fields.quality)
    prune_fraction: float = 0.2
    finetune_epochs: float = 1.0
    finetune_max_steps: int = -1
    finetune_samples: int | None = 1024
    finetune_lr: float = 5e-5
    calibration_samples: int = 64
    distill_layers: tuple[int, ...] | None = None  # teacher blocks the student keeps; None: every other one
    lora_rank: int = 8
    lora_targets: tuple[str, ...] | None = None  # GPT-2 modules LoRA adapts; None: c_attn, c_proj, c_fc
    lora_lr: float = 1e-3
    adapter_sparsity: float = 0.8

    @classmethod
    def for_model(cls, model: str, **overrides: Any) -> Settings:
        """Defaults that fit each source: `tiny` learns fast, `gpt2-random` only needs a token fine-tune."""
        defaults = {TINY: cls(finetune_lr=5e-4), GPT2_RANDOM: cls(finetune_max_steps=8, eval_samples=32)}
        base = defaults.get(parent_of(model), cls())
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class ContextSpec:
    """The options a Context is made from: what another process needs to make the same one."""

    model: str
    data: str | None = None
    tokenizer: str | None = None
    settings: Settings = field(default_factory=Settings)
    device: str = "cpu"

    def open(self) -> Context:
        from ..build.data import load_corpus
        from ..build.sources import load_source

        corpus = load_corpus(self.data)
        return Context(load_source(self.model, corpus, self.tokenizer), corpus, self.settings, self.device, self)


@dataclass
class Context:
    source: Source
    corpus: Corpus
    settings: Settings = field(default_factory=Settings)
    device: str = "cpu"
    spec: ContextSpec | None = None

    @property
    def model_name(self) -> str:
        """The model as the user named it (`--model`)."""
        return self.spec.model if self.spec else self.source.name

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


@dataclass(frozen=True)
class Step:
    """One prefix of a chain: the stage that ends it (None: the source model), its config and its cache key."""

    stage: Stage | None
    config: Any
    key: str
    fingerprint: dict


def plan(chain: tuple[str, ...], ctx: Context) -> list[Step]:
    """Every prefix's key: the source's key, then, per stage, its name, config, code fingerprint and library
    versions, each chained onto the previous key. A change to a stage re-keys it and everything after it."""
    saver = runtime("torch")
    code = fingerprint((saver.module,), TORCH_LIBRARIES + saver.libraries)
    key = content_key(ctx.source.key, code)
    steps = [Step(None, None, key, code)]
    for name in chain:
        stage_ = stage(name)
        config, code = stage_.make_config(ctx), stage_.fingerprint()
        key = content_key(key, name, config, code)
        steps.append(Step(stage_, config, key, code))
    return steps


def _precision(stage: str | None, before: str) -> str:
    """A stage's precision replaces the one before it; "+ ..." adds to it (INT8 weights + bf16 compute)."""
    if not stage:
        return before
    return f"{before} {stage}" if stage.startswith("+") else stage


def _torch_info(model: torch.nn.Module) -> dict:
    """`stage_notes`: what stages recorded in the config (LoRA's trainable %, adapter sizes, ...), for the report."""
    return {"parameters": parameter_count(model), "heads_per_layer": heads_per_layer(model),
            "precision": precision_of(model), "stage_notes": notes(model.config)}


def _provenance(ctx: Context, steps: list[Step]) -> dict:
    """Which code and libraries built this entry: recorded in info.json and carried by every benchmark row."""
    libraries: dict = {}
    for step in steps:
        libraries.update(step.fingerprint["libraries"])
    return {"key": steps[-1].key, "source": ctx.source.key, "git_commit": project_commit(),
            "code": {step.stage.name if step.stage else "source": step.fingerprint["code"] for step in steps},
            "libraries": libraries, "built_at": time.time()}


def build(name: str, ctx: Context, chain: tuple[str, ...] | None = None) -> Built:
    """Build (or load from cache) variant `name` on `ctx.device`."""
    if chain is None and name not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; known variants: {', '.join(VARIANTS)}")
    chain = VARIANTS[name] if chain is None else chain
    check_chain(chain, ctx.device)
    steps = plan(chain, ctx)
    model, current, info, path = None, "torch", {}, None
    where, spent = f"{ctx.device}/{name}", 0.0
    for depth, step in enumerate(steps):
        built_now = False

        def make(out: Path) -> None:
            nonlocal model, current, info, built_now
            say(f"build {where}: " + (f"stage {depth}/{len(chain)} {step.stage.name}" if step.stage else "source copy"))
            if step.stage is None:  # a private copy: stages work in place and the source is shared
                model = fresh_copy(ctx.source.model)
            else:
                model = runtime(current).load(path, ctx.device) if model is None else model
                model = step.stage.apply(model.to(ctx.device) if current == "torch" else model, step.config)
                current = step.stage.gives
                info = {**info, "precision": _precision(step.stage.precision, info["precision"])}
            if current == "torch":
                info = {**info, **_torch_info(model)}
            else:  # what an exporter says of its output (e.g. whether INC's embedding stayed float)
                info = {**info, "stage_notes": {**info.get("stage_notes", {}), **getattr(model, "stage_notes", {})}}
            runtime(current).save(model, out, ctx.source.tokenizer)
            info = {**info, "runtime": current, "build": _provenance(ctx, steps[: depth + 1])}
            (out / "info.json").write_text(json.dumps(info))
            built_now = True

        label = f"{ctx.source.name}: {' > '.join(chain[:depth]) or 'source'}"
        started = time.monotonic()
        path = cached_dir("variants", step.key, make, meta={"label": label, "fingerprint": step.fingerprint["code"]})
        if built_now:
            spent += time.monotonic() - started
        else:  # cached: read its record, load the model only if something needs it
            info = json.loads((path / "info.json").read_text())
            current, model = info["runtime"], None
    if spent:
        say(f"build {where}: done in {spent:.0f} s")
    add_build(where, spent or None)
    if model is None:
        model = runtime(current).load(path, ctx.device)
    elif current == "torch":
        model = model.to(ctx.device)
    if current == "torch":
        info = {**info, "precision": precision_of(model)}  # what was loaded, not what the recipe says
    return Built(name, chain, model, path, current, info)
