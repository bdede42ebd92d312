"""What the bench's forward call costs over the engine's own call, per runtime (issue 43, item 4).

For each variant, the callable the bench times (`forward_callable(scoring_engine(built, inputs), inputs)`: the
runtime's scorer, tensors in, a transformers output with torch logits out) against the engine's raw call on the same
compiled model and inputs, prepared once (OpenVINO's `infer` on numpy inputs with shared outputs, ONNX Runtime's
`session.run`, CTranslate2's `forward_batch`, llama.cpp's `reset` + `eval`, INC's compiled graph; for torch the
model called directly).
Rounds alternate bench / raw; the overhead is the median of per-round ratios, minus one.

    python investigations/harness_overhead.py --model gpt2-random --data ../shared/data/wikitext-2 \\
        --variants fp32,ov-int8-weights,inc-int8,ort-int8-dynamic,ct2-int8,llamacpp-q8_0 --rounds 30

Run it on a warm cache with nothing else on the machine, and name the CPU beside its numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch

from gpt2compress.build.hardware import cpu_model
from gpt2compress.core.registry import scoring_engine
from gpt2compress.core.variants import ContextSpec, Settings, build
from gpt2compress.measure.timing import forward_callable


def raw_call(built: Any, engine: Any, batch: dict[str, torch.Tensor]) -> Callable[[], Any]:
    """The engine's own call on what `engine` compiled, its inputs converted once, outside the timer."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if built.runtime == "openvino":
        from gpt2compress.runtimes.openvino.ir import ir_inputs

        feed = ir_inputs(engine.names, ids.numpy(), mask.numpy())
        return lambda: engine.request.infer(feed, share_outputs=True)
    if built.runtime == "onnxruntime":
        feed = {"input_ids": ids.numpy().astype(np.int64), "attention_mask": mask.numpy().astype(np.int64)}
        return lambda: engine.session.run(["logits"], feed)
    if built.runtime == "ctranslate2":
        rows = ids.tolist()
        return lambda: engine.generator.forward_batch(rows)
    if built.runtime == "llamacpp":
        llm, tokens = engine._scorer, ids[0].tolist()

        def llama() -> None:
            llm.reset()
            llm.eval(tokens)

        return llama
    if built.runtime == "inc":
        def compiled() -> Any:
            with torch.inference_mode():
                return engine.compiled(ids, mask)

        return compiled
    if built.runtime == "torch":
        def direct() -> Any:
            with torch.inference_mode():
                return engine(input_ids=ids, attention_mask=mask)

        return direct
    raise SystemExit(f"no raw call known for runtime {built.runtime!r}")


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gpt2-random")
    parser.add_argument("--data")
    parser.add_argument("--variants", default="fp32,ov-int8-weights,inc-int8,ort-int8-dynamic,ct2-int8,llamacpp-q8_0")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()
    ctx = ContextSpec(args.model, args.data, settings=Settings(seq_len=args.seq_len)).open()
    vocab = ctx.source.model.config.vocab_size
    ids = torch.randint(0, vocab, (1, args.seq_len), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    print(f"CPU: {cpu_model()}; torch threads {torch.get_num_threads()}; b1 x {args.seq_len}, {args.rounds} rounds")
    print(f"{'variant':24s} {'runtime':12s} {'bench ms':>9s} {'raw ms':>8s} {'overhead':>9s}")
    for name in args.variants.split(","):
        built = build(name, ctx)
        engine = scoring_engine(built, batch)
        bench, raw = forward_callable(engine, batch), raw_call(built, engine, batch)
        for _ in range(3):  # warm-up: first-call allocations, kernel choices
            bench(), raw()
        pairs = []
        for r in range(args.rounds):  # alternate which goes first, so neither always follows the other
            first, second = (bench, raw) if r % 2 == 0 else (raw, bench)
            a, b = timed(first), timed(second)
            pairs.append((a, b) if r % 2 == 0 else (b, a))
        ratio = statistics.median(b / r for b, r in pairs)
        bench_ms = statistics.median(b for b, _ in pairs) * 1e3
        raw_ms = statistics.median(r for _, r in pairs) * 1e3
        print(f"{name:24s} {built.runtime:12s} {bench_ms:9.2f} {raw_ms:8.2f} {100 * (ratio - 1):+8.2f}%", flush=True)


if __name__ == "__main__":
    main()
