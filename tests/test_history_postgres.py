"""The PostgreSQL history's own schema and the read-only role PR jobs gate with, on a real server (issue 42)."""

import pytest

from gpt2compress.cli import main
from gpt2compress.history.store import DDL, HistoryError, open_store, record_file

from helpers import ROOT

V1 = ROOT / "tests" / "data" / "previous-release.json"


@pytest.fixture
def database(postgres_server):
    return postgres_server()


def _tables(url: str) -> set[tuple[str, str]]:
    import psycopg

    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT table_schema, table_name FROM information_schema.tables "
                                  "WHERE table_schema IN ('public', 'gpt2compress')").fetchall()
    return set(rows)


def test_the_history_lives_in_its_own_schema(database):
    store = open_store(database)
    record_file(store, V1, commit="a" * 40)
    store.close()
    tables = _tables(database)
    assert {schema for schema, _ in tables} == {"gpt2compress"}
    assert {"meta", "runs", "results", "accepted", "retired", "ceilings"} <= {name for _, name in tables}


def test_a_store_from_before_the_schema_is_moved_into_it_with_its_runs(database):
    import psycopg

    with psycopg.connect(database, autocommit=True) as connection:  # the previous release: tables in public
        for statement in DDL:
            connection.execute(statement.format(serial="BIGSERIAL"))
        connection.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
        connection.execute("INSERT INTO runs (commit_sha, parents, runner_class, machine, recorded_at) VALUES "
                           "('b', '[]', 'cpu-old', '{}', 1.0)")
    store = open_store(database)
    assert [(r.id, r.info.runner_class) for r in store.runs()] == [(1, "cpu-old")]
    assert record_file(store, V1, commit="c" * 40) == 2  # the id sequence moved with its table
    assert {schema for schema, _ in _tables(database)} == {"gpt2compress"}


def test_a_read_only_role_gates_and_a_write_by_it_is_one_line(database, capsys):
    import psycopg

    writer = open_store(database)
    record_file(writer, V1, "cpu-test", commit="a" * 40, ref="refs/heads/main")
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute("CREATE ROLE pr_reader LOGIN")
    reader_url = database.replace("postgres@", "pr_reader@")
    denied = main(["history", "runs", "--history", reader_url])  # before the grant: it cannot even read
    assert denied == 2 and "grant-read" in capsys.readouterr().err
    assert main(["history", "grant-read", "pr_reader", "--history", database]) == 0
    assert 'GRANT SELECT ON ALL TABLES IN SCHEMA "gpt2compress" TO "pr_reader"' in capsys.readouterr().out
    reader = open_store(reader_url)
    [run] = reader.runs()
    assert len(reader.load(run.id).records) == 6  # what `history gate` and `report` read
    assert main(["history", "runs", "--history", reader_url]) == 0
    capsys.readouterr()
    assert main(["history", "record", str(V1), "--history", reader_url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "the history role 'pr_reader' may only read" in err and "with the writer's URL" in err
    with pytest.raises(HistoryError, match="may only read"):
        reader.accept("a" * 40, "cpu-test", "wanted")
    assert writer.accepted("cpu-test") == {} and len(writer.runs()) == 1  # nothing half-written


def test_grant_read_is_refused_on_sqlite(tmp_path, capsys):
    assert main(["history", "grant-read", "someone", "--history", str(tmp_path / "h.sqlite")]) == 2
    assert "grant-read is for a PostgreSQL history" in capsys.readouterr().err
