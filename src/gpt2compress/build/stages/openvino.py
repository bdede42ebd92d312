"""OpenVINO IR through optimum-intel, INT8 through NNCF (optimum-intel 2.x has no INCQuantizer).

- `to_openvino`: export the in-memory PyTorch model (pruned ones too: the dummy KV
  cache used for tracing follows each layer's own head count) to an FP32 IR, loaded
  as `OVModelForCausalLM` so `generate()` and `.logits` work as in transformers
  (a `GPT2ForSequenceClassification` becomes an `OVModelForSequenceClassification`).
- `compress_weights`: NNCF weight-only INT8, asymmetric (NNCF's default) or symmetric, or INT4 in groups of 32
  (llama.cpp Q4_0's block); activations stay float.
- `quantize_static_int8`: NNCF static INT8 of weights and activations
  (model_type=transformer, SmoothQuant, fast bias correction) calibrated on real
  text windows. The LM head stays INT8: it is ~30 % of the FLOPs at 128 tokens.

The runtime is pinned to f32 inference precision so "fp32" means fp32 even on CPUs
whose OpenVINO default would silently switch to bf16. Two stages change how the same IR
runs, not the IR: `run_in_bf16` lifts the pin (its float ops in bf16 where the CPU has
bf16 natively), and `f32_activations` turns off the CPU plugin's dynamic INT8
quantization of activations in weight-compressed MatMuls. What they set is recorded in
the entry's info.json and read back on every load.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Windows
from ...runtimes.openvino.ir import (IR_FILE, OV_LIBRARIES, RUNTIME, RUNTIME_NOTE, _is_classifier, ir_inputs,
                                      load_openvino)
from ...core.progress import track
from ...core.registry import CPU, register_stage
from .precision import native_bf16

NNCF = ("nncf",)


def runtime_field() -> Any:
    """The compile properties an OpenVINO stage's output runs with: not hashed, a runtime choice, not the build."""
    return field(default_factory=lambda: dict(RUNTIME), metadata={"hash": False})


@dataclass(frozen=True)
class ExportConfig:
    use_cache: bool = True  # stateful KV cache: what generate() needs
    runtime: dict = runtime_field()


def _export_config(model, use_cache: bool, task: str):
    """GPT-2's export config, with dummy past key/values shaped per layer (pruned layers have fewer heads)."""
    from optimum.exporters.openvino.model_configs import GPT2OpenVINOConfig
    from optimum.utils import DummyPastKeyValuesGenerator, DummyTextInputGenerator

    head_dim = model.config.n_embd // model.config.n_head
    heads = [block.attn.num_heads for block in model.transformer.h]

    class PerLayerPast(DummyPastKeyValuesGenerator):
        def generate(self, input_name, framework="pt", int_dtype="int64", float_dtype="fp32"):
            shape = lambda h: (self.batch_size, h, self.sequence_length, head_dim)  # noqa: E731
            return [tuple(self.random_float_tensor(shape(h), framework=framework, dtype=float_dtype) for _ in "kv")
                    for h in heads]

    class PrunableGPT2Config(GPT2OpenVINOConfig):
        DUMMY_INPUT_GENERATOR_CLASSES = (DummyTextInputGenerator, PerLayerPast)
        DUMMY_PKV_GENERATOR_CLASS = PerLayerPast

    return PrunableGPT2Config(model.config, task=task, use_past=use_cache, use_past_in_inputs=use_cache)


@register_stage("openvino", lambda ctx: ExportConfig(), devices=(CPU,), gives="openvino", precision="fp32",
                libraries=OV_LIBRARIES, about="export to OpenVINO IR through optimum-intel")
def to_openvino(model, config: ExportConfig):
    """A classifier exports as text-classification: one forward, no KV cache to keep."""
    from optimum.exporters.openvino import export_from_model

    model = model.float().cpu().eval()
    classifier = _is_classifier(model.config)
    use_cache = config.use_cache and not classifier
    task = "text-classification" if classifier else "text-generation"
    with tempfile.TemporaryDirectory(prefix="gpt2compress-ov-") as out:
        export_from_model(model, out, task=f"{task}-with-past" if use_cache else task, stateful=use_cache,
                          custom_export_configs={"model": _export_config(model, use_cache, task)})
        fold_constant_shapes(Path(out) / IR_FILE)
        return load_openvino(out, config.runtime)  # the IR is read into memory; the builder saves it


def fold_constant_shapes(xml: Path) -> int:
    """Replace each ShapeOf of a weight by the shape itself; returns how many.

    A trained model's export keeps `ShapeOf(wte)` (the hidden size is read off the embedding table; a fresh
    model's LayerNorms fold it away). NNCF then quantizes the table for its Gather and MatMul but the fp32
    table stays in the IR for that ShapeOf alone: an INT8 model larger than its fp32 one."""
    import openvino as ov
    import openvino.opset13 as ops

    model = ov.Core().read_model(xml)
    folded = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() == "ShapeOf" and op.input_value(0).get_node().get_type_name() == "Constant":
            dtype = np.int64 if op.get_output_element_type(0) == ov.Type.i64 else np.int32
            shape = ops.constant(np.array(list(op.input_value(0).get_shape()), dtype=dtype))
            for target in list(op.output(0).get_target_inputs()):
                target.replace_source_output(shape.output(0))
            folded += 1
    if folded:
        model.validate_nodes_and_infer_types()
        with tempfile.TemporaryDirectory(dir=xml.parent) as tmp:
            ov.save_model(model, Path(tmp) / xml.name, compress_to_fp16=False)
            del model  # the old .bin may be mapped while it is read
            for written in Path(tmp).iterdir():
                written.replace(xml.parent / written.name)
    return folded


def _quantize(ov_model, config, quantization_config, calibration=None):
    """Through optimum-intel's OVQuantizer; `config.runtime` is what the result compiles with."""
    from optimum.intel import OVConfig, OVQuantizer

    with tempfile.TemporaryDirectory(prefix="gpt2compress-ovq-") as out:
        OVQuantizer.from_pretrained(ov_model).quantize(
            calibration_dataset=calibration, ov_config=OVConfig(quantization_config=quantization_config),
            save_directory=out)
        return load_openvino(out, config.runtime)


@dataclass(frozen=True)
class WeightCompressionConfig:
    """NNCF's data-free weight-only compression: no calibration data, activations stay float."""

    bits: int = 8
    sym: bool = False  # NNCF's INT8 default: u8 weights with a zero point per row
    group_size: int | None = None  # None: one scale per row; INT4 in groups of 32, llama.cpp Q4_0's block
    runtime: dict = runtime_field()


@register_stage("ov_int8_weights", lambda ctx: WeightCompressionConfig(), devices=(CPU,), takes="openvino",
                gives="openvino", precision="int8-w", libraries=OV_LIBRARIES + NNCF,
                about="NNCF weight-only INT8 of the OpenVINO IR")
@register_stage("ov_int8_sym_weights", lambda ctx: WeightCompressionConfig(sym=True), devices=(CPU,),
                takes="openvino", gives="openvino", precision="int8-w (sym)", libraries=OV_LIBRARIES + NNCF,
                about="NNCF weight-only INT8 of the OpenVINO IR, symmetric: a scale per row, no zero point")
@register_stage("ov_int4_weights", lambda ctx: WeightCompressionConfig(bits=4, sym=True, group_size=32),
                devices=(CPU,), takes="openvino", gives="openvino", precision="int4-w", libraries=OV_LIBRARIES + NNCF,
                about="NNCF weight-only INT4 of the OpenVINO IR (symmetric, groups of 32; embedding/LM head INT8)")
def compress_weights(ov_model, config: WeightCompressionConfig):
    """Symmetric weights matter where the CPU widens them to f32 (no VNNI): each weight costs a convert and a
    multiply-add, and a zero point adds a subtraction that the weight-bound b1 decode step feels.

    NNCF's data-free INT4 keeps the first and last layers (here the tied embedding / LM head) in INT8, its default
    for accuracy; every other MatMul's weights are INT4 with one scale per group (GPT-2's widths, 768 and 3072,
    divide by 32; a model's whose do not gets the largest group NNCF finds that does)."""
    from optimum.intel import OVWeightQuantizationConfig

    groups = {"group_size": config.group_size, "ratio": 1.0,
              "group_size_fallback": "adjust"} if config.group_size else {}  # a width 32 does not divide: smaller
    return _quantize(ov_model, config, OVWeightQuantizationConfig(bits=config.bits, sym=config.sym, **groups))


class CalibrationItems(list):
    """The calibration inputs, saying step i/N each time NNCF walks them (a pass per algorithm: SmoothQuant's
    statistics, min/max, bias correction), so a static INT8 build is not minutes of silence."""

    def __iter__(self):
        return iter(track(list.__iter__(self), "calibration pass", total=len(self), bar=False))


def _calibration_inputs(ov_model, windows: Windows) -> CalibrationItems:
    """One IR input dict per window."""
    names = set(ov_model.input_names)
    return CalibrationItems(ir_inputs(names, b["input_ids"].numpy(), b["attention_mask"].numpy())
                            for b in windows.batches(1))


@dataclass(frozen=True)
class StaticInt8Config:
    calibration: Windows  # the context's calibration windows (--seq-len tokens, Settings.calibration_samples)
    smooth_quant_alpha: float = 0.5
    runtime: dict = runtime_field()


@register_stage("ov_int8_static", lambda ctx: StaticInt8Config(ctx.calibration), devices=(CPU,), takes="openvino",
                gives="openvino", precision="int8-wa", libraries=OV_LIBRARIES + NNCF,
                about="NNCF static INT8 (weights and activations) with calibration data")
def quantize_static_int8(ov_model, config: StaticInt8Config):
    import nncf
    from optimum.intel import OVQuantizationConfig
    from optimum.intel.openvino.quantization import OVCalibrationDataset

    items = _calibration_inputs(ov_model, config.calibration)
    quantization = OVQuantizationConfig(bits=8, num_samples=len(items), model_type="transformer",
                                        fast_bias_correction=True, smooth_quant_alpha=config.smooth_quant_alpha)
    return _quantize(ov_model, config, quantization, OVCalibrationDataset(nncf.Dataset(items)))


def with_runtime(ov_model, properties: dict[str, str]):
    """The same IR, compiled with `properties` over what it ran with; recorded so a cached entry loads the same."""
    runs = {**getattr(ov_model, "stage_notes", {}).get(RUNTIME_NOTE, {}), **properties}
    with tempfile.TemporaryDirectory(prefix="gpt2compress-ovrt-") as out:
        ov_model.save_pretrained(out)
        model = load_openvino(out, {**RUNTIME, **runs})
    model.stage_notes = {**getattr(ov_model, "stage_notes", {}), RUNTIME_NOTE: runs}
    return model


@dataclass(frozen=True)
class InferencePrecisionConfig:
    hint: str = "bf16"


@register_stage("ov_bf16", lambda ctx: InferencePrecisionConfig(), devices=(CPU,), takes="openvino", gives="openvino",
                precision="+ bf16 compute", libraries=OV_LIBRARIES, unsupported=native_bf16,
                about="the same IR with OpenVINO's bf16 inference precision (its float ops in bf16)")
def run_in_bf16(ov_model, config: InferencePrecisionConfig):
    """Quantized ops stay INT8; what the IR keeps in float (LayerNorm, softmax, unquantized MatMuls) runs in bf16."""
    return with_runtime(ov_model, {"INFERENCE_PRECISION_HINT": config.hint})


@dataclass(frozen=True)
class DynamicQuantizationConfig:
    group_size: int = 0  # 0: off; OpenVINO's CPU default quantizes activations in groups of 32


@register_stage("ov_f32_activations", lambda ctx: DynamicQuantizationConfig(), devices=(CPU,), takes="openvino",
                gives="openvino", precision="+ f32 activations", libraries=OV_LIBRARIES,
                about="the same IR without the CPU plugin's dynamic INT8 quantization of activations")
def f32_activations(ov_model, config: DynamicQuantizationConfig):
    """A weight-only INT8 MatMul on CPU quantizes its activations per call by default (VNNI INT8 compute). That pays
    where compute bounds (prefill, batches); a b1 decode step is bound by reading the weights, and quantizing its one
    row costs more than it saves: weights dequantized in the kernel and f32 compute decode faster there."""
    return with_runtime(ov_model, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": str(config.group_size)})
