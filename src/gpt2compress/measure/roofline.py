"""How far a forward pass or a decode step is from this machine's ceiling (ceiling.py): the roofline model
(Williams, Waterman & Patterson, CACM 2009). A unit of work needs `macs` multiply-adds and must read `bytes`; the
fastest it can run is the larger of macs / peak and bytes / bandwidth (its floor), and the resource of the larger
term binds. A row's share of the ceiling is floor / measured time: 1.0 is as fast as this CPU allows.

The work is counted from the model's shape, not from an engine's own counters, so every runtime is held to the
same count:
- multiply-adds per token: every kept head's Q, K, V and output projections, the MLP, the LM head over the whole
  vocabulary, and attention (Q·Kᵀ and the weighted sum of V over the context the token sees; a forward pass
  computes the whole T×T score matrix, as eager attention does);
- bytes: the variant's weights as stored (its size on disk: the embedding is read as the LM head, once per pass or
  step), the fp32 logits written, and in decode the KV cache read (fp32 for fp32 variants, 2 bytes an element
  otherwise: what llama.cpp and OpenVINO keep by default). Activations that stay in cache are not counted.
Which peak applies follows how the variant computes: INT8 dot products where activations are quantized too
(`int8-wa`, ONNX Runtime's dynamic activations, llama.cpp's q8_0/q4_0 dot products), bf16 where the CPU has it
natively and the variant computes in it (bf16 stages; OpenVINO's default on such CPUs unless f32 activations are
forced), fp32 otherwise (weight-only INT8/INT4 widen weights to fp32 before multiplying).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..build.hardware import has_native_bf16
from .ceiling import Ceiling

FP32, BF16, INT8 = "fp32", "bf16", "int8"
CPU_ONLY = "the ceiling is probed on CPUs only"


@dataclass(frozen=True)
class Work:
    macs: float
    bytes: float


def _widths(config: Any, heads_per_layer: list[int] | None) -> list[int]:
    """The attention width each layer kept (heads × head size): what its Q, K, V and output projections use."""
    head = config.n_embd // config.n_head
    return [h * head for h in (heads_per_layer or [config.n_head] * config.n_layer)]


def token_macs(config: Any, heads_per_layer: list[int] | None, context: float) -> float:
    """Multiply-adds of one token seeing `context` tokens (its own included)."""
    d, inner = config.n_embd, config.n_inner or 4 * config.n_embd
    layers = sum(4 * d * a + 2 * d * inner + 2 * context * a for a in _widths(config, heads_per_layer))
    return layers + d * config.vocab_size


def forward_work(config: Any, heads_per_layer: list[int] | None, batch_shape: list[int], weight_bytes: int) -> Work:
    """One forward pass over a batch of b × T tokens, every position's logits out."""
    b, t = batch_shape
    return Work(b * t * token_macs(config, heads_per_layer, t), weight_bytes + 4 * b * t * config.vocab_size)


def decode_work(config: Any, heads_per_layer: list[int] | None, batch: int, prompt_len: int, new_tokens: int,
                weight_bytes: int, kv_element_bytes: int) -> Work:
    """One decode step of `batch` sequences at the mean context of the decode (prompt + half the new tokens)."""
    context = prompt_len + new_tokens / 2
    kv = batch * sum(2 * context * a for a in _widths(config, heads_per_layer)) * kv_element_bytes
    return Work(batch * token_macs(config, heads_per_layer, context),
                weight_bytes + kv + 4 * batch * config.vocab_size)


def compute_of(precision: str | None, runtime: str | None, native_bf16: bool) -> str:
    """Which multiply-add a variant's matmuls run on (see the module's docstring)."""
    p = (precision or FP32).lower()
    if "int8-wa" in p or "dynamic activations" in p or "q8_0" in p or "q4_0" in p:
        return INT8
    if "f32 activations" in p or not native_bf16:
        return FP32
    return BF16 if "bf16" in p or runtime == "openvino" else FP32


def roofline(work: Work, compute: str, ceiling: Ceiling, threads: int) -> dict[str, Any]:
    """What a row keeps: its work, the peak and bandwidth it is held to, and where they came from."""
    peak = ceiling.at(threads)
    kind = compute if compute in peak.gmacs else FP32  # bf16 without native support runs widened to fp32
    return {"macs": work.macs, "bytes": work.bytes, "compute": kind, "peak_gmacs": peak.gmacs[kind],
            "read_gbs": peak.read_gbs, "threads": peak.threads, "instruction": ceiling.kernels.get(kind, ""),
            **({"note": ceiling.note} if ceiling.note and kind != FP32 else {})}


def declared_precision(record: Any) -> str:
    """The row's precision and what its chain's stages declare (a torch model's precision is read from its tensors,
    which cannot tell dynamic INT8 activations from INT8 weights alone)."""
    from ..core.registry import STAGES

    declared = [STAGES[name].precision for name in record.chain if name in STAGES]
    return " ".join(p for p in [record.precision, *declared] if p)


def kv_element_bytes(precision: str | None) -> int:
    return 4 if (precision or FP32) == FP32 else 2


def against_ceiling(record: Any, work: Work | None, ceiling: Ceiling | str | None, threads: int) -> None:
    """Set `record.roofline` (or say in `record.missing` why there is none: a GPU row, a probe that could not run)."""
    if record.device != "cpu":
        record.missing["ceiling_share"] = CPU_ONLY
    elif not isinstance(ceiling, Ceiling):
        record.missing["ceiling_share"] = ceiling or "no ceiling was measured for this run"
    elif work is None:
        record.missing["ceiling_share"] = "the variant's size or shape is unknown"
    else:
        compute = compute_of(declared_precision(record), record.runtime, has_native_bf16())
        record.roofline = roofline(work, compute, ceiling, threads)
