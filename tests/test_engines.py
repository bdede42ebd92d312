"""The engines OpenVINO LMs are measured on: openvino-genai generation (the greedy tokens of optimum-intel's and
torch's loops, on its own per-token clock) and the stateless IR that scores windows."""

import os
import time

import pytest
import torch

from gpt2compress.core.registry import generation_engine
from gpt2compress.runtimes.openvino.genai import GenAIGenerator
from gpt2compress.measure.generation import cannot_generate, timed_generate
from gpt2compress.measure.isolation import Crashed
from gpt2compress.core.variants import build


@pytest.fixture
def ov_fp32(ctx):
    return build("ov-fp32", ctx)


def assert_same_greedy(got, want, model, prompt):
    """Equal greedy tokens, or, where a row first parts, two tokens the reference scores alike: a tiny random model's
    logits are nearly flat, so float noise between runtimes may flip a near-tie, and after that nothing compares."""
    for row in range(len(want)):
        parted = (got[row] != want[row]).nonzero()
        if not len(parted):
            continue
        step = int(parted[0])
        with torch.no_grad():
            logits = model(torch.cat([prompt[row], want[row, :step]])[None]).logits[0, -1]
        gap = float(logits[want[row, step]] - logits[got[row, step]])
        assert abs(gap) <= 1e-3 * float(logits.max() - logits.min()), (
            f"row {row} parts at step {step}: {got[row].tolist()} vs {want[row].tolist()}, logit gap {gap:.3g}")


def test_llmpipeline_generates_what_optimum_and_torch_generate(ctx, ov_fp32):
    prompt = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    prompt[0, -1] = ctx.source.tokenizer.eos_token_id  # a tied head's greedy next token is then EOS: kept out by both
    kw = {"attention_mask": torch.ones_like(prompt), "do_sample": False, "max_new_tokens": 8, "min_new_tokens": 8,
          "pad_token_id": 0}
    optimum = ov_fp32.model.generate(prompt, **kw)[:, 12:]  # compiled before a pipeline exists (see genai.py)
    reference = build("fp32", ctx).model
    torch_ = reference.generate(prompt, **kw)[:, 12:]
    engine = generation_engine(ov_fp32)
    assert isinstance(engine, GenAIGenerator) and engine.runtime == "openvino-genai"
    new = engine.new_token_ids(prompt, 8)
    assert new.shape == (2, 8)
    assert_same_greedy(new, optimum, reference, prompt)
    assert_same_greedy(new, torch_, reference, prompt)


def test_its_clock_gives_a_prefill_and_one_duration_per_decode_step(ov_fp32):
    engine = generation_engine(ov_fp32)
    assert cannot_generate(engine, batch_size=8) is None
    start = time.perf_counter()
    timing = timed_generate(engine, torch.randint(0, 300, (3, 10)), new_tokens=6)
    wall = time.perf_counter() - start
    assert (timing.batch_size, timing.prompt_len, timing.new_tokens) == (3, 10, 6)
    assert timing.stamped and timing.prefill_s > 0 and len(timing.decode_s) == 5 and all(s > 0 for s in timing.decode_s)
    assert timing.prefill_s + sum(timing.decode_s) <= wall  # its clock read in the right units: inside the call


def test_a_call_whose_process_died_is_answered_by_a_new_process_and_counted(ov_fp32):
    engine = generation_engine(ov_fp32)
    engine._child.kill()  # as openvino-genai's own crashes do (see genai.py)
    engine._child.join()
    timing = timed_generate(engine, torch.randint(0, 300, (1, 6)), new_tokens=3)
    assert len(timing.decode_s) == 2 and engine.restarts >= 1


def test_a_call_whose_infer_raised_is_answered_by_a_new_process_and_a_callers_error_is_raised_at_once(
        ov_fp32, tmp_path, monkeypatch):
    from flaky_genai import serve_flaky_once

    class Flaky(GenAIGenerator):
        worker = staticmethod(serve_flaky_once)

    monkeypatch.setenv("FLAKY_GENAI_FLAG", str(tmp_path / "raised"))
    engine = Flaky(ov_fp32.path, {})
    timing = timed_generate(engine, torch.randint(0, 300, (3, 10)), new_tokens=3)
    assert (tmp_path / "raised").exists() and engine.restarts >= 1 and len(timing.decode_s) == 2
    restarts = engine.restarts
    with pytest.raises(RuntimeError, match="not representable") as raised:  # int32 ids: the caller's mistake
        engine._ask((torch.zeros(1, 4, dtype=torch.int32).numpy(), 2))
    assert not isinstance(raised.value, Crashed) and engine.restarts == restarts


def test_a_process_that_keeps_dying_or_hangs_is_an_error_that_says_so(ov_fp32):
    class Impatient(GenAIGenerator):
        attempts, answer_s = 2, 0.001

    with pytest.raises(Crashed, match=r"failed 2 times in a row, each on a new process: .*no answer in 0 s: killed"):
        Impatient(ov_fp32.path, {})


def test_torch_variants_generate_themselves_and_openvino_through_genai_unless_opted_out(ctx, ov_fp32):
    fp32 = build("fp32", ctx)
    assert generation_engine(fp32) is fp32.model and isinstance(generation_engine(ov_fp32), GenAIGenerator)
    assert generation_engine(ov_fp32, loop="optimum") is ov_fp32.model  # --ov-generate optimum


def test_the_stateless_ir_scores_as_the_stateful_one(ctx, ov_fp32):
    from gpt2compress.core.registry import scoring_engine
    from gpt2compress.runtimes.openvino.scorer import StatelessScorer

    scorer = scoring_engine(ov_fp32)
    assert isinstance(scorer, StatelessScorer)
    assert scorer.request.query_state() == [] and ov_fp32.model.request is None  # no KV-cache state; not compiled
    ids = torch.randint(0, 300, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # right padding, as the eval windows have
    ours, theirs = scorer(ids, mask).logits, ov_fp32.model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(ours[0], theirs[0], atol=1e-5) and torch.allclose(ours[1, :8], theirs[1, :8], atol=1e-5)
    assert torch.allclose(ours[0], build("fp32", ctx).model(input_ids=ids[:1]).logits[0], atol=1e-4)


def test_every_round_prefills_its_prompt_in_a_process_of_its_own(ov_fp32):
    """The engine is set up with no prefix cache (which would skip the prefill of a prompt it saw), and its
    pipeline never lives in the bench's process (genai.py: a process that held one may segfault later)."""
    engine = generation_engine(ov_fp32)
    assert engine.prefix_caching is False
    assert engine._child.is_alive() and engine._child.pid != os.getpid()
    child = engine._child
    del engine
    child.join(10)
    assert child.exitcode == 0  # told to stop, it left without teardown


def test_a_call_that_kills_every_process_is_a_clear_error(ov_fp32):
    class Doomed(GenAIGenerator):
        attempts = 2

        def _exchange(self, request):
            if request is not None:
                self._child.kill()
                self._child.join()
            return super()._exchange(request)

    engine = Doomed(ov_fp32.path, {})
    with pytest.raises(Crashed, match=r"failed 2 times in a row, .*: openvino-genai.s process died: signal 9"):
        engine.new_token_ids(torch.randint(0, 300, (1, 4)), 2)
    assert engine.restarts == 1


def test_the_timed_shape_runs_on_a_static_compile_and_other_shapes_on_a_dynamic_one(ov_fp32):
    from gpt2compress.core.registry import scoring_engine

    scorer = scoring_engine(ov_fp32, [{"input_ids": torch.zeros(1, 16, dtype=torch.long)}])
    static = scorer.request
    assert list(scorer.requests) == [(1, 16)] and static.get_compiled_model().input("input_ids").get_partial_shape() \
        .is_static  # compiled for the timed batch before anything runs: the peak memory the bench reads holds it
    ids = torch.randint(0, 300, (2, 16))
    timed = scorer(ids[:1]).logits
    assert scorer.request is static
    other = scorer(ids).logits  # perplexity's batches: the dynamic compile, made on first use
    assert scorer.request is not static and set(scorer.requests) == {(1, 16), None}
    assert torch.allclose(timed[0], other[0], atol=1e-5)
