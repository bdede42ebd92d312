"""How fast the saved history answers at scale (issue 14): `history gate` on a store of 1,000 runs × 200 rows
(target ≤ 2 s) and `history trend` over it (target ≤ 30 s), in fresh processes as CI calls them.

    python investigations/history_speed.py [--runs 1000] [--rows 200] [--dir /tmp/history-speed]

The store is synthetic (forward rows of fp32 and 99 variants on two devices, 20 paired rounds each) and
kept in --dir, so a second call only times.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

from gpt2compress.core.records import ForwardRecord
from gpt2compress.history.store import RunInfo, open_store


def rows(rng: random.Random, count: int) -> list[ForwardRecord]:
    """`count` forward cases: fp32 and count/2 − 1 variants on two devices, 20 paired rounds each."""
    out = []
    for i in range(count):
        device, name = ("cpu", "cuda")[i % 2], "fp32" if i < 2 else f"variant-{i // 2}"
        reference = ForwardRecord(variant="fp32", device=device, batch_shape=[1, 128], perplexity=30.0,
                                  latency_samples_ms=[100 * rng.uniform(0.98, 1.02) for _ in range(20)])
        variant = ForwardRecord(variant=name, device=device, batch_shape=[1, 128], size_on_disk_bytes=10**8,
                                perplexity=30.0 * rng.uniform(1.0, 1.1), peak_memory_forward_bytes=2 * 10**9,
                                latency_samples_ms=[50 * rng.uniform(0.98, 1.02) for _ in range(20)])
        out.append(reference if name == "fp32" else variant.against(reference))
    return out


def build(location: str, runs: int, per_run: int, repo: Path) -> str:
    """The store, and a git repo whose history holds each run's commit (the gate walks it)."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    commits = []
    for i in range(runs):
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=s", "-c", "user.email=s@s", "commit", "-q",
                        "--allow-empty", "-m", f"c{i}"], check=True)
    commits = subprocess.run(["git", "-C", str(repo), "rev-list", "--reverse", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.split()
    store, rng = open_store(location), random.Random(0)
    for i, commit in enumerate(commits):
        store.record(RunInfo("cpu-speed", commit, ref="refs/heads/main"), rows(rng, per_run))
    return commits[-1]


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--dir", default="/tmp/history-speed")
    args = parser.parse_args()
    out = Path(args.dir)
    location, repo = str(out / "history.sqlite"), out / "repo"
    if not Path(location).exists():
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        build(location, args.runs, args.rows, repo)
        print(f"built {args.runs} runs × {args.rows} rows in {time.perf_counter() - start:.0f} s")
    results = out / "new.json"
    import json

    results.write_text(json.dumps({"machine_info": {}, "benchmarks": [
        {"name": r.where(), "extra_info": r.to_extra_info()} for r in rows(random.Random(1), args.rows)]}))
    cli = [sys.executable, "-m", "gpt2compress.cli", "history"]
    budgets = Path(__file__).with_name("budgets.toml")  # as scripts/ci.sh calls it
    gate = timed([*cli, "gate", str(results), "--base", "main", "--history", location, "--runner-class", "cpu-speed",
                  "--budgets", str(budgets)], repo)
    trend = timed([*cli, "trend", "--out", str(out / "trend"), "--history", location], repo)
    every = timed([*cli, "trend", "--out", str(out / "trend-all"), "--history", location, "--last", "0"], repo)
    print(f"history gate: {gate:.2f} s (target ≤ 2 s); history trend: {trend:.1f} s (target ≤ 30 s; its default "
          f"window, the last 250 runs of the class); trend over all {args.runs} runs (--last 0): {every:.1f} s")


if __name__ == "__main__":
    main()
