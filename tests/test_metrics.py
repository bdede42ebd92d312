import ctypes
import hashlib
import math
import threading
import time
from types import SimpleNamespace

import pytest
import torch

from gpt2compress.build.data import Windows
from gpt2compress.measure import pairing as measure
from gpt2compress.measure.timing import busy_threads, latency_stats, settle_threads
from gpt2compress.measure.memory import parameter_count, peak_memory, size_on_disk
from gpt2compress.measure.perplexity import perplexity

from helpers import random_windows


class UniformLM(torch.nn.Module):
    """Equal logits for every token: perplexity must be exactly the vocabulary size."""

    def __init__(self, vocab_size):
        super().__init__()
        self.vocab_size = vocab_size
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab_size))


def test_uniform_logits_give_vocab_size():
    assert perplexity(UniformLM(97), random_windows()) == pytest.approx(97, rel=1e-6)


def test_perplexity_independent_of_batch_size(model, windows):
    values = [perplexity(model, windows, batch_size=b) for b in (1, 2, 6)]
    assert values[0] == pytest.approx(values[1], rel=1e-5) == pytest.approx(values[2], rel=1e-5)


def test_perplexity_ignores_padding(model, windows):
    """Extra padding (any pad id) on every window changes nothing."""
    extra = 7
    ids = torch.cat([windows.input_ids, torch.full((len(windows), extra), 5)], dim=1)
    mask = torch.cat([windows.attention_mask, torch.zeros(len(windows), extra, dtype=torch.long)], dim=1)
    padded = Windows(ids, mask, "padded")
    assert perplexity(model, padded) == pytest.approx(perplexity(model, windows), rel=1e-5)


def test_perplexity_matches_hf_loss_on_unpadded(model):
    w = random_windows(ragged=False)
    with torch.no_grad():
        loss = model(input_ids=w.input_ids, labels=w.input_ids).loss
    assert perplexity(model, w, batch_size=len(w)) == pytest.approx(math.exp(loss), rel=1e-5)


def test_perplexity_rejects_all_padding(model):
    empty = Windows(torch.zeros(2, 8, dtype=torch.long), torch.zeros(2, 8, dtype=torch.long), "empty")
    with pytest.raises(ValueError, match="non-padding"):
        perplexity(model, empty)


def test_latency_stats_percentiles():
    stats = latency_stats([i / 1000 for i in range(1, 101)])
    assert stats["p50_ms"] == pytest.approx(50) and stats["p90_ms"] == pytest.approx(90)
    assert stats["p99_ms"] == pytest.approx(99) and stats["mean_ms"] == pytest.approx(50.5)


def test_peak_memory_sees_a_transient_allocation():
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # else the block may reuse heap that earlier tests freed: no RSS growth
    with peak_memory("cpu") as mem:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        block.add_(1)
        time.sleep(0.05)  # alive for 25 of the sampler's 2 ms polls, however the threads are scheduled
        del block
    assert mem.increase >= 48 * 2**20


def test_size_and_parameters(model, tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"x" * 5)
    assert size_on_disk(tmp_path) == 15
    assert parameter_count(model) == model.num_parameters()  # tied head counted once


def test_busy_threads_sees_a_running_thread_and_not_a_sleeping_one():
    stop, ids, data = threading.Event(), {}, bytes(32 * 2**20)

    def hashing():
        ids["hashing"] = threading.get_native_id()
        while not stop.is_set():
            hashlib.sha256(data)  # 32 MiB: milliseconds on a CPU, with the GIL released

    def sleeping():
        ids["sleeping"] = threading.get_native_id()
        stop.wait()

    threads = [threading.Thread(target=f) for f in (hashing, sleeping)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(1000):  # until the sleeper has reached its wait
            if len(ids) == 2 and ids["sleeping"] not in busy_threads():
                break
            time.sleep(0.001)
        seen = []
        for _ in range(20):
            seen.append(busy_threads())
            time.sleep(0.001)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert any(ids["hashing"] in s for s in seen)
    assert not any(ids["sleeping"] in s for s in seen)


def test_settle_threads_waits_while_a_thread_is_busy_and_gives_up_at_its_limit():
    answers = iter([{7}, {7}, {7}, set()])
    calls = []
    assert settle_threads(busy=lambda: calls.append(1) or next(answers)) is True
    assert len(calls) == 4  # asked until no thread was busy
    assert settle_threads(max_wait_s=0.01, busy=lambda: {7}) is False  # a pool that never sleeps: gives up


def test_paired_rounds_start_once_the_other_sides_threads_settled(monkeypatch):
    """A round of one runtime must not share the cores with the spin of the other's pool (torch's libgomp spins
    ~7 ms after a forward; an OpenVINO forward after it lost 3 ms of 55 on a 2-core Zen 4)."""
    order = []
    monkeypatch.setattr(measure, "settle_threads", lambda: order.append("settle") or True)
    times, base, unsettled = measure.alternate(lambda: order.append("variant"), lambda: order.append("reference"),
                                               rounds=2, warmup=1)
    assert len(times) == len(base) == 2 and unsettled == 0
    assert order == ["settle", "reference", "settle", "variant"] * 3


def test_rounds_whose_wait_gave_up_are_counted_and_most_of_them_is_a_problem(monkeypatch):
    from gpt2compress.core.records import ForwardRecord

    waits = iter([True, True,  # warm-up round: not counted
                  False, True, True, False, True, True, True, True])  # timed: gave up before the reference, the variant
    monkeypatch.setattr(measure, "settle_threads", lambda: next(waits))
    paired = measure.alternate(lambda: None, lambda: None, rounds=4, warmup=1)
    assert paired.unsettled == 2
    record = ForwardRecord()
    measure.note_pairing(record, paired)
    assert record.unsettled_rounds == 2 and record.problems == []  # half: the median pair can still be a clean one
    measure.note_pairing(record, paired._replace(unsettled=3))
    assert record.unsettled_rounds == 3 and "3 of 4 timed rounds started while another thread" in record.problems[0]
