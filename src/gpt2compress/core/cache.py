"""On-disk cache keyed by content, written atomically, shared safely between processes, bounded in size.

Every cached thing (a trained `tiny`, tokenized windows, a built variant) is a
directory `<root>/<kind>/<key>`, the key hashed from everything that made it (see
`fingerprint.py` for the code and library versions). A directory is built under a
temporary name and renamed into place only when complete, so an interrupted run
never leaves something a later run would trust.

Processes coordinate with `flock` locks:
- one builder per key (`.locks/<kind>/<key>.lock`, exclusive): a second process that
  wants the same key waits, then uses the first one's entry instead of building it again;
- every process that uses an entry holds a shared lock on its `.in-use` file until it
  exits, and `prune` skips any entry it cannot lock exclusively: it never deletes what
  a running build or benchmark is reading.

Each use touches `.last-used`, so `prune` removes the least recently used first.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .progress import say

COMPLETE_MARK = ".complete"
ENTRY_FILE = ".entry.json"  # kind, key, label, fingerprint, created: what `cache ls` shows
LAST_USED = ".last-used"
IN_USE = ".in-use"
LOCKS = ".locks"
TMP_PREFIX = ".tmp-"
MAX_SIZE_ENV = "GPT2COMPRESS_CACHE_MAX"
_held: dict[Path, int] = {}  # entry -> fd of its shared in-use lock, held for the life of this process


def cache_root() -> Path:
    """`$GPT2COMPRESS_CACHE`, else `~/.cache/gpt2compress`."""
    root = os.environ.get("GPT2COMPRESS_CACHE") or Path.home() / ".cache" / "gpt2compress"
    return Path(root).expanduser()


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "cache_key"):
        return obj.cache_key
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.metadata.get("hash", True)}
        return {"__type__": type(obj).__name__, **fields}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def content_key(*parts: Any) -> str:
    """A short stable hash of anything JSON-able, dataclasses and `.cache_key` objects included."""
    text = json.dumps(parts, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def _flock(path: Path, mode: int, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """Yield True with the lock held; with LOCK_NB, False when another holder has it. `on_wait` is called when a
    blocking lock must first wait for another holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, mode | (fcntl.LOCK_NB if on_wait else 0))
        except BlockingIOError:
            if on_wait is None:
                yield False
                return
            on_wait()
            fcntl.flock(fd, mode)
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _tmp_dir(kind_dir: Path, key: str) -> Path:
    """Where a build of `key` is written until complete; `_key_of` reads the key back."""
    return kind_dir / f"{TMP_PREFIX}{key}-{uuid.uuid4().hex[:8]}"


def _key_of(path: Path) -> str:
    return path.name.removeprefix(TMP_PREFIX).rsplit("-", 1)[0] if path.name.startswith(TMP_PREFIX) else path.name


def _build_lock(kind_dir: Path, key: str) -> Path:
    return kind_dir.parent / LOCKS / kind_dir.name / f"{key}.lock"


def _use(entry: Path) -> bool:
    """Mark a complete entry as in use by this process (shared lock) and recently used; False if absent."""
    if entry in _held:
        (entry / LAST_USED).touch()
        return True
    if not (entry / COMPLETE_MARK).exists():
        return False
    try:
        fd = os.open(entry / IN_USE, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # pruned between the check and the open
        return False
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a prune is removing it ...
    if not (entry / COMPLETE_MARK).exists():  # ... and then it may be gone
        os.close(fd)
        return False
    _held[entry] = fd
    (entry / LAST_USED).touch()
    return True


def release_all() -> None:
    """Drop this process's in-use locks (at the end of a session, before capping the cache)."""
    while _held:
        os.close(_held.popitem()[1])


def cached_dir(kind: str, key: str, build: Callable[[Path], None], meta: dict | None = None) -> Path:
    """The complete cache dir for (kind, key), calling `build(tmp_dir)` only if no process has built it."""
    final = cache_root() / kind / key
    if _use(final):
        return final
    waiting = f"waiting for another process building {(meta or {}).get('label') or kind} (cache/{kind}/{key})"
    with _flock(_build_lock(final.parent, key), fcntl.LOCK_EX, on_wait=lambda: say(waiting)):  # minutes: say why
        if not _use(final):
            tmp = _tmp_dir(final.parent, key)
            tmp.mkdir(parents=True)
            try:
                build(tmp)
                entry = {"kind": kind, "key": key, "created": time.time(), **(meta or {})}
                (tmp / ENTRY_FILE).write_text(json.dumps(entry, default=str))
                (tmp / COMPLETE_MARK).write_text(key)
                if final.exists():  # an incomplete leftover (a complete one would have been used): replaced
                    shutil.rmtree(final)
                os.rename(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if not _use(final):
                raise RuntimeError(f"cache entry {final} vanished right after it was built")
    return final


# --- listing and pruning ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    path: Path
    kind: str
    label: str
    size: int
    last_used: float
    fingerprint: str  # the code digest that built it ("" where none applies)
    complete: bool


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _entry(path: Path) -> Entry | None:
    """None if another process moved it away meanwhile (a build finishing, a prune): the cache is shared."""
    try:
        meta = {}
        if (path / ENTRY_FILE).is_file():
            meta = json.loads((path / ENTRY_FILE).read_text())
        stamp = next((p for p in (path / LAST_USED, path / COMPLETE_MARK, path) if p.exists()), None)
        if stamp is None:
            return None
        complete = (path / COMPLETE_MARK).exists()
        label = meta.get("label") or ("" if complete else "(partial build)")
        return Entry(path, path.parent.name, label, _dir_size(path), stamp.stat().st_mtime,
                     meta.get("fingerprint") or "", complete)
    except FileNotFoundError:
        return None


def entries(root: Path | None = None) -> list[Entry]:
    """Every entry and unfinished build under the cache, least recently used first."""
    root = root or cache_root()
    found = [_entry(p) for kind in sorted(root.glob("*")) if kind.is_dir() and not kind.name.startswith(".")
             for p in kind.iterdir() if p.is_dir() and not p.name.startswith(".trash-")]
    return sorted((e for e in found if e is not None), key=lambda e: e.last_used)


def _remove(entry: Entry) -> bool:
    """Delete an entry no process is using or building; False (and nothing touched) otherwise."""
    with _flock(_build_lock(entry.path.parent, _key_of(entry.path)), fcntl.LOCK_EX | fcntl.LOCK_NB) as building_free:
        if not building_free:
            return False
        if entry.complete:
            with _flock(entry.path / IN_USE, fcntl.LOCK_EX | fcntl.LOCK_NB) as unused:
                if not unused:
                    return False
                trash = entry.path.parent / f".trash-{entry.path.name}-{uuid.uuid4().hex[:8]}"
                os.rename(entry.path, trash)  # atomic: a reader sees the entry whole or not at all
        else:
            trash = entry.path
    shutil.rmtree(trash, ignore_errors=True)
    return True


def prune(max_size: int | None = None, older_than_days: float | None = None,
          root: Path | None = None) -> tuple[list[Entry], list[Entry]]:
    """Remove entries unused for `older_than_days`, then least recently used ones until the cache fits
    `max_size` bytes. Returns (removed, skipped because in use)."""
    listed = entries(root)
    total = sum(e.size for e in listed)
    removed, busy = [], []
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    for entry in listed:
        too_old = cutoff is not None and entry.last_used < cutoff
        too_big = max_size is not None and total > max_size
        if not (too_old or too_big):
            continue
        if _remove(entry):
            removed.append(entry)
            total -= entry.size
        else:
            busy.append(entry)
    return removed, busy


def parse_size(text: str) -> int:
    """`500M`, `2G`, `1.5GiB`, `10GB`, `123456` -> bytes (K, M, G, T are powers of 1024)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:I?B)?\s*", str(text).upper())
    if not match:
        raise ValueError(f"cannot read size {text!r}: write it like 500M, 2G or 1.5GiB")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " KMGT".index(unit or " "))


def apply_cap() -> str | None:
    """With `$GPT2COMPRESS_CACHE_MAX` set (end of a session): release this process's entries, prune the
    least recently used down to the cap, and say what was done. None if unset."""
    cap = os.environ.get(MAX_SIZE_ENV)
    if not cap:
        return None
    limit = parse_size(cap)
    release_all()
    removed, busy = prune(max_size=limit)
    left = sum(e.size for e in entries())
    line = (f"gpt2compress cache {cache_root()}: ${MAX_SIZE_ENV}={cap}; removed {len(removed)} entries "
            f"({human(sum(e.size for e in removed))}), {human(left)} left")
    return line + (f"; {len(busy)} in use by other processes kept" if busy else "")


def human(size: float) -> str:
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"
