"""The PostgreSQL side of the history: its tables in a schema of their own (`gpt2compress`, not `public`), the
read-only role PR jobs gate with, and the one line a write by that role gets.

A store written before the schema existed (its tables in `public`) is moved into it the first time a role that may
do so opens it; its rows, ids and sequences move with the tables. A read-only role only ever reads: it needs
`USAGE` on the schema and `SELECT` on its tables, which `gpt2compress history grant-read ROLE` gives (run it with the
writer's URL; docs/gate.md, "A read-only role for PR jobs").
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

SCHEMA = "gpt2compress"
TABLES = ("meta", "runs", "results", "accepted", "retired", "ceilings")  # every table the store has had
LOCK = 7250914  # the advisory lock that serializes schema changes between processes


def connect(location: str, error: type[Exception], shown: str) -> Any:
    """A connection whose tables are the history's schema (`shown`: the URL as it may be printed)."""
    import psycopg

    try:
        connection = psycopg.connect(location, connect_timeout=10, autocommit=True)  # transaction(): real ones
    except psycopg.OperationalError as err:
        raise error(f"cannot reach the history database {shown}: {str(err).strip().splitlines()[0]}; check "
                    "--history / $GPT2COMPRESS_HISTORY") from None
    with refusing_writes(connection, error, shown, "create its schema (a new or older store)"):
        _into_schema(connection)
    if not _exists(connection.cursor(), "SELECT has_schema_privilege(%s, 'USAGE')", SCHEMA):
        raise error(f"the history role {connection.info.user!r} has no access to {shown}'s schema {SCHEMA!r}: as the "
                    f"writer, run `gpt2compress history grant-read {connection.info.user}`")
    return connection


def _exists(cursor: Any, query: str, name: str) -> bool:
    cursor.execute(query, (name,))
    return cursor.fetchone()[0]


def _into_schema(connection: Any) -> None:
    """search_path → SCHEMA; the schema made where it is missing, a pre-schema store's tables moved into it. The
    catalog is read by queries, not `to_regnamespace`: after waiting for the lock, a query's snapshot sees what the
    process that held it committed, where the session's catalog cache may not."""
    cursor = connection.cursor()
    namespace = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s)"
    if not _exists(cursor, namespace, SCHEMA):
        with connection.transaction():
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
            if not _exists(cursor, namespace, SCHEMA):  # another process may have made it while this one waited
                cursor.execute(f"CREATE SCHEMA {SCHEMA}")
                for table in TABLES:
                    if _exists(cursor, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = 'public' "
                                       "AND tablename = %s)", table):
                        cursor.execute(f"ALTER TABLE public.{table} SET SCHEMA {SCHEMA}")
    cursor.execute(f"SET search_path TO {SCHEMA}")


@contextmanager
def refusing_writes(connection: Any, error: type[Exception], shown: str, what: str) -> Iterator[None]:
    """A write the role may not make becomes one line naming the role and the fix, not a traceback."""
    import psycopg

    try:
        yield
    except psycopg.errors.InsufficientPrivilege as err:
        role = connection.info.user
        raise error(f"the history role {role!r} may only read {shown} ({str(err).strip().splitlines()[0]}), so it "
                    f"cannot {what}: a PR job gates with the read-only role; record, accept, retire, delete and "
                    "prune from main's job with the writer's URL (a new or older store: open it once as the writer)"
                    ) from None


def grant_read(connection: Any, role: str) -> list[str]:
    """Give an existing role what `history gate`, `report`, `runs`, `trend` and `changes` need, now and for tables a
    later release adds; the statements run, to print."""
    from psycopg import sql

    statements = [sql.SQL("GRANT USAGE ON SCHEMA {} TO {}"),
                  sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}"),
                  sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}")]
    done = []
    with connection.transaction():
        for statement in statements:
            query = statement.format(sql.Identifier(SCHEMA), sql.Identifier(role))
            connection.execute(query)
            done.append(query.as_string(connection))
    return done
