"""The session's journal: one JSON line per record, appended and flushed the moment it is measured.

pytest-benchmark writes its JSON once, at the end of the session; a crash (a native engine's segfault, an
out-of-memory kill, a cancelled CI job) loses every row measured before it. The journal keeps them:
`gpt2compress plot` and `compare` read `results.jsonl` as they read `results.json`. Each case's outcome is noted
as it settles and the exit status at the end, so a journal without that last line is a session that never finished.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..core.records import Record


class Journal:
    def __init__(self, path: str | Path, machine_info: dict, session: dict | None = None) -> None:
        """Starts a new journal at `path` (a previous session's is replaced): its first line is the machine and
        `session`, what the JSON's "gpt2compress" section says of the session (its shard, tier, command line)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self._write({"type": "session", "started": time.time(), "machine_info": machine_info,
                     "gpt2compress": session or {}})

    def append(self, record: Record) -> None:
        self._write({"type": "record", "time": time.time(), "record": record.to_extra_info()})

    def note(self, entry: dict) -> None:
        """A fact of the session that is not a record: a case's outcome, the exit status at its end."""
        self._write({**entry, "time": time.time()})

    def _write(self, entry: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(entry, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
