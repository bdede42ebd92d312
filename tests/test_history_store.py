"""The saved history on both engines: SQLite (the default file) and a real PostgreSQL server."""

import json
from pathlib import Path
import os
import subprocess
import sys

import pytest

from gpt2compress.cli import main
from gpt2compress.history.lifecycle import import_files
from gpt2compress.history.store import HistoryError, RunInfo, open_store, record_file, runner_class
from gpt2compress.history.runs import load_run

from helpers import ROOT

V1 = ROOT / "tests" / "data" / "previous-release.json"


def test_a_recorded_run_reads_back_as_it_was_measured(location):
    store = open_store(location)
    run_id = record_file(store, V1, commit="a" * 40, ref="refs/heads/main")
    [stored] = store.runs()
    assert (stored.id, stored.rows, stored.info.commit, stored.info.ref) == (run_id, 6, "a" * 40, "refs/heads/main")
    assert stored.info.runner_class == "cpu-amd-epyc-f25m17-avx512-vnni-bf16-2t"  # from the file's machine_info
    back, original = store.load(run_id), load_run(V1)
    assert sorted(r.case for r in back.records) == sorted(r.case for r in original.records)
    assert back.record("cpu", "int8-scratch").ratios == original.record("cpu", "int8-scratch").ratios


def test_two_runners_recording_at_once_both_land(location, tmp_path):
    """Six `history record` processes at once (three per "runner"), on one store."""
    env = {**os.environ, "GPT2COMPRESS_HISTORY": location}
    procs = [subprocess.Popen([sys.executable, "-m", "gpt2compress.cli", "history", "record", str(V1), "--commit",
                               f"{i:040d}", "--runner-class", f"runner-{i % 2}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(6)]
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, outcomes
    runs = open_store(location).runs()
    assert sorted(r.info.commit for r in runs) == [f"{i:040d}" for i in range(6)] and {r.rows for r in runs} == {6}
    assert len(open_store(location).runs("runner-1")) == 3


def test_shards_of_one_commit_recording_at_once_become_one_run(location, tmp_path):
    """Four shards of one commit, `history record` at once: one run holding every shard's rows."""
    data = json.loads(V1.read_text())
    files = []
    for i in range(1, 5):
        data["machine_info"]["gpt2compress"] = {"shard": f"{i}/4", "durations": {f"t{i}": 1.0}}
        files.append(tmp_path / f"shard-{i}.json")
        files[-1].write_text(json.dumps(data))
    env = {**os.environ, "GPT2COMPRESS_HISTORY": location}
    procs = [subprocess.Popen([sys.executable, "-m", "gpt2compress.cli", "history", "record", str(f), "--commit",
                               "c" * 40, "--ref", "refs/heads/main", "--runner-class", "cpu-shards"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in files]
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outcomes
    [run] = open_store(location).runs("cpu-shards")
    assert run.rows == 4 * 6 and run.info.machine["gpt2compress"]["shards"] == ["1/4", "2/4", "3/4", "4/4"]


def test_a_store_from_a_newer_version_is_refused_and_kept(location):
    store = open_store(location)
    record_file(store, V1, commit="b" * 40)
    with store.transaction():
        store.connection.cursor().execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    store.close()
    with pytest.raises(HistoryError, match="has schema 99, newer than this gpt2compress reads .*: upgrade"):
        open_store(location)


def test_a_file_that_is_not_a_run_records_nothing(location, tmp_path, capsys):
    foreign = tmp_path / "other.json"
    foreign.write_text(json.dumps({"benchmarks": [{"name": "test_sort", "extra_info": {}}]}))
    assert main(["history", "record", str(foreign), "--history", location]) == 2
    assert "holds no gpt2compress results" in capsys.readouterr().err
    assert open_store(location).runs() == []


def test_an_unreachable_database_is_named_without_its_password():
    with pytest.raises(HistoryError) as err:
        open_store("postgresql://ci:s3cret@127.0.0.1:1/history")
    assert "postgresql://ci:***@127.0.0.1:1/history" in str(err.value) and "s3cret" not in str(err.value)
    with pytest.raises(HistoryError) as err:  # libpq's keyword form: the password in the query
        open_store("postgresql://ci@127.0.0.1:1/history?sslmode=disable&password=s3cret")
    assert "password=***" in str(err.value) and "s3cret" not in str(err.value)


def test_import_a_pytest_benchmark_storage_folder(location, tmp_path):
    storage = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    storage.mkdir(parents=True)
    data = json.loads(V1.read_text())
    data["commit_info"] = {"id": "c" * 40, "branch": "main"}
    (storage / "0001_cccc.json").write_text(json.dumps(data))
    (storage / "0002_other.json").write_text(json.dumps({"benchmarks": [{"name": "x", "extra_info": {}}]}))
    outcomes = dict(import_files(open_store(location), [tmp_path / ".benchmarks"]))
    assert isinstance(outcomes[storage / "0001_cccc.json"], int)
    assert outcomes[storage / "0002_other.json"].startswith("skipped: ")
    [run] = open_store(location).runs()
    # the full ref, as `history record` stores it: `trend --ref refs/heads/main` and the gate's spread find it
    assert (run.info.commit, run.info.ref, run.rows) == ("c" * 40, "refs/heads/main", 6)


def test_a_history_that_is_neither_sqlite_nor_postgresql_is_refused(tmp_path):
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a database, " * 100)
    for location, message in [(str(garbage), "is not an SQLite database"), (str(tmp_path), "is not an SQLite"),
                              ("mysql://nohost/x", "an SQLite file path or a postgresql:// URL")]:
        with pytest.raises(HistoryError, match=message):
            open_store(location)
    assert not Path("mysql:").exists()


def test_runner_classes_name_comparable_machines():
    cpu = {"cpu": {"brand_raw": "Intel(R) Xeon(R) Platinum 8480+"}, "gpt2compress": {"cpu_isa": ["amx_int8", "avx2"]}}
    assert runner_class(cpu) == "cpu-intel-r-xeon-r-platinum-8480-amx"
    epyc = {"cpu": {"brand_raw": "AMD EPYC"}, "gpt2compress": {"cpu_isa": ["avx2"]}}
    assert runner_class(epyc) == "cpu-amd-epyc-avx2"


def test_runner_classes_keep_cpu_generations_and_thread_counts_apart():
    """A KVM guest's "AMD EPYC" is Zen 1 or Zen 3 (family 23 model 1 / family 25 model 1), both AVX2-only; and a run
    pinned to 2 cores of a 16-core host is not the host: neither pair may share a baseline."""
    def epyc(family: int, model: int, threads: int) -> dict:
        return {"cpu": {"brand_raw": "AMD EPYC", "family": family, "model": model},
                "gpt2compress": {"cpu_isa": ["avx", "avx2"], "threads": threads}}

    assert runner_class(epyc(23, 1, 2)) == "cpu-amd-epyc-f23m1-avx2-2t"
    assert len({runner_class(epyc(23, 1, 2)), runner_class(epyc(25, 1, 2)), runner_class(epyc(23, 1, 16))}) == 3
    assert runner_class({"gpt2compress": {"gpu": {"name": "Tesla T4"}}}) == "gpu-tesla-t4"


def test_cli_lists_runs(tmp_path, capsys):
    location = str(tmp_path / "h.sqlite")
    record = ["history", "record", str(V1), "--history", location, "--commit", "d" * 40, "--runner-class", "t4"]
    assert main(record) == 0
    assert main(["history", "runs", "--history", location]) == 0
    out = capsys.readouterr().out
    assert "recorded run 1: 6 rows" in out and "t4" in out and "dddddddddddd" in out


def test_run_info_defaults_to_now():
    assert RunInfo("x").recorded_at > 1.7e9


def test_a_store_written_before_retirements_gains_their_table_and_stays_readable_by_it(location):
    """A store made by the release before (its DDL, no `retired`, no `migrations`): opening it adds the table
    without moving schema_version, so a PR branched before this change still reads main's store."""
    from gpt2compress.history.store import DDL, Retirement, Store

    class Before(Store):  # the previous release's store: its tables, nothing else
        def _migrate(self) -> None:
            serial = "BIGSERIAL" if self.postgres else "INTEGER"
            with self.transaction():
                cursor = self.connection.cursor()
                for statement in DDL:
                    cursor.execute(statement.format(serial=serial))
                cursor.execute(self._sql("INSERT INTO meta (key, value) VALUES (?, ?)"), ("schema_version", "1"))

    old = Before(location)
    record_file(old, V1, commit="d" * 40)
    old.close()
    store = open_store(location)
    store.retire(Retirement("forward/cpu/int8-scratch", "d" * 40, "cpu-x", "gone"))
    assert [r.case for r in store.retirements("cpu-x")] == ["forward/cpu/int8-scratch"] and len(store.runs()) == 1
    cursor = store.connection.cursor()
    cursor.execute("SELECT key, value FROM meta ORDER BY key")
    assert dict(cursor.fetchall()) == {"migrations": '["retired", "ceilings"]', "schema_version": "1"}
    store.close()
    open_store(location).close()  # and again: nothing to do


def test_a_history_is_curated_import_once_delete_prune_export_and_list(location, tmp_path, capsys):
    """Issue 42's lifecycle, on SQLite and PostgreSQL: the same file imported twice is one run; a bad run is deleted;
    old runs are pruned per runner class; every run exports as a JSON line; `runs --limit --json` lists."""
    from gpt2compress.history.lifecycle import delete, export, to_prune

    store = open_store(location)
    first = dict(import_files(store, [V1]))[V1]
    assert dict(import_files(store, [V1]))[V1] == f"skipped: already imported as run {first}"
    for i in range(3):
        record_file(store, V1, "cpu-test", commit=f"{i}" * 40, ref="refs/heads/main")
    ids = [r.id for r in store.runs()]
    assert len(ids) == 4
    lines = [json.loads(line) for line in export(store)]
    assert [line["id"] for line in lines] == ids and all(len(line["records"]) == 6 for line in lines)
    assert to_prune(store, keep_last=2, runner="cpu-test") == ids[1:2]  # the class's oldest but the newest two
    assert to_prune(store, older_than_days=1, now=store.runs()[-1].info.recorded_at + 2 * 86_400) == ids
    assert main(["history", "prune", "--keep-last", "2", "--runner-class", "cpu-test", "--history", location]) == 0
    assert "deleted 1 run(s)" in capsys.readouterr().out
    assert delete(store, [ids[0]]) == 1 and [r.id for r in store.runs()] == ids[2:]
    with pytest.raises(HistoryError, match="no run 999 in .*`gpt2compress history runs` lists them"):
        delete(store, [999])
    assert main(["history", "runs", "--limit", "1", "--json", "--history", location]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["commit"], r["rows"]) for r in listed] == [(ids[-1], "2" * 40, 6)]


def test_an_acceptance_is_one_per_commit_and_can_be_revoked(location, capsys):
    store = open_store(location)
    commit = "a" * 40
    record_file(store, V1, "cpu-test", commit=commit, ref="refs/heads/main")
    for reason in ("first", "second"):
        assert main(["history", "accept", commit, "--reason", reason, "--history", location]) == 0
    assert store.accepted("cpu-test") == {commit: "second"}  # accepting again replaced it, not a second row
    assert main(["history", "accept", commit[:12], "--revoke", "--history", location]) == 0
    assert "fail the gate again on cpu-test" in capsys.readouterr().out and store.accepted("cpu-test") == {}
    assert main(["history", "accept", commit, "--revoke", "--history", location]) == 2
    assert "no acceptance of aaaaaaaaaaaa on cpu-test to revoke" in capsys.readouterr().err
