"""On-disk cache keyed by content, written atomically.

Every cached thing (a trained `tiny`, a tokenized eval set, a built variant) lives
under a directory named by the hash of the recipe that made it. A directory is
built under a temporary name and renamed into place only when complete, so an
interrupted run never leaves something a later run would trust.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

COMPLETE_MARK = ".complete"


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


def cached_dir(kind: str, key: str, build: Callable[[Path], None]) -> Path:
    """Return the complete cache dir for (kind, key), calling `build(tmp_dir)` only if missing."""
    final = cache_root() / kind / key
    if (final / COMPLETE_MARK).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        build(tmp)
        (tmp / COMPLETE_MARK).write_text(key)
        if final.exists():  # a stale, incomplete leftover: never trusted, replaced
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first; its copy is as good as ours
            if not (final / COMPLETE_MARK).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
