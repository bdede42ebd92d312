"""`--shard I/N`: one runner's share of the selected cases, when N runners of one class (a CI matrix) split a
tier. Every shard computes the same split from the same inputs: the selected test names and what each took in
the latest recorded run of an earlier commit (build + measure time, kept in the run's machine info); without
such a run, by count. Cases that share a trained build (`Case.build_group`) stay together, so a fine-tune
runs on one shard, not on each. Longest first onto the least-loaded shard (LPT), ties by name, so the split is
deterministic and balanced to within one group. The history merges the shards of one commit into one run.
"""

from __future__ import annotations

import statistics


def parse(spec: str) -> tuple[int, int]:
    """"2/4" -> (2, 4): shard 2 of 4, counted from 1."""
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard {spec!r}: write I/N, e.g. --shard 1/2 (this runner's share of N)") from None
    if not 1 <= index <= count:
        raise ValueError(f"--shard {spec!r}: I must be between 1 and N")
    return index, count


def split(names: list[str], count: int, seconds: dict[str, float] | None = None,
          groups: dict[str, str] | None = None, free: frozenset[str] = frozenset()) -> dict[str, int]:
    """name -> shard (1..count). A group (cases that share a trained build) goes to one shard whole. Names
    without a recorded time weigh the median of those with one (1 without); `free` ones (skipped on this
    device) weigh nothing."""
    seconds, groups = seconds or {}, groups or {}
    known = [seconds[n] for n in names if seconds.get(n)]
    default = statistics.median(known) if known else 1.0
    members: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        members.setdefault(groups.get(name, name), []).append(name)
    weight = {g: sum(0.0 if n in free else seconds.get(n) or default for n in ns) for g, ns in members.items()}
    load, out = [0.0] * count, {}
    for group in sorted(members, key=lambda g: (-weight[g], g)):
        shard = min(range(count), key=lambda i: (load[i], i))
        load[shard] += weight[group]
        out.update({name: shard + 1 for name in members[group]})
    return out


def recorded_seconds(location: str | None, runner: str, commit: str | None) -> dict[str, float]:
    """Per test, what it took in the latest recorded run of this runner class on another commit ({} if none)."""
    from .store import HistoryError, open_store

    try:
        runs = open_store(location).runs(runner)
    except HistoryError:
        return {}
    for run in reversed(runs):
        took = run.info.machine.get("gpt2compress", {}).get("durations")
        if took and run.info.commit != commit:
            return took
    return {}
