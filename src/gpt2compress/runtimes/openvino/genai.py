"""OpenVINO's own generation loop: openvino-genai's `LLMPipeline` on an OV variant's IR.

optimum-intel's `generate` is transformers' Python loop around one OpenVINO call per token; a
deployed OpenVINO LLM runs `LLMPipeline`'s C++ loop instead, on the same stateful IR with the same
greedy search. The bench times the OV variants' generation through it (their `runtime` reads
`openvino-genai`), on the pipeline's own per-token clock: `perf_metrics.raw_metrics` holds the
first token's time from the call's start (µs) and the instant each step's tokens were ready (ms),
the instants the logits processor stamps for torch. (Its `m_durations` splits each step's time
evenly over the batch's sequences, so a decode step is read off the ready times instead.) The prompts go in as
token ids (`TokenizedInputs`), so the IR needs no OpenVINO tokenizer beside it.

On CPU the pipeline runs continuous batching with prefix caching on by default: the same prompt again
then reuses its KV cache, and a 128-token prefill at the 124M shape "took" 8 ms instead of ~55 ms. The bench
times every round's full prefill (as it does torch's and llama.cpp's), so prefix caching is off. (The SDPA
attention backend, the stateful IR with no prefix cache at all, also prefills every call, but decoded at 101
tokens/s where paged attention did 140: 124M int8 weights, AMD EPYC Zen 4.)

It runs in a child process of its own (spawned from `genai_worker`, which imports no torch; it leaves with
`os._exit`). In openvino-genai 2026.4.1, a process that has held an `LLMPipeline` segfaults now and then in later
OpenVINO work or at exit: the next model export or `compile_model` died in 8 of 20 test runs with prefix caching
off, and in 3 of 10 with the SDPA backend (once at interpreter exit, after every test had passed). The child does
nothing after generating, so the bench's process never holds a pipeline. The timings are the pipeline's own clock,
read in the child, so the process boundary adds nothing to them.

The pipeline's own process is not safe either: about one process in 13 dies in its first `generate` or in the
first of a new shape (SIGSEGV in a memset inside the CPU plugin's infer, now and then SIGABRT or a hang; 51 of 660
processes, 1-9 of each 60 whatever the head size, thread count, CPU pinning or KV-cache size; the same rate with 1
call as with 20 of one shape). Once the same fault raised instead: infer read a garbage reshape pattern ("the shape
of input data (3.1.40) conflicts with the reshape pattern (-8388608.40)", a unit test's batch-3 call, AMD EPYC
Zen 1). So a call whose process dies, or whose pipeline raises from inside infer, is sent again to a new process,
up to `attempts` processes; each replacement is said in the progress lines and counted in the generate record's
`engine_restarts`. An error raised before infer (a wrong input type, a bad config) is the caller's and raised at
once. A round's time is the successful call's own clock: a failure costs wall time, never a number.
"""

from __future__ import annotations

import multiprocessing
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...measure.generation import GenerationTiming
from .genai_worker import serve
from .ir import is_causal_lm_ir, runtime_properties
from ...measure.isolation import Crashed, death
from ...core.progress import say

US, MS = 1e-6, 1e-3
INFER_FAILED = "src/inference/src/cpp/infer_request.cpp"  # where OpenVINO raises what failed inside an infer call



class GenAIGenerator:
    """`LLMPipeline` (in its own process) behind `timed_generate`, the call `generation.timed_generate` hands an
    engine."""

    runtime = "openvino-genai"

    prefix_caching = False  # else every round after the first skips the prompt's prefill

    attempts = 5  # processes one call may use: a fresh one replaces a process that died (see the module's doc;
    # at ~1 in 13 per process, 3 left ~1 call in 2,000 failed: CI once saw a batch-3 call die on 2 processes in a row)
    answer_s = 300.0  # a process silent this long is hung (seen once in ~300 starts): it is killed and replaced
    worker = staticmethod(serve)  # what the process runs (a module-level function: spawn pickles it by name)

    def __init__(self, ir_dir: str | Path, properties: dict[str, Any]):
        self._args = (str(ir_dir), properties, self.prefix_caching)
        self._child: Any = None
        self.restarts = 0  # processes that died and were replaced; a measurement reports it
        self._ask(None)  # returns once a pipeline is compiled

    def _ask(self, request: tuple | None) -> Any:
        """`request`'s answer from a live process; a process that dies on it, or whose infer raises, is replaced and
        the request sent again, `attempts` processes in all."""
        failures = []
        while len(failures) < self.attempts:
            try:
                if self._child is None:
                    self._start()
                return self._exchange(request) if request is not None else None
            except Crashed as err:
                failures.append(str(err))
                self._child = None
                if len(failures) < self.attempts:
                    self.restarts += 1
                    say(f"openvino-genai: {err}; retrying on a new process ({self.restarts} so far)")
        raise Crashed(f"openvino-genai failed {len(failures)} times in a row, each on a new process: "
                      + "; ".join(failures))

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self._child = context.Process(target=self.worker, args=(theirs, *self._args), daemon=True)
        self._child.start()
        theirs.close()
        self._stop = weakref.finalize(self, _stop, self._conn, self._child)
        self._exchange(None)  # the child's first message: compiled, or why not

    def _exchange(self, request: tuple | None) -> Any:
        try:
            if request is not None:
                self._conn.send(request)
            if not self._conn.poll(self.answer_s):
                self._stop()
                raise Crashed(f"openvino-genai's process gave no answer in {self.answer_s:.0f} s: killed")
            status, value = self._conn.recv()
        except (EOFError, OSError):  # the other end is gone: a closed pipe, a reset connection
            self._child.join(5)
            self._stop()
            raise Crashed(f"openvino-genai's process died: {death(self._child.exitcode)}") from None
        if status == "raise":
            if INFER_FAILED in str(value):  # the native fault the module's doc describes, raised instead of fatal
                self._stop()
                raise Crashed(f"openvino-genai's infer raised: {_last_line(value)}") from value
            raise value
        return value

    def generate(self, input_ids: torch.Tensor, new_tokens: int) -> tuple[list[list[int]], float, list[float]]:
        """Greedy search of exactly `new_tokens` tokens (EOS ignored, as `min_new_tokens` does for torch): the
        new tokens per sequence, the first token's time (µs from the call's start) and each step's ready time (ms)."""
        return self._ask((np.ascontiguousarray(input_ids.cpu().numpy().astype(np.int64)), new_tokens))

    def new_token_ids(self, input_ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
        return torch.tensor(self.generate(input_ids, new_tokens)[0])

    def timed_generate(self, input_ids: torch.Tensor, new_tokens: int) -> GenerationTiming:
        _, first_us, ready = self.generate(input_ids, new_tokens)
        if len(ready) != new_tokens:
            raise RuntimeError(f"openvino-genai stamped {len(ready)} steps for {new_tokens} new tokens: its per-token "
                               "clock changed; check raw_metrics in this openvino-genai version")
        decode = [(b - a) * MS for a, b in zip(ready, ready[1:])]
        return GenerationTiming(input_ids.shape[0], input_ids.shape[1], first_us * US, decode)


def _last_line(err: BaseException) -> str:
    """OpenVINO's message ends with what failed, after lines naming the source files it passed through."""
    return next((line for line in reversed(str(err).splitlines()) if line.strip()), repr(err))


def _stop(conn: Any, child: Any) -> None:
    try:
        conn.send(None)
    except (BrokenPipeError, OSError):
        pass
    child.join(10)
    if child.is_alive():
        child.kill()


def generation_engine(built: Any, loop: str = "genai") -> Any:
    """The runtime's generator: `LLMPipeline` on an LM's IR, the loop OpenVINO deploys (`loop="optimum"`:
    optimum-intel's `generate` on the model itself); a classifier does not generate."""
    if loop != "genai" or not is_causal_lm_ir(built.path):
        return built.model
    return GenAIGenerator(built.path, runtime_properties(built.path))
