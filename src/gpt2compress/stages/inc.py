"""Intel Neural Compressor 3.x static INT8 through its PT2E path (no IPEX needed).

export (dynamic batch and sequence) -> `prepare(get_default_static_config())` ->
calibration forwards -> `convert` -> `torch.compile` with inductor freezing, which
lowers the Q/DQ graph to oneDNN int8 kernels. Weights are int8 per channel
(symmetric), activations uint8 per tensor (min-max).

Three things INC does not do for GPT-2, done here:
- GPT-2's `Conv1D` layers are swapped for the equivalent `nn.Linear` (INC only annotates linear);
- the int8 weights are constant-folded, else the saved graph keeps fp32 weights;
- on CPUs without VNNI, weights use 7 bits ([-64, 63]): the AVX2 u8*s8 kernel sums pairs
  in int16 and saturates with full-range weights (fbgemm's `reduce_range` idea).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutput
from transformers.pytorch_utils import Conv1D

from ..data import Windows
from ..hardware import has_vnni


@dataclass(frozen=True)
class INCConfig:
    calibration: Windows
    batch_size: int = 8
    reduce_range: bool | None = None  # None: only where the CPU lacks VNNI


def conv1d_to_linear(model: nn.Module) -> nn.Module:
    """Conv1D computes x @ W + b with W (in, out); nn.Linear with W^T is exactly the same."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                linear = nn.Linear(*child.weight.shape, dtype=child.weight.dtype)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
    return model


class _Logits(nn.Module):
    """What is exported: tokens in, logits out, no KV cache."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


@contextlib.contextmanager
def _weight_range(enabled: bool):
    import neural_compressor.torch.algorithms.pt2e_quant.utility as utility

    original = utility.create_quant_spec_from_config

    def seven_bit(dtype, sym, granularity, algo, is_dynamic=False):
        spec = original(dtype, sym, granularity, algo, is_dynamic=is_dynamic)
        if spec.dtype == torch.int8 and not spec.is_dynamic:
            spec = dataclasses.replace(spec, quant_min=-64, quant_max=63)
        return spec

    if enabled:
        utility.create_quant_spec_from_config = seven_bit
    try:
        yield
    finally:
        utility.create_quant_spec_from_config = original


def _fold_int8_weights(graph_module) -> None:
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint, constant_fold

    constant_fold(graph_module, _quant_node_constraint)
    graph_module.graph.eliminate_dead_code()
    used = {n.target for n in graph_module.graph.nodes if n.op == "get_attr"}
    for name, _ in list(graph_module.named_parameters()) + list(graph_module.named_buffers()):
        if name not in used:  # the fp32 weights the folded int8 constants replaced
            owner, _, attr = name.rpartition(".")
            delattr(graph_module.get_submodule(owner) if owner else graph_module, attr)
    graph_module.recompile()


class INCModel(nn.Module):
    """The quantized graph, compiled, behind the usual `model(input_ids=, attention_mask=).logits` call."""

    def __init__(self, graph: nn.Module, example: tuple[torch.Tensor, torch.Tensor] | None = None):
        super().__init__()
        import torch._inductor.config as inductor

        inductor.freezing = True  # lets inductor fold weights into oneDNN int8 linear kernels
        self.graph, self.example = graph, example
        self.compiled = torch.compile(graph, dynamic=True)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_) -> CausalLMOutput:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        return CausalLMOutput(logits=self.compiled(input_ids, mask))

    def save_pretrained(self, out_dir: Path) -> None:
        """INC's format: the exported program re-exported with the example + its qconfig.json."""
        self.graph.save(self.example, str(out_dir))


def _example(windows: Windows) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch 2: an example of batch 1 would specialise the exported batch dimension to 1."""
    return windows.input_ids[:2], windows.attention_mask[:2]


def quantize_inc(model: nn.Module, config: INCConfig) -> INCModel:
    from torch.export import Dim
    from neural_compressor.torch.export import export
    from neural_compressor.torch.quantization import convert, get_default_static_config, prepare

    model = conv1d_to_linear(model.float().eval().cpu())
    example = _example(config.calibration)
    batch, seq = Dim("batch", min=1, max=1024), Dim("seq", min=2, max=model.config.n_positions)
    exported = export(_Logits(model).eval(), example, dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}))
    reduce_range = not has_vnni() if config.reduce_range is None else config.reduce_range
    with _weight_range(reduce_range):
        prepared = prepare(exported, get_default_static_config(), example_inputs=example)
    with torch.no_grad():
        for b in config.calibration.batches(config.batch_size):
            prepared(b["input_ids"], b["attention_mask"])
    quantized = convert(prepared)
    _fold_int8_weights(quantized)
    return INCModel(quantized, example)


def load_inc(path: Path) -> INCModel:
    from neural_compressor.torch.quantization import load

    return INCModel(load(str(path)))
