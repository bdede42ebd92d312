"""The scoring engine of an OpenVINO causal LM: its IR compiled without the KV-cache state, so scoring a window is
one infer call, with no state to reset and no generation wrapper around it (optimum's forward resets the state and
runs its Python glue every call). The OV variants' forward latency, perplexity and HellaSwag are measured on it.

No stage imports it, so changing it rebuilds nothing; it is in every OpenVINO score's key (`measure/scores.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...measure.timing import first_batch
from .ir import IR_FILE, ir_inputs, is_causal_lm_ir, runtime_properties


def cut_state(model):
    """The stateful IR as a stateless one: each KV-cache ReadValue replaced by its initial (empty) value, the
    Assigns that would store the cache dropped. What is left computes the same logits for a whole sequence."""
    for read in [op for op in model.get_ordered_ops() if op.get_type_name() == "ReadValue"]:
        for target in list(read.output(0).get_target_inputs()):
            target.replace_source_output(read.input_value(0))
    for sink in list(model.get_sinks()):
        model.remove_sink(sink)
    for variable in list(model.get_variables()):
        model.remove_variable(variable)
    model.validate_nodes_and_infer_types()
    return model


def fixed_shape(model, batch: int, length: int):
    """The IR with static input shapes: [batch, length] for its 2-D inputs, [batch] for `beam_idx`."""
    import openvino as ov

    model.reshape({port.get_any_name(): ov.PartialShape([batch, length][:port.get_partial_shape().rank.get_length()])
                   for port in model.inputs})
    return model


class StatelessScorer:
    """`cut_state`'s IR, compiled. `timed_shape`, the (batch, length) the bench times, gets a compile of its own
    with static shapes, as one deploys a fixed-window scorer: the CPU plugin then picks its kernels and memory
    plan for that shape once, not per call (1.6-2.5 ms of a 57-62 ms b1 x 128 INT8 forward at 124M on a Zen 4,
    medians of two runs of rounds rotating through both compiles). Any other shape (perplexity's last batch,
    HellaSwag's endings) runs on a dynamic-shape compile, made on first use."""

    def __init__(self, path: str | Path, properties: dict, timed_shape: tuple[int, int] | None = None):
        import openvino as ov

        self.core, self.properties = ov.Core(), properties
        self.ir = cut_state(self.core.read_model(Path(path) / IR_FILE))
        self.names = {name for port in self.ir.inputs for name in port.get_names()}
        self.requests: dict[tuple[int, int] | None, object] = {}
        self.request = self._request(tuple(timed_shape) if timed_shape else None)

    def _request(self, shape: tuple[int, int] | None):
        if shape not in self.requests:
            model = self.ir if shape is None else fixed_shape(self.ir.clone(), *shape)
            self.requests[shape] = self.core.compile_model(model, "CPU", self.properties).create_infer_request()
        return self.requests[shape]

    def __call__(self, input_ids, attention_mask=None, **_):
        import torch
        from transformers.modeling_outputs import CausalLMOutput

        ids = input_ids.cpu().numpy()
        mask = np.ones_like(ids) if attention_mask is None else attention_mask.cpu().numpy()
        self.request = self._request(ids.shape if ids.shape in self.requests else None)  # profiling reads it
        # one copy out of OpenVINO's buffer (the next call reuses it); infer()'s own copy plus np.array was two,
        # 4 ms of a 56 ms b1x128 forward at 124M (full logits: 26 MB)
        logits = self.request.infer(ir_inputs(self.names, ids, mask), share_outputs=True)["logits"]
        return CausalLMOutput(logits=torch.from_numpy(logits.copy()))


def scoring_engine(built: Any, timed: Any = None, **properties: str) -> Any:
    """The runtime's scorer: for an LM, the stateless IR compiled with static shapes for `timed`'s batches (the
    inputs the caller will time; `properties` over the variant's own, e.g. PERF_COUNT="YES" for its per-layer
    counters); a classifier is scored by its optimum-intel model."""
    if not is_causal_lm_ir(built.path):
        return built.model
    shape = None if timed is None else tuple(first_batch(timed)["input_ids"].shape)
    return StatelessScorer(built.path, {**runtime_properties(built.path), **properties}, shape)
