"""ONNX Runtime as a peer runtime: the model exported by `torch.onnx.export` and quantized by ONNX Runtime's own
`quantize_dynamic` (INT8 weights, activations quantized per call: no calibration data).

The graph returns every position's logits and keeps no KV cache, so it answers forward (perplexity,
forward latency) and its generate cases skip with that reason. Pruned models export as they are (the
graph is traced from the module, per-layer head counts and all). An optional extra:
`pip install -e '.[peers]'`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from transformers.modeling_outputs import CausalLMOutput

from ...runtimes.pytorch import LogitsOnly
from ...core.registry import CPU, StageNotApplicable, register_runtime, register_stage
from ...runtimes.peers import ConvertedModel, converting_dir, not_a_float_gpt2, not_installed

ORT_LIBRARIES = ("onnxruntime", "onnx", "onnxscript")
FP32_FILE, INT8_FILE = "model-fp32.onnx", "model.onnx"


@dataclass(frozen=True)
class OnnxRuntimeConfig:
    weight_type: str = "QInt8"  # onnxruntime.quantization.QuantType
    per_channel: bool = True


def onnxruntime_missing(device: str) -> str | None:
    return (not_installed("onnxruntime", "peers", "onnxruntime") or not_installed("onnx", "peers", "onnx")
            or not_installed("onnxscript", "peers", "onnxscript"))


@register_stage("ort_int8_dynamic", lambda ctx: OnnxRuntimeConfig(), devices=(CPU,), gives="onnxruntime",
                precision="int8-w (dynamic activations)", libraries=ORT_LIBRARIES, unsupported=onnxruntime_missing,
                about="ONNX Runtime peer: torch.onnx export + quantize_dynamic INT8")
def to_onnxruntime_int8(model: Any, config: OnnxRuntimeConfig) -> OnnxRuntimeLM:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reason = not_a_float_gpt2(model, one_head_count=False)
    if reason:
        raise StageNotApplicable(reason)
    scratch = converting_dir("ort")
    example = torch.ones(1, 8, dtype=torch.long)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=model.config.n_positions)
    torch.onnx.export(LogitsOnly(model.float().cpu()).eval(), (example, torch.ones_like(example)),
                      str(scratch / FP32_FILE), input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                      dynamo=True, external_data=False, verbose=False)
    out = scratch / "ort"
    out.mkdir()
    quantize_dynamic(str(scratch / FP32_FILE), str(out / INT8_FILE), per_channel=config.per_channel,
                     weight_type=getattr(QuantType, config.weight_type))
    return OnnxRuntimeLM(out, scratch)


class OnnxRuntimeLM(ConvertedModel):
    """An ONNX Runtime session behind a transformers LM's forward (no `generate`: the graph has no KV cache)."""

    @cached_property
    def session(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        return onnxruntime.InferenceSession(str(self.path / INT8_FILE), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> CausalLMOutput:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        feed = {"input_ids": input_ids.cpu().numpy().astype(np.int64),
                "attention_mask": mask.cpu().numpy().astype(np.int64)}
        return CausalLMOutput(logits=torch.from_numpy(self.session.run(["logits"], feed)[0]))


register_runtime("onnxruntime", load=lambda path, device: OnnxRuntimeLM(path), libraries=ORT_LIBRARIES)
