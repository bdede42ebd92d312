"""Unit-test fixtures: small random GPT-2s built in milliseconds; no hub, no shared data needed."""

import os
from pathlib import Path

import pytest

from gpt2compress.core.cache import release_all
from gpt2compress.build.data import load_corpus
from gpt2compress.runtimes.pytorch import save_model
from gpt2compress.build.sources import Source
from gpt2compress.build.tokenizer import train_bpe
from gpt2compress.core.variants import Context, Settings

from helpers import random_gpt2, random_windows

ALONE = "runs alone (it times real code; a neighbour on the cores moves its verdict): pytest tests -m alone"
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def pytest_collection_modifyitems(config, items):
    """An `alone` test under xdist is skipped naming the command that runs it (README's test command does)."""
    if XDIST_WORKER:
        for item in items:
            if item.get_closest_marker("alone"):
                item.add_marker(pytest.mark.skip(reason=ALONE))


# Under `pytest tests -n 2` this process is an xdist worker; a bench run a test starts in a child process is not one
# (pytest-benchmark turns itself off where it sees these), so the children do not inherit them.
for _name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2COMPRESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GPT2COMPRESS_HISTORY", raising=False)  # a test names the history it reads
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ... and never finds the user's default one
    yield
    release_all()  # each test's entries stop being "in use" by this process when it ends


@pytest.fixture
def model():
    return random_gpt2()


@pytest.fixture
def windows():
    return random_windows()


@pytest.fixture(scope="session")
def local_checkpoint(tmp_path_factory):
    """A small random GPT-2 saved as a user's local checkpoint directory (model + tokenizer)."""
    tmp = tmp_path_factory.mktemp("ckpt")
    corpus = load_corpus("embedded")
    tok = train_bpe(corpus.train_text[:30_000], 300, tmp / "tok")
    return save_model(random_gpt2(vocab_size=len(tok), n_positions=128), tmp / "ckpt", tok)


@pytest.fixture
def ctx(tmp_path):
    corpus = load_corpus("embedded")
    tok = train_bpe(corpus.train_text[:40_000], 300, tmp_path / "tok")
    model = random_gpt2(vocab_size=len(tok))
    for config in (model.config, model.generation_config):  # as build/sources.py makes a source: EOS is its tokenizer's
        config.bos_token_id = config.eos_token_id = tok.eos_token_id
    settings = Settings(seq_len=32, eval_samples=8, finetune_max_steps=2, finetune_samples=16,
                        calibration_samples=8, finetune_lr=1e-3)
    return Context(Source("test", model, tok, "test-source"), corpus, settings)


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL 15 server (the machines have its binaries; it refuses root, so it runs as nobody),
    reached over a unix socket. Yields a function that makes a fresh, empty database and returns its URL."""
    import os
    import shutil
    import socket
    import subprocess
    import tempfile

    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        if os.environ.get("CI"):
            pytest.fail("CI must test the PostgreSQL history: initdb / pg_ctl not on PATH")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not on PATH")
    base = Path(tempfile.mkdtemp(prefix="gpt2compress-pg-"))
    base.chmod(0o755)
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(base, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *args: subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)  # noqa: E731
    run(initdb, "-D", str(base / "data"), "-A", "trust", "-U", "postgres", "--no-sync")
    run(pg_ctl, "-D", str(base / "data"), "-l", str(base / "log"), "-w", "-o",
        f"-k {base} -p {port} -c listen_addresses='' -c fsync=off", "start")
    import psycopg

    admin = f"postgresql://postgres@/postgres?host={base}&port={port}"
    counter = iter(range(10_000))

    def database() -> str:
        name = f"history_{next(counter)}"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@/{name}?host={base}&port={port}"

    yield database
    subprocess.run([*as_user, pg_ctl, "-D", str(base / "data"), "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """A fresh history store's location, on each engine: an SQLite file, then a database on the real server."""
    if request.param == "sqlite":
        return str(tmp_path / "history.sqlite")
    return request.getfixturevalue("postgres_server")()
