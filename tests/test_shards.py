"""--shard I/N (issue 15, item 4): N runners of one class split the selected cases — deterministically, balanced by
the times of an earlier recorded run, none twice — and the history merges the shards of a commit into one run."""

import json
import subprocess
import sys

import pytest

from gpt2compress.history.store import RunInfo, open_store
from gpt2compress.core.records import ForwardRecord
from gpt2compress.history.shards import parse, split

from helpers import ROOT


def test_a_split_is_deterministic_complete_and_balanced_by_time():
    names = [f"test_forward[v{i}-cpu]" for i in range(9)]
    seconds = {n: float(i + 1) for i, n in enumerate(names)}  # 1..9 s: 45 s in all
    share = split(names, 2, seconds)
    assert share == split(list(reversed(names)), 2, seconds)  # every shard computes the same split
    loads = [sum(seconds[n] for n in names if share[n] == s) for s in (1, 2)]
    assert abs(loads[0] - loads[1]) <= max(seconds.values()) and sorted(loads) == [22.0, 23.0]
    by_count = split(names, 2)
    assert sorted(list(by_count.values()).count(s) for s in (1, 2)) == [4, 5]  # no times: by count
    with pytest.raises(ValueError, match="write I/N"):
        parse("2")
    with pytest.raises(ValueError, match="between 1 and N"):
        parse("3/2")


def test_cases_that_share_a_trained_build_stay_on_one_shard_and_skips_weigh_nothing():
    from gpt2compress.core.cases import cases

    every = {f"{c.kind}[{c.variant}]": c for c in cases()}
    groups = {name: c.build_group for name, c in every.items()}
    finetuned = "lm:prune+finetune"
    assert groups["forward[pruned-finetuned-ov-int8-static]"] == groups["generate[pruned-finetuned]"] == finetuned
    assert groups["forward[distilled-lora-pruned-int8]"] == groups["train[distilled-lora]"] == "lm:distill"
    assert groups["classify[cls-ov-int8-static]"] == "classifier:finetune" != groups["forward[pruned-finetuned]"]
    assert groups["forward[ov-int8-static]"] == "ov-int8-static"  # nothing trained: the variant alone
    for count in (2, 3, 4):
        share = split(list(every), count, groups=groups)
        for group in set(groups.values()):
            assert len({share[n] for n in every if groups[n] == group}) == 1, group
    names = ["a", "b", "c", "d"]
    skipped = frozenset({"a", "b", "c"})
    assert split(names, 2, {n: 10.0 for n in names}, free=skipped) == {"d": 1, "a": 2, "b": 2, "c": 2}


def collected(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "bench"), "--collect-only", "-q",
                           "-p", "no:cacheprovider", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if "::" in line]


@pytest.mark.parametrize("tier", ["pr"])  # nightly is the whole selection: the same code path
def test_two_shards_of_a_tier_select_exactly_its_cases_none_twice(monkeypatch, tier):
    monkeypatch.delenv("GPT2COMPRESS_HISTORY", raising=False)
    everything = collected("--tier", tier)
    first, second = collected("--tier", tier, "--shard", "1/2"), collected("--tier", tier, "--shard", "2/2")
    assert first and second and not set(first) & set(second)
    assert sorted(first + second) == sorted(everything)
    if tier == "pr":  # forward and b1 generate of the shipped variants, nothing else
        cases = [line for line in everything if "NOTSET" not in line]  # (an empty kind collects one skip)
        assert {line.split("::")[0] for line in cases} == {"bench/test_forward.py", "bench/test_generate.py"}
        assert all("-1-" in line for line in cases if "test_generate" in line)


def shard_run(store, shard: str, variants: list[str], commit: str = "a" * 40, session: dict | None = None) -> int:
    records = [ForwardRecord(variant=v, device="cpu", batch_shape=[1, 128], perplexity=30.0,
                             latency_samples_ms=[10.0] * 5) for v in variants]
    machine = {"gpt2compress": {"shard": shard, "durations": {f"test_forward[{v}-cpu]": 3.0 for v in variants},
                                **(session or {})}}
    return store.record(RunInfo("cpu-test", commit, ref="refs/heads/main", machine=machine), records)


def test_the_history_merges_the_shards_of_a_commit_into_one_run(tmp_path):
    store = open_store(str(tmp_path / "h.sqlite"))
    one = shard_run(store, "1/2", ["fp32", "bf16"])
    assert shard_run(store, "2/2", ["int8-scratch"]) == one
    run = store.load(one)
    assert sorted(r.variant for r in run.records) == ["bf16", "fp32", "int8-scratch"]
    assert run.machine["gpt2compress"]["shards"] == ["1/2", "2/2"]
    assert len(run.machine["gpt2compress"]["durations"]) == 3
    assert shard_run(store, "1/2", ["fp32"], commit="b" * 40) != one  # another commit: a run of its own
    assert shard_run(store, "1/2", ["fp32"]) != one  # shard 1 again (a re-run): not merged twice
    json.dumps(run.machine)


def test_merged_shards_keep_every_outcome_and_one_failed_shard_fails_the_run(tmp_path):
    store = open_store(str(tmp_path / "h.sqlite"))
    one = shard_run(store, "1/2", ["fp32"], session={"exitstatus": 0, "cases": {"a": {"outcome": "passed"}}})
    shard_run(store, "2/2", ["bf16"], session={"exitstatus": 1, "cases": {"b": {"outcome": "failed"}}})
    [run] = [r for r in store.runs() if r.id == one]
    assert set(run.info.machine["gpt2compress"]["cases"]) == {"a", "b"}
    assert run.failure == "pytest exited 1: b"
    older = shard_run(store, "1/2", ["fp32"], commit="e" * 40)  # a shard from a bench that kept no outcomes
    shard_run(store, "2/2", ["bf16"], commit="e" * 40, session={"exitstatus": 0, "cases": {"b": {}}})
    assert next(r for r in store.runs() if r.id == older).failure is None


def test_the_pr_tier_is_forward_and_b1_generate_of_the_shipped_variants():
    from gpt2compress.core.cases import PR_VARIANTS, select
    from gpt2compress.core.variants import VARIANTS

    assert set(PR_VARIANTS) <= set(VARIANTS)
    assert {c.variant for c in select("forward", None, False, "pr")} == {"fp32", *PR_VARIANTS}
    assert not select("train", None, False, "pr") and not select("classify", None, False, "pr")
    assert len(select("forward", None, False, "nightly")) == len(select("forward", None, False))
    with pytest.raises(KeyError, match="known tiers: tour, pr, nightly"):
        select("forward", None, False, "weekly")


def test_a_bare_run_is_the_tour_and_the_full_matrix_is_one_flag_away():
    """`pytest bench/` alone: the tour (every kind, each INT8 path, minutes cold); --tier nightly: every case;
    naming --stages or --smoke chooses instead of the tour."""
    from gpt2compress.core.cases import TOUR_VARIANTS, cases, select, tier_of

    assert tier_of(None, False, None) == "tour" and tier_of("nightly", False, None) == "nightly"
    assert tier_of(None, True, None) is None and tier_of(None, False, ["inc-int8"]) is None
    tour = {kind: {c.variant for c in select(kind, None, False, "tour")} for kind in ("forward", "generate", "train",
                                                                                      "classify")}
    assert all(tour.values()) and tour["forward"] == {"fp32", *TOUR_VARIANTS}
    assert {"ov-int8-static", "int8-scratch", "ov-int8-weights", "pruned-finetuned-ov-int8-static"} <= tour["forward"]
    assert sum(len(v) for v in tour.values()) < len(cases()) / 3
