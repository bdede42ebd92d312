"""The cache: one complete entry per key across processes, listed, pruned least-recently-used first, never
under a process that uses it, and capped by $GPT2COMPRESS_CACHE_MAX."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpt2compress.core import cache
from gpt2compress.core.cache import cached_dir, entries, parse_size, prune
from gpt2compress.cli import main

BUILD_SLOWLY = """
import os, sys, time
from pathlib import Path
from gpt2compress.core.cache import cached_dir

def build(out):
    with open(sys.argv[1], "a") as log:
        log.write(f"{os.getpid()}\\n")
    go, deadline = Path(sys.argv[2]), time.time() + 60
    while not go.exists() and time.time() < deadline:  # the test says when: once the other process waits
        time.sleep(0.01)
    (out / "payload").write_text(f"built by {os.getpid()}")

path = cached_dir("demo", "same-key", build, meta={"label": "demo"})
print((path / "payload").read_text())
"""


def _until(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} in {seconds} s"
        time.sleep(0.01)


def test_two_processes_building_one_key_end_with_one_complete_entry(tmp_path):
    env = {**os.environ, "GPT2COMPRESS_CACHE": str(tmp_path / "cache")}
    log, go = tmp_path / "builds.log", tmp_path / "go"

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", BUILD_SLOWLY, str(log), str(go)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=(tmp_path / f"{name}.err").open("w"))

    first = start("first")
    _until(lambda: log.exists() and log.read_text().strip(), "build by the first process")
    second = start("second")  # while the first one builds
    _until(lambda: "waiting for another process building demo" in (tmp_path / "second.err").read_text(),
           "wait by the second process")
    go.touch()
    outputs = [run.communicate(timeout=120)[0] for run in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], (tmp_path / "second.err").read_text()[-2000:]
    assert len(log.read_text().split()) == 1  # built once; the second process waited and used it
    assert outputs[0] == outputs[1] and outputs[0].startswith(f"built by {first.pid}")
    kind_dir = tmp_path / "cache" / "demo"
    assert [p.name for p in kind_dir.iterdir()] == ["same-key"]  # no temporary leftovers
    assert (kind_dir / "same-key" / cache.COMPLETE_MARK).exists()


def _entry(name: str, size: int, used: float) -> Path:
    path = cached_dir("demo", name, lambda out: (out / "blob").write_bytes(b"x" * size), meta={"label": name})
    os.utime(path / cache.LAST_USED, (used, used))
    return path


@pytest.fixture
def three_entries():
    now = time.time()
    paths = [_entry("old", 3000, now - 3 * 86400), _entry("mid", 3000, now - 2 * 86400), _entry("new", 3000, now)]
    cache.release_all()  # as if the process that built them had ended
    return paths


def test_prune_removes_least_recently_used_first(three_entries):
    removed, busy = prune(max_size=7000)
    assert [e.path.name for e in removed] == ["old"] and not busy
    assert [e.path.name for e in entries()] == ["mid", "new"]
    removed, _ = prune(older_than_days=1)
    assert [e.path.name for e in removed] == ["mid"]


def test_an_entry_another_process_moves_away_while_listing_is_left_out(three_entries, monkeypatch):
    listed = cache._entry

    def moved_meanwhile(path):  # a build's rename into place, or another prune, between iterdir() and the stat
        if path.name == "mid":
            shutil.rmtree(path)
        return listed(path)

    monkeypatch.setattr(cache, "_entry", moved_meanwhile)
    assert [e.path.name for e in entries()] == ["old", "new"]
    removed, busy = prune(max_size=0)
    assert [e.path.name for e in removed] == ["old", "new"] and not busy


def test_using_an_entry_makes_it_recent(three_entries):
    cached_dir("demo", "old", lambda out: pytest.fail("a complete entry is never rebuilt"))
    cache.release_all()
    removed, _ = prune(max_size=7000)
    assert [e.path.name for e in removed] == ["mid"]


HOLD = """
import sys, time
from gpt2compress.core.cache import cached_dir
cached_dir("demo", sys.argv[1], lambda out: None)
print("holding", flush=True)
time.sleep(60)
"""


def test_an_entry_in_use_by_a_running_process_is_never_pruned(three_entries, tmp_path):
    env = {**os.environ, "GPT2COMPRESS_CACHE": str(cache.cache_root())}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, "old"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        removed, busy = prune(max_size=0)
        assert [e.path.name for e in busy] == ["old"]
        assert [e.path.name for e in removed] == ["mid", "new"]
        assert (cache.cache_root() / "demo" / "old" / cache.COMPLETE_MARK).exists()
    finally:
        holder.kill()
        holder.wait()
    removed, busy = prune(max_size=0)
    assert [e.path.name for e in removed] == ["old"] and not busy


def test_this_process_keeps_what_it_uses_until_released(three_entries):
    cached_dir("demo", "old", lambda out: None)  # in use by this process now
    removed, busy = prune(max_size=0)
    assert [e.path.name for e in busy] == ["old"]


def test_cap_at_the_end_of_a_session(three_entries, monkeypatch):
    assert cache.apply_cap() is None  # unset: nothing happens
    monkeypatch.setenv(cache.MAX_SIZE_ENV, "6500B")
    line = cache.apply_cap()
    assert "removed 1 entries" in line
    assert [e.path.name for e in entries()] == ["mid", "new"]


def test_cli_lists_and_prunes(three_entries, capsys):
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert "3 entries" in out and out.index(" new") < out.index(" old")  # most recently used first
    assert main(["cache", "prune", "--max-size", "4K"]) == 0
    out = capsys.readouterr().out
    assert "removed demo/old" in out and "removed demo/mid" in out and "demo/new" not in out
    assert main(["cache", "prune"]) == 2
    assert "--max-size" in capsys.readouterr().err
    for days in ("-1", "0", "nan"):  # a cutoff now or in the future would remove every entry
        assert main(["cache", "prune", "--older-than", days]) == 2
        assert "--older-than takes a number of days above 0" in capsys.readouterr().err
    assert [e.path.name for e in entries()] == ["new"]


@pytest.mark.parametrize("text,size", [("500", 500), ("2K", 2048), ("1.5GiB", 3 * 2**29), ("10gb", 10 * 2**30),
                                       ("3M", 3 * 2**20)])
def test_sizes_read_as_users_write_them(text, size):
    assert parse_size(text) == size


def test_an_unreadable_size_names_the_form():
    with pytest.raises(ValueError, match="like 500M"):
        parse_size("lots")


def test_a_failed_build_leaves_nothing_and_a_partial_dir_is_pruned(tmp_path):
    def boom(out: Path) -> None:
        (out / "half").write_text("x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cached_dir("demo", "k", boom)
    assert not [e for e in entries() if e.path.name != "k"]
    leftover = cache.cache_root() / "demo" / ".tmp-k-deadbeef"  # a crashed process's half-written build
    leftover.mkdir(parents=True)
    (leftover / "half").write_text("x")
    assert [e.complete for e in entries()] == [False]
    removed, _ = prune(max_size=0)
    assert len(removed) == 1 and not leftover.exists()


def test_entries_record_what_built_them(ctx):
    from gpt2compress.core.variants import build

    built = build("int8-scratch", ctx)
    listed = {e.path.name: e for e in entries() if e.kind == "variants"}
    assert listed[built.path.name].label == "test: int8_scratch"
    info = json.loads((built.path / "info.json").read_text())
    assert listed[built.path.name].fingerprint == info["build"]["code"]["int8_scratch"]
    assert info["build"]["libraries"]["torch"] and "git_commit" in info["build"]
