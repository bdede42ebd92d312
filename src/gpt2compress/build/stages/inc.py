"""Intel Neural Compressor 3.x static INT8 through its PT2E path (no IPEX needed).

export (dynamic batch and sequence) -> `prepare(get_default_static_config())` ->
calibration forwards -> `convert` -> `torch.compile` with inductor freezing, which
lowers the Q/DQ graph to oneDNN int8 kernels. Weights are int8 per channel
(symmetric), activations uint8 per tensor (min-max).

Four things INC does not do for GPT-2, done here:
- GPT-2's `Conv1D` layers are swapped for the equivalent `nn.Linear` (INC only annotates linear);
- the int8 weights are constant-folded, else the saved graph keeps fp32 weights;
- the token embedding lookup reads INT8 rows (the tied LM head's), else its fp32 table stays beside them;
- on CPUs without VNNI, weights use 7 bits ([-64, 63]): the AVX2 u8*s8 kernel sums pairs
  in int16 and saturates with full-range weights (fbgemm's `reduce_range` idea).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutput

from ..data import Windows
from ..hardware import has_vnni
from ...runtimes.pytorch import LogitsOnly, conv1d_to_linear
from ...core.registry import CPU, register_runtime, register_stage

if TYPE_CHECKING:
    from ...core.variants import Context

INC_LIBRARIES = ("neural-compressor-pt", "torchao")


@dataclass(frozen=True)
class INCConfig:
    calibration: Windows
    batch_size: int = 8
    reduce_range: bool = False  # 7-bit weights, for CPUs without VNNI (see `inc_config`)


def inc_config(ctx: Context) -> INCConfig:
    """The CPU decides the weight range, so it is part of the key: a cache shared by two runners stays right."""
    return INCConfig(calibration=ctx.calibration, reduce_range=not has_vnni())


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
    _drop_unused(graph_module)


def _attr(graph_module, target: str) -> torch.Tensor:
    owner, _, name = target.rpartition(".")
    return getattr(graph_module.get_submodule(owner) if owner else graph_module, name)


def _int8_copy_of(graph_module, table: torch.Tensor):
    """The dequantize node of an INT8, per-row, symmetric copy of `table` (the tied LM head's), if any."""
    for node in graph_module.graph.nodes:
        if node.target is not torch.ops.quantized_decomposed.dequantize_per_channel.default:
            continue
        weight, scale, zero_point, axis, qmin, qmax = (node.args[i] for i in range(6))
        if weight.op != "get_attr" or axis != 0 or scale.op != "get_attr" or zero_point.op != "get_attr":
            continue
        q, s, z = (_attr(graph_module, n.target) for n in (weight, scale, zero_point))
        if q.shape != table.shape or bool(z.any()):
            continue
        expected = torch.ops.quantized_decomposed.quantize_per_channel(table.detach(), s, z, 0, qmin, qmax, q.dtype)
        if torch.equal(expected, q):
            return node
    return None


def quantize_embedding_lookup(graph_module, vocab_size: int) -> str:
    """PT2E quantizes matmuls, not lookups: the token embedding would stay fp32. In GPT-2 the embedding is the
    LM head (tied), whose INT8 copy PT2E did make, so the fp32 table would sit beside it (an "INT8" model at
    ~0.55x fp32's size at 124M). Rows are looked up in INT8 instead, times their per-row scale: in the tied
    head's own INT8 table where there is one, else in a per-row INT8 copy of the table (weight-only, e.g. a
    classifier, whose head is not the embedding). Returns what was done, for the benchmark row."""
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.target is not torch.ops.aten.embedding.default or node.args[0].op != "get_attr":
            continue
        table = _attr(graph_module, node.args[0].target)
        if table.dim() != 2 or table.shape[0] != vocab_size:  # positions (wpe) are not the vocabulary
            continue
        ids, dequantize = node.args[1], _int8_copy_of(graph_module, table)
        with graph.inserting_before(node):
            if dequantize is not None:
                int8, scale = dequantize.args[0], dequantize.args[1]
                how = "int8: rows of the tied INT8 LM head (one table), per-row scale"
            else:
                q, s = _per_row_int8(table)
                graph_module.register_buffer("_embedding_int8", q)
                graph_module.register_buffer("_embedding_scale", s)
                int8, scale = graph.get_attr("_embedding_int8"), graph.get_attr("_embedding_scale")
                how = "int8: its own per-row INT8 table (weight-only; no INT8 LM head shares it)"
            rows = graph.call_function(torch.ops.aten.embedding.default, (int8, ids))
            row_scale = graph.call_function(torch.ops.aten.embedding.default,
                                            (graph.call_function(torch.ops.aten.unsqueeze.default, (scale, 1)), ids))
            floats = graph.call_function(torch.ops.aten._to_copy.default, (rows,), {"dtype": torch.float32})
            looked_up = graph.call_function(torch.ops.aten.mul.Tensor, (floats, row_scale))
        node.replace_all_uses_with(looked_up)
        graph.erase_node(node)
        _drop_unused(graph_module)
        return how
    return "no token embedding lookup found"


def _per_row_int8(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric INT8 per row: row r is q[r] * s[r] with |q| <= 127."""
    scale = table.detach().abs().amax(dim=1).clamp_min(1e-12) / 127
    return torch.round(table.detach() / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def _drop_unused(graph_module) -> None:
    graph_module.graph.eliminate_dead_code()
    used = {n.target for n in graph_module.graph.nodes if n.op == "get_attr"}
    for name, _ in list(graph_module.named_parameters()) + list(graph_module.named_buffers()):
        if name not in used:  # the fp32 weights the folded int8 constants replaced
            owner, _, attr = name.rpartition(".")
            delattr(graph_module.get_submodule(owner) if owner else graph_module, attr)
    graph_module.recompile()


class INCModel(nn.Module):
    """The quantized graph, compiled, behind the usual `model(input_ids=, attention_mask=).logits` call."""

    def __init__(self, graph: nn.Module, example: tuple[torch.Tensor, torch.Tensor] | None = None,
                 embedding: str | None = None):
        super().__init__()
        self.stage_notes = {"inc_embedding": embedding} if embedding else {}  # reaches the benchmark row
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


@register_stage("inc_int8", inc_config, devices=(CPU,), gives="inc", precision="int8-wa", libraries=INC_LIBRARIES,
                about="Intel Neural Compressor 3.x static INT8 (PT2E)")
def quantize_inc(model: nn.Module, config: INCConfig) -> INCModel:
    from torch.export import Dim
    from neural_compressor.torch.export import export
    from neural_compressor.torch.quantization import convert, get_default_static_config, prepare

    model = conv1d_to_linear(model.float().eval().cpu())
    example = _example(config.calibration)
    batch, seq = Dim("batch", min=1, max=1024), Dim("seq", min=2, max=model.config.n_positions)
    exported = export(LogitsOnly(model).eval(), example, dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}))
    with _weight_range(config.reduce_range):
        prepared = prepare(exported, get_default_static_config(), example_inputs=example)
    with torch.no_grad():
        for b in config.calibration.batches(config.batch_size):
            prepared(b["input_ids"], b["attention_mask"])
    quantized = convert(prepared)
    _fold_int8_weights(quantized)
    return INCModel(quantized, example, quantize_embedding_lookup(quantized, model.config.vocab_size))


def load_inc(path: Path) -> INCModel:
    from neural_compressor.torch.quantization import load

    return INCModel(load(str(path)))


register_runtime("inc", load=lambda path, device: load_inc(path), libraries=INC_LIBRARIES)
