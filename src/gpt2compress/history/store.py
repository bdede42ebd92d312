"""Saved histories: every run recorded — commit, parents, ref, PR, runner class, machine, every record — in one
store: an embedded SQLite file by default, PostgreSQL for a fleet of runners sharing one history.

    gpt2compress history record results.json [--commit SHA] [--ref REF] [--runner-class t4]
    gpt2compress history import .benchmarks/ old-results.json     # pytest-benchmark storage, results JSON
    gpt2compress history runs [--runner-class CLASS]

`--history PATH|postgresql://…` (or $GPT2COMPRESS_HISTORY) names the store. The schema is versioned: a store
written by a newer gpt2compress is refused, never rewritten. Records are stored as their `to_extra_info()` JSON
and read back through `records.from_extra_info`, the same path as a results file.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..build.hardware import isa_level
from ..core.records import Record, from_extra_info
from .runs import Run, failure, load_run

SCHEMA_VERSION = 1  # what a reader must understand; additions a v1 reader can ignore are MIGRATIONS, not versions
HISTORY_ENV = "GPT2COMPRESS_HISTORY"


class HistoryError(ValueError):
    """A store that cannot be used, or input that cannot be recorded; the message names the fix."""


def default_location() -> str:
    return os.environ.get(HISTORY_ENV) or str(Path.home() / ".cache" / "gpt2compress" / "history.sqlite")


def redact(url: str) -> str:
    """A database URL as it may be printed: without its password, in the authority (`user:pw@`) or the query
    (`?password=pw`, libpq's keyword form)."""
    url = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)


@dataclass
class RunInfo:
    """What identifies a run besides its records."""

    runner_class: str
    commit: str | None = None
    parents: list[str] = field(default_factory=list)
    ref: str | None = None
    pr: int | None = None
    machine: dict = field(default_factory=dict)
    recorded_at: float = field(default_factory=time.time)
    source: str | None = None  # the file it came from


@dataclass
class StoredRun:
    id: int
    info: RunInfo
    rows: int

    @property
    def failure(self) -> str | None:
        """Why this run is never a base (its pytest failed, or it never finished); None: it passed."""
        return failure(self.info.machine.get("gpt2compress", {}))


@dataclass
class Retirement:
    """A case a commit stopped measuring on purpose: from that commit on, its absence passes the gate."""

    case: str  # a case's `where()` (forward/cpu/ov-int8-static, generate/cpu/fp32-b1) or kind/device/variant
    commit: str
    runner_class: str
    reason: str

    def covers(self, record: Record) -> bool:
        return self.case in (record.where(), f"{record.kind}/{record.device}/{record.variant}")


DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (id {serial} PRIMARY KEY, commit_sha TEXT, parents TEXT NOT NULL, ref TEXT, "
    "pr INTEGER, runner_class TEXT NOT NULL, machine TEXT NOT NULL, recorded_at DOUBLE PRECISION NOT NULL, "
    "source TEXT)",
    "CREATE TABLE IF NOT EXISTS results (run_id INTEGER NOT NULL REFERENCES runs(id), kind TEXT NOT NULL, "
    "device TEXT NOT NULL, variant TEXT NOT NULL, shape TEXT NOT NULL, record TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS accepted (commit_sha TEXT NOT NULL, runner_class TEXT NOT NULL, reason TEXT NOT NULL, "
    "accepted_at DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS results_by_run ON results (run_id)",
    "CREATE INDEX IF NOT EXISTS runs_by_class ON runs (runner_class, commit_sha)",
)
# Additions an older reader can ignore, by name, in order; `meta.migrations` lists those a store has had. (A
# schema_version bump would make every PR branched before it refuse main's store.)
MIGRATIONS = {
    "retired": ("CREATE TABLE IF NOT EXISTS retired (case_name TEXT NOT NULL, commit_sha TEXT NOT NULL, "
                "runner_class TEXT NOT NULL, reason TEXT NOT NULL, retired_at DOUBLE PRECISION NOT NULL)",),
    "ceilings": ("CREATE TABLE IF NOT EXISTS ceilings (runner_class TEXT NOT NULL, measured_at DOUBLE PRECISION NOT "
                 "NULL, ceiling TEXT NOT NULL, source TEXT)",),  # `gpt2compress ceiling` and each run's probe
}


class Store:
    """One history, on either engine; every write is one transaction, so a failed record leaves nothing half-done."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.postgres = location.startswith(("postgresql://", "postgres://"))
        self.mark = "%s" if self.postgres else "?"
        self.connection = self._connect()
        self._migrate()

    def _connect(self) -> Any:
        if self.postgres:  # the history's own schema, made or moved into on first use (postgres.py)
            from .postgres import connect

            return connect(self.location, HistoryError, redact(self.location))
        if "://" in self.location:
            raise HistoryError(f"--history {redact(self.location)}: the history is an SQLite file path or a "
                               "postgresql:// URL")
        path = Path(self.location).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(path, timeout=60, isolation_level=None)  # transactions are explicit below
            connection.execute("PRAGMA schema_version").fetchone()  # a file that is not SQLite fails here
        except sqlite3.DatabaseError as err:
            raise HistoryError(f"--history {path} is not an SQLite database ({err}); point --history / "
                               f"${HISTORY_ENV} at a history file, or at a new path to start one") from None
        return connection

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.mark)

    def transaction(self) -> Any:
        """A write transaction: PostgreSQL's own (a write the role may not make: one line, postgres.py); SQLite's
        BEGIN IMMEDIATE, so two writers queue, not fail."""
        return _postgres_transaction(self) if self.postgres else _sqlite_transaction(self.connection)

    def _migrate(self) -> None:
        serial = "BIGSERIAL" if self.postgres else "INTEGER"  # SQLite: an INTEGER PRIMARY KEY is the rowid
        with self.transaction():
            cursor = self.connection.cursor()
            if self.postgres:  # concurrent CREATE TABLE IF NOT EXISTS can collide in the catalog: take turns
                cursor.execute("SELECT pg_advisory_xact_lock(7250914)")
                cursor.execute("SELECT to_regclass('meta') IS NOT NULL")
            else:
                cursor.execute("SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'meta'")
            if not cursor.fetchone()[0]:  # DDL only on a new store: on a live one it would lock what writers use
                for statement in DDL:
                    cursor.execute(statement.format(serial=serial))
            cursor.execute(self._sql("SELECT key, value FROM meta WHERE key IN (?, ?)"),
                           ("schema_version", "migrations"))
            found = dict(cursor.fetchall())
            if int(found.get("schema_version", SCHEMA_VERSION)) > SCHEMA_VERSION:
                raise HistoryError(f"history store {redact(self.location)} has schema {found['schema_version']}, "
                                   f"newer than this gpt2compress reads ({SCHEMA_VERSION}): upgrade gpt2compress "
                                   "(a PR branch: rebase it onto main)")
            done = json.loads(found.get("migrations", "[]"))
            for name, statements in MIGRATIONS.items():
                if name not in done:
                    for statement in statements:
                        cursor.execute(statement)
            applied = json.dumps(list(dict.fromkeys([*done, *MIGRATIONS])))  # a newer release's stay listed
            for key, value in (("schema_version", str(SCHEMA_VERSION)), ("migrations", applied)):
                if key not in found:
                    cursor.execute(self._sql("INSERT INTO meta (key, value) VALUES (?, ?)"), (key, value))
                elif found[key] != value and key == "migrations":
                    cursor.execute(self._sql("UPDATE meta SET value = ? WHERE key = ?"), (value, key))

    def record(self, info: RunInfo, records: list[Record]) -> int:
        if not records:
            raise HistoryError(f"{info.source or 'the run'} holds no gpt2compress results: nothing to record")
        with self.transaction():
            cursor = self.connection.cursor()
            run_id = self._shard_of(cursor, info)
            if run_id is None:
                cursor.execute(self._sql(
                    "INSERT INTO runs (commit_sha, parents, ref, pr, runner_class, machine, recorded_at, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"),
                    (info.commit, json.dumps(info.parents), info.ref, info.pr, info.runner_class,
                     json.dumps(info.machine, default=str), info.recorded_at, info.source))
                run_id = cursor.fetchone()[0]
            cursor.executemany(self._sql(
                "INSERT INTO results (run_id, kind, device, variant, shape, record) VALUES (?, ?, ?, ?, ?, ?)"),
                [(run_id, r.kind, r.device, r.variant, json.dumps(list(r.shape)), json.dumps(r.to_extra_info()))
                 for r in records])
            ceiling = info.machine.get("gpt2compress", {}).get("ceiling")
            if ceiling:  # the machine's limits the rows were set against, beside them
                self.record_ceiling(info.runner_class, ceiling, f"run {run_id}", cursor)
        return run_id

    def record_ceiling(self, runner: str, ceiling: dict, source: str, cursor: Any = None) -> None:
        """A runner class's peaks and bandwidth (measure/ceiling.py), kept with when and where they were measured."""
        if cursor is None:
            with self.transaction():
                return self.record_ceiling(runner, ceiling, source, self.connection.cursor())
        cursor.execute(self._sql("INSERT INTO ceilings (runner_class, measured_at, ceiling, source) VALUES "
                                 "(?, ?, ?, ?)"), (runner, time.time(), json.dumps(ceiling), source))

    def ceilings(self, runner: str | None = None) -> list[tuple[str, float, dict, str]]:
        """(runner class, measured at, ceiling, source), oldest first."""
        cursor = self.connection.cursor()
        cursor.execute(self._sql("SELECT runner_class, measured_at, ceiling, source FROM ceilings"
                                 + (" WHERE runner_class = ?" if runner else "") + " ORDER BY measured_at"),
                       (runner,) if runner else ())
        return [(row[0], row[1], json.loads(row[2]), row[3]) for row in cursor.fetchall()]

    def _shard_of(self, cursor: Any, info: RunInfo) -> int | None:
        """The run this one is another shard of (`--shard I/N`: same commit, class and ref, another I of the same
        N), its machine info updated to hold both; None: a run of its own."""
        ours = info.machine.get("gpt2compress", {})
        shard = ours.get("shard")
        if not shard or not info.commit:
            return None
        if self.postgres:  # two shards recording at once: one after the other, so the second finds the first
            cursor.execute("SELECT pg_advisory_xact_lock(7250915)")
        cursor.execute(self._sql("SELECT id, machine, ref FROM runs WHERE commit_sha = ? AND runner_class = ? "
                                 "ORDER BY id DESC"), (info.commit, info.runner_class))
        for run_id, machine, ref in cursor.fetchall():
            theirs = json.loads(machine).get("gpt2compress", {})
            shards = theirs.get("shards") or [theirs.get("shard")]
            same_split = all(s and s.split("/")[1] == shard.split("/")[1] for s in shards)
            if ref == info.ref and same_split and shard not in shards:
                # a shard that failed fails both; one from a bench before outcomes were kept says nothing
                statuses = [facts.get("exitstatus", None if "cases" in facts else 0) for facts in (theirs, ours)]
                theirs.update(shards=sorted([*shards, shard]),
                              skipped=theirs.get("skipped", []) + ours.get("skipped", []),
                              durations={**theirs.get("durations", {}), **ours.get("durations", {})},
                              cases={**theirs.get("cases", {}), **ours.get("cases", {})},
                              exitstatus=None if None in statuses else max(statuses))
                merged = {**json.loads(machine), "gpt2compress": theirs}
                cursor.execute(self._sql("UPDATE runs SET machine = ? WHERE id = ?"), (json.dumps(merged), run_id))
                return run_id
        return None

    def runs(self, runner_class: str | None = None) -> list[StoredRun]:
        return self._runs("WHERE runner_class = ?", (runner_class,)) if runner_class else self._runs("", ())

    def _runs(self, where: str, args: tuple) -> list[StoredRun]:
        cursor = self.connection.cursor()
        cursor.execute(self._sql(
            "SELECT r.id, r.commit_sha, r.parents, r.ref, r.pr, r.runner_class, r.machine, r.recorded_at, r.source, "
            f"(SELECT COUNT(*) FROM results s WHERE s.run_id = r.id) FROM runs r {where} ORDER BY r.id"), args)
        return [StoredRun(row[0], RunInfo(row[5], row[1], json.loads(row[2]), row[3], row[4], json.loads(row[6]),
                                          row[7], row[8]), row[9]) for row in cursor.fetchall()]

    def load(self, run_id: int) -> Run:
        """A stored run as `report.Run`, its records read back like a results file's."""
        stored = next(iter(self._runs("WHERE r.id = ?", (run_id,))), None)
        if stored is None:
            raise HistoryError(f"no run {run_id} in {redact(self.location)}; `gpt2compress history runs` lists them")
        cursor = self.connection.cursor()
        cursor.execute(self._sql("SELECT record FROM results WHERE run_id = ?"), (run_id,))
        records = [from_extra_info(json.loads(row[0]), f"{redact(self.location)} run {run_id}")
                   for row in cursor.fetchall()]
        return Run(f"run {run_id} ({(stored.info.commit or '?')[:10]})", stored.info.machine, records)

    def accept(self, commit: str, runner: str, reason: str) -> None:
        """A deliberate regression becomes the baseline: that commit's gate passes (saying why), and the spread
        of each metric restarts at its run."""
        if not reason.strip():
            raise HistoryError("accept needs --reason TEXT: why this regression is wanted (kept in the history)")
        if not any(r.info.commit == commit for r in self.runs(runner)):
            raise HistoryError(f"no run of {commit[:12]} on runner class {runner!r} is recorded: record it first")
        with self.transaction():  # accepting again replaces the reason: one acceptance per commit and class
            cursor = self.connection.cursor()
            cursor.execute(self._sql("DELETE FROM accepted WHERE commit_sha = ? AND runner_class = ?"),
                           (commit, runner))
            cursor.execute(self._sql(
                "INSERT INTO accepted (commit_sha, runner_class, reason, accepted_at) VALUES (?, ?, ?, ?)"),
                (commit, runner, reason, time.time()))

    def accepted(self, runner: str) -> dict[str, str]:
        """commit -> the reason it was accepted, on this runner class."""
        cursor = self.connection.cursor()
        cursor.execute(self._sql("SELECT commit_sha, reason FROM accepted WHERE runner_class = ? ORDER BY accepted_at"),
                       (runner,))
        return dict(cursor.fetchall())

    def case_names(self, runner: str) -> set[str]:
        """kind/device/variant of every case a run of the class recorded."""
        cursor = self.connection.cursor()
        cursor.execute(self._sql("SELECT DISTINCT s.kind, s.device, s.variant FROM results s JOIN runs r ON "
                                 "r.id = s.run_id WHERE r.runner_class = ?"), (runner,))
        return {"/".join(row) for row in cursor.fetchall()}

    def retire(self, retirement: Retirement) -> None:
        if not retirement.reason.strip():
            raise HistoryError("--retire needs --reason TEXT: why this case is no longer measured (kept in the "
                               "history)")
        with self.transaction():
            self.connection.cursor().execute(self._sql(
                "INSERT INTO retired (case_name, commit_sha, runner_class, reason, retired_at) VALUES (?, ?, ?, ?, ?)"),
                (retirement.case, retirement.commit, retirement.runner_class, retirement.reason, time.time()))

    def unretire(self, case: str, commit: str, runner: str) -> int:
        """Revoke a retirement; how many were removed."""
        with self.transaction():
            cursor = self.connection.cursor()
            cursor.execute(self._sql("DELETE FROM retired WHERE case_name = ? AND commit_sha LIKE ? AND "
                                     "runner_class = ?"), (case, f"{commit}%", runner))
            return cursor.rowcount

    def retirements(self, runner: str) -> list[Retirement]:
        cursor = self.connection.cursor()
        cursor.execute(self._sql("SELECT case_name, commit_sha, runner_class, reason FROM retired "
                                 "WHERE runner_class = ? ORDER BY retired_at"), (runner,))
        return [Retirement(*row) for row in cursor.fetchall()]

    def close(self) -> None:
        self.connection.close()


@contextmanager
def _postgres_transaction(store: Store) -> Iterator[None]:
    from .postgres import refusing_writes

    with refusing_writes(store.connection, HistoryError, redact(store.location), "write to it"):
        with store.connection.transaction():
            yield


class _sqlite_transaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback) -> None:
        self.connection.execute("COMMIT" if kind is None else "ROLLBACK")


def open_store(location: str | None = None) -> Store:
    return Store(location or default_location())


def runner_class(machine: dict) -> str:
    """A label for machines whose timings are comparable: the GPU's name, else the CPU model (its family and model
    numbers too: a cloud guest's "AMD EPYC" can be any of four generations), its widest ISA and the thread count (a
    run pinned to 2 cores of a 16-core host is not the host). Baselines never mix classes; pass `--runner-class` to
    name a fleet yourself."""
    ours = machine.get("gpt2compress", {})
    gpu = (ours.get("gpu") or {}).get("name")
    if gpu:
        return _slug(f"gpu-{gpu}")
    cpu = machine.get("cpu") or {}
    brand = cpu.get("brand_raw") or machine.get("processor") or "unknown-cpu"
    generation = f"f{cpu['family']}m{cpu['model']}" if {"family", "model"} <= cpu.keys() else ""
    threads = f"{ours['threads']}t" if ours.get("threads") else ""
    return _slug("-".join(filter(None, ["cpu", brand, generation, isa_level(ours.get("cpu_isa") or []), threads])))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def from_environment(commit: str | None = None, ref: str | None = None, pr: int | None = None) -> dict[str, Any]:
    """Commit, parents, ref and PR number: given, else from GitHub Actions' environment, else from git."""
    env = os.environ
    commit = commit or env.get("GITHUB_SHA") or _git("rev-parse", "HEAD")
    parents = (_git("rev-list", "--parents", "-n", "1", commit) or "").split()[1:] if commit else []
    ref = (ref or env.get("GITHUB_REF") or _git("symbolic-ref", "-q", "HEAD")
           or _git("rev-parse", "--abbrev-ref", "HEAD"))
    match = re.match(r"refs/pull/(\d+)/", env.get("GITHUB_REF", ""))
    return {"commit": commit, "parents": parents, "ref": ref, "pr": pr or (int(match.group(1)) if match else None)}


def record_file(store: Store, path: str | Path, runner: str | None = None, **where: Any) -> int:
    """Record one results file (JSON or journal); identity from `where`, else the environment and git."""
    run = load_run(path)
    identity = from_environment(where.get("commit"), where.get("ref"), where.get("pr"))
    info = RunInfo(runner or runner_class(run.machine), machine=run.machine, source=str(path), **identity)
    return store.record(info, run.records)
