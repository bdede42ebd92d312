"""Curating a history: import files once (by content), delete a bad run, prune old ones, export every run.

Each change is one transaction on the store (`Store.transaction`), on SQLite and PostgreSQL alike; a run's
results go with it. Acceptances and retirements are decisions, not runs: `history decisions` lists them and
`history accept … --revoke` takes one back.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Iterator

from .runs import load_run
from .store import HistoryError, RunInfo, Store, redact, runner_class

DAY = 86_400.0


def digest(path: Path) -> str:
    """What a results file holds, by content: the same file imported twice is one run."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def results_files(paths: list[str | Path]) -> Iterator[Path]:
    """Results JSON files, and every *.json under a folder (a pytest-benchmark storage: `.benchmarks/`)."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(path.rglob("*.json"))
        elif path.exists():
            yield path
        else:
            raise HistoryError(f"{path} does not exist: pass results JSON files or a pytest-benchmark storage folder")


def import_files(store: Store, paths: list[str | Path], runner: str | None = None) -> list[tuple[Path, int | str]]:
    """Each file a run: its commit from pytest-benchmark's `commit_info` when it has one. A file already imported
    (the same bytes) is skipped naming its run; files that are not gpt2compress results are skipped with the reason
    (another suite's benchmarks may share the storage)."""
    out: list[tuple[Path, int | str]] = []
    for path in results_files(paths):
        content = f"sha256={digest(path)}"
        known = [r.id for r in store.runs() if (r.info.source or "").endswith(content)]
        if known:
            out.append((path, f"skipped: already imported as run {known[0]}"))
            continue
        try:
            run = load_run(path)
        except ValueError as err:
            out.append((path, f"skipped: {err}"))
            continue
        commit = json.loads(path.read_text()).get("commit_info", {}) if path.suffix == ".json" else {}
        branch = commit.get("branch")  # pytest-benchmark's bare name; recorded runs carry the full ref
        ref = branch if not branch or branch.startswith("refs/") else f"refs/heads/{branch}"
        info = RunInfo(runner or runner_class(run.machine), commit.get("id"), [], ref,
                       machine=run.machine, source=f"{path}#{content}", recorded_at=path.stat().st_mtime)
        out.append((path, store.record(info, run.records)))
    return out


def delete(store: Store, run_ids: list[int]) -> int:
    """Remove these runs and their results; an id the store lacks is an error naming the listing command."""
    known = {r.id for r in store.runs()}
    missing = [i for i in run_ids if i not in known]
    if missing:
        raise HistoryError(f"no run {', '.join(map(str, missing))} in {redact(store.location)}; "
                           "`gpt2compress history runs` lists them")
    with store.transaction():
        cursor = store.connection.cursor()
        for run_id in run_ids:
            cursor.execute(store._sql("DELETE FROM results WHERE run_id = ?"), (run_id,))
            cursor.execute(store._sql("DELETE FROM runs WHERE id = ?"), (run_id,))
    return len(run_ids)


def to_prune(store: Store, keep_last: int | None = None, older_than_days: float | None = None,
             runner: str | None = None, now: float | None = None) -> list[int]:
    """The runs beyond the newest `keep_last` of each runner class and / or recorded over `older_than_days` ago."""
    if keep_last is None and older_than_days is None:
        raise HistoryError("prune needs --keep-last N or --older-than DAYS")
    now = time.time() if now is None else now
    by_class: dict[str, list] = {}
    for run in store.runs(runner):
        by_class.setdefault(run.info.runner_class, []).append(run)
    doomed = []
    for runs in by_class.values():
        old = [] if keep_last is None else runs[:len(runs) - keep_last]
        aged = [r for r in runs if older_than_days is not None and now - r.info.recorded_at > older_than_days * DAY]
        doomed += sorted({r.id for r in (*old, *aged)})
    return doomed


def revoke_acceptance(store: Store, commit: str, runner: str) -> int:
    """Take an acceptance back: that commit's regressions fail the gate again. How many were removed."""
    with store.transaction():
        cursor = store.connection.cursor()
        cursor.execute(store._sql("DELETE FROM accepted WHERE commit_sha = ? AND runner_class = ?"), (commit, runner))
        return cursor.rowcount


def export(store: Store) -> Iterator[str]:
    """One JSON line per run: its identity and every record as the results JSON carries it."""
    for stored in store.runs():
        run = store.load(stored.id)
        yield json.dumps({"id": stored.id, "info": run_info(stored.info), "rows": stored.rows,
                          "records": [r.to_extra_info() for r in run.records]}, default=str)


def run_info(info: RunInfo) -> dict[str, Any]:
    return {"runner_class": info.runner_class, "commit": info.commit, "parents": info.parents, "ref": info.ref,
            "pr": info.pr, "recorded_at": info.recorded_at, "source": info.source, "machine": info.machine}
