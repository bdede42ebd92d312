"""Every compression stage, by name.

A stage is a plain function `(model, config) -> model`. The registry adds what a
runner needs to chain them: how to make the config from the run's data and
settings, which devices the result runs on, and which runtime it produces
("torch", "openvino", "inc", "bnb" or "llamacpp"), so a chain can be checked before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .attention import AttentionConfig, flash_attention_2, set_attention
from .bnb import BnbConfig, bitsandbytes_missing, quantize_bnb
from .distill import DistillConfig, distill
from .finetune import FinetuneConfig, finetune
from .int8_scratch import Int8Config, quantize_int8_scratch
from .llamacpp import llama_cpp_missing
from .precision import PrecisionConfig, cast, mixed_precision, native_bf16
from .pruning import PruneConfig, prune_attention_heads

if TYPE_CHECKING:
    from ..variants import Context

CPU, CUDA = "cpu", "cuda"


class StageNotApplicable(ValueError):
    """The stage cannot run on this device or input; the runner skips it with this reason."""


@dataclass(frozen=True)
class Stage:
    name: str
    apply: Callable[[Any, Any], Any]
    make_config: Callable[[Context], Any]
    devices: tuple[str, ...]
    takes: str = "torch"  # runtime of the input model
    gives: str = "torch"  # runtime of the output model
    precision: str | None = None  # None: unchanged from the input
    about: str = ""
    unsupported: Callable[[str], str | None] = lambda device: None  # the reason it cannot run, if any


def _openvino(model, config):
    from .openvino import to_openvino

    return to_openvino(model, config)


def _ov_int8_weights(model, config):
    from .openvino import quantize_weights_int8

    return quantize_weights_int8(model, config)


def _ov_int8_static(model, config):
    from .openvino import quantize_static_int8

    return quantize_static_int8(model, config)


def _inc_int8(model, config):
    from .inc import quantize_inc

    return quantize_inc(model, config)


def _lora(model, config):
    from .lora import lora_finetune

    return lora_finetune(model, config)


def _gguf(model, config):
    from .llamacpp import to_gguf

    return to_gguf(model, config)


def _gguf_config(ctx: Context, outtype: str):
    from .llamacpp import LlamaCppConfig, installed_version

    return LlamaCppConfig(outtype, installed_version(), tokenizer=ctx.source.tokenizer)


def _training(ctx: Context, learning_rate: float) -> FinetuneConfig:
    """Every training stage (finetune, distill, lora): the run's fine-tuning data and budget."""
    s = ctx.settings
    return FinetuneConfig(ctx.train, epochs=s.finetune_epochs, max_steps=s.finetune_max_steps, learning_rate=learning_rate)


def _distill_config(ctx: Context) -> DistillConfig:
    return DistillConfig(_training(ctx, ctx.settings.finetune_lr), keep_layers=ctx.settings.distill_layers)


def _lora_config(ctx: Context, sparsity: float = 0.0):
    from .lora import AdapterSpec, LoraConfig

    return LoraConfig(_training(ctx, ctx.settings.lora_lr), AdapterSpec(rank=ctx.settings.lora_rank), sparsity=sparsity)


def _ov_config(ctx: Context):
    from .openvino import OpenVINOConfig

    return OpenVINOConfig(calibration=ctx.calibration, seq_len=ctx.settings.seq_len)


def _inc_config(ctx: Context):
    from .inc import INCConfig

    return INCConfig(calibration=ctx.calibration)


STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        Stage("bf16", cast, lambda ctx: PrecisionConfig("bf16"), (CPU, CUDA), precision="bf16",
              about="cast weights and compute to bfloat16 (CPU with AVX-512 BF16/AMX; Ampere+ GPUs)",
              unsupported=native_bf16),
        Stage("fp16", cast, lambda ctx: PrecisionConfig("fp16"), (CUDA,), precision="fp16",
              about="cast weights and compute to float16 (GPU tensor cores)"),
        Stage("mixed_fp16", mixed_precision, lambda ctx: PrecisionConfig("fp16"), (CUDA,), precision="mixed-fp16",
              about="fp32 weights, forward under torch.autocast(float16) (seed 002's Mixed)"),
        Stage("mixed_bf16", mixed_precision, lambda ctx: PrecisionConfig("bf16"), (CPU, CUDA), precision="mixed-bf16",
              about="fp32 weights, forward under torch.autocast(bfloat16)", unsupported=native_bf16),
        Stage("attn_eager", set_attention, lambda ctx: AttentionConfig("eager"), (CPU, CUDA),
              about="explicit softmax(QK^T)V attention instead of the default SDPA kernel"),
        Stage("attn_flash2", set_attention, lambda ctx: AttentionConfig("flash_attention_2"), (CUDA,),
              about="FlashAttention-2 kernels (Ampere+, half precision)", unsupported=flash_attention_2),
        Stage("bnb_int8", quantize_bnb, lambda ctx: BnbConfig("int8", device=ctx.device), (CUDA,), gives="bnb",
              precision="int8-w (LLM.int8)", about="bitsandbytes LLM.int8() weights with fp16 outlier columns",
              unsupported=bitsandbytes_missing),
        Stage("bnb_nf4", quantize_bnb, lambda ctx: BnbConfig("nf4", device=ctx.device), (CUDA,), gives="bnb",
              precision="nf4", about="bitsandbytes 4-bit NF4, double quantization, fp16 compute (QLoRA)",
              unsupported=bitsandbytes_missing),
        Stage("prune", prune_attention_heads,
              lambda ctx: PruneConfig(ctx.calibration, ctx.settings.prune_fraction), (CPU, CUDA),
              about="remove the least important attention heads of every layer (Michel et al. 2019)"),
        Stage("finetune", finetune, lambda ctx: _training(ctx, ctx.settings.finetune_lr), (CPU, CUDA),
              about="recover quality with transformers.Trainer"),
        Stage("int8_scratch", quantize_int8_scratch, lambda ctx: Int8Config(), (CPU, CUDA), precision="int8-w",
              about="from-scratch per-tensor symmetric INT8 weights, dequantized in forward"),
        Stage("openvino", _openvino, _ov_config, (CPU,), gives="openvino", precision="fp32",
              about="export to OpenVINO IR through optimum-intel"),
        Stage("ov_int8_weights", _ov_int8_weights, _ov_config, (CPU,), takes="openvino", gives="openvino",
              precision="int8-w", about="NNCF weight-only INT8 of the OpenVINO IR"),
        Stage("ov_int8_static", _ov_int8_static, _ov_config, (CPU,), takes="openvino", gives="openvino",
              precision="int8-wa", about="NNCF static INT8 (weights and activations) with calibration data"),
        Stage("inc_int8", _inc_int8, _inc_config, (CPU,), gives="inc", precision="int8-wa",
              about="Intel Neural Compressor 3.x static INT8 (PT2E)"),
        Stage("gguf_f32", _gguf, lambda ctx: _gguf_config(ctx, "f32"), (CPU,), gives="llamacpp", precision="fp32",
              about="llama.cpp peer: GGUF f32 through llama.cpp's converter, run by llama-cpp-python",
              unsupported=llama_cpp_missing),
        Stage("gguf_q8_0", _gguf, lambda ctx: _gguf_config(ctx, "q8_0"), (CPU,), gives="llamacpp",
              precision="int8-w (q8_0)", about="llama.cpp peer: GGUF Q8_0 (8-bit blocks of 32 weights, fp16 scale)",
              unsupported=llama_cpp_missing),
        Stage("distill", distill, _distill_config, (CPU, CUDA),
              about="knowledge distillation into a shallower student initialised from the teacher's blocks"),
        Stage("lora", _lora, _lora_config, (CPU, CUDA),
              about="LoRA fine-tuning (peft), adapters merged back into the weights"),
        Stage("lora_pruned", _lora, lambda ctx: _lora_config(ctx, ctx.settings.adapter_sparsity), (CPU, CUDA),
              about="LoRA with L1-pruned adapters (mask kept through training), merged back"),
    ]
}


def check_chain(chain: tuple[str, ...], device: str) -> None:
    """Raise StageNotApplicable (with the reason) before building anything that cannot run."""
    runtime = "torch"
    for name in chain:
        if name not in STAGES:
            raise KeyError(f"unknown stage {name!r}; known stages: {', '.join(STAGES)}")
        stage = STAGES[name]
        if device not in stage.devices:
            raise StageNotApplicable(
                f"stage {name!r} does not apply to device {device!r} (runs on: {', '.join(stage.devices)})"
            )
        reason = stage.unsupported(device)
        if reason:
            raise StageNotApplicable(f"stage {name!r} does not apply to device {device!r}: {reason}")
        if stage.takes != runtime:
            raise StageNotApplicable(f"stage {name!r} takes a {stage.takes} model; the chain gives it a {runtime} one")
        runtime = stage.gives
