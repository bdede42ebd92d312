"""The child process behind `genai.GenAIGenerator`: openvino-genai's `LLMPipeline` and nothing else.

Kept apart from genai.py so the spawned child imports numpy and OpenVINO only (2 s), not torch and the bench
(10 s): a child starts for every OpenVINO generate case.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def serve(conn: Any, ir_dir: str, properties: dict[str, Any], prefix_caching: bool) -> None:
    """The child: compile the pipeline, then answer (ids, new_tokens) until told to stop; never run teardown."""
    try:
        import openvino as ov
        import openvino_genai

        scheduler = openvino_genai.SchedulerConfig()  # held as long as the pipeline
        scheduler.enable_prefix_caching = prefix_caching
        # a batch's whole prompt in one prefill step: else it is split into chunks of 256 tokens, each stamped as a
        # step, and batch 8 x 128 tokens showed 68 ready times for 64 new tokens
        scheduler.dynamic_split_fuse = False
        scheduler.max_num_batched_tokens = 1 << 16
        pipeline = openvino_genai.LLMPipeline(ir_dir, "CPU", scheduler_config=scheduler, **properties)
        conn.send(("ok", None))
        while (request := conn.recv()) is not None:
            ids, new_tokens = request
            try:
                inputs = openvino_genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))
                config = openvino_genai.GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                         ignore_eos=True, do_sample=False)
                result = pipeline.generate(inputs, config)
                raw = result.perf_metrics.raw_metrics  # m_durations splits a step over the batch: use ready times
                conn.send(("ok", ([list(row) for row in result.tokens], raw.m_times_to_first_token[-1],
                                  list(raw.m_new_token_times))))
            except Exception as err:  # noqa: BLE001 - raised in the parent
                conn.send(("raise", err))
    except Exception as err:  # noqa: BLE001 - the pipeline could not be made: raised in the parent
        conn.send(("raise", err))
    finally:
        os._exit(0)
