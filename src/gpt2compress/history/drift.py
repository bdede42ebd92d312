"""What differs between a base run and the run gated against it, besides the code: the machine and the stack.

Every difference is shown. Each run records the lock it installed from (`constraints.txt`: every package's pinned
version, in the session facts). A library whose version changed while its pin did not (or that no lock pins, as
Python itself) means the runner's environment drifted under the gate: the verdicts of the cases that library runs
are "not comparable", and the gate fails naming the fix. A library whose pin the run changed (the PR bumps it) is
compared as usual: the new version is the PR's change. A base recorded before runs kept their lock cannot tell the
two apart: its changed libraries are refused, naming a new base as the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..core.records import Record
from .runs import Run

PINS_FILE = "constraints.txt"  # the lock every install of CI, scripts/ci.sh and .ci/run takes its versions from
OWN = ("gpt2compress",)  # this project's own version moves with the code, which the gate is there to judge
MACHINE_KEYS = ("cpu_isa", "torch_cpu_capability", "threads", "python")  # gpt2compress machine facts shown


def _name(package: str) -> str:
    return re.sub(r"[-_.]+", "-", package).lower()


def pinned(root: Path) -> dict[str, str] | None:
    """Package -> the version the lock pins (None: no lock file)."""
    path = Path(root) / PINS_FILE
    if not path.is_file():
        return None
    pairs = (line.split("#", 1)[0].strip().split("==", 1) for line in path.read_text().splitlines())
    return {_name(pair[0]): pair[1].strip() for pair in pairs if len(pair) == 2}


def versions(run: Run, record: Record | None = None) -> dict[str, str]:
    """Library -> version a case ran on: the session's stack, then what its build recorded."""
    found = {**(run.session.get("versions") or {}), **((record.build or {}).get("libraries") or {} if record else {})}
    return {name: str(v) for name, v in found.items() if v is not None and name not in OWN}


@dataclass
class Drift:
    machine: list[str] = field(default_factory=list)  # hardware and platform differences: shown, not refused
    bumped: dict[str, tuple[str, str]] = field(default_factory=dict)  # library -> (base, run): the run's pin moved
    refused: dict[str, list[str]] = field(default_factory=dict)  # case -> "lib a → b" that drifted under it
    no_lock: bool = False  # the base (or the run) kept no lock: a changed library cannot be told from drift

    def lines(self) -> list[str]:
        bumped = [f"{name} {a} → {b}" for name, (a, b) in sorted(self.bumped.items())]
        return ([f"machine: {line}" for line in self.machine]
                + ([f"libraries the run's lock changed (the PR's change): {', '.join(bumped)}"] if bumped else []))

    @property
    def failures(self) -> list[str]:
        """One line per set of drifted libraries, naming the cases it makes not comparable and the fix."""
        groups: dict[tuple[str, ...], list[str]] = {}
        for where, changes in self.refused.items():
            groups.setdefault(tuple(changes), []).append(where)
        why = (f"the base predates the lock ({PINS_FILE}), so this cannot be told from drift:" if self.no_lock else
               f"under an unchanged pin ({PINS_FILE}), the runner's environment drifted: install from the lock "
               "(scripts/ci.sh does), then")
        return [f"not comparable: {', '.join(changes)} in {len(cases)} case(s) ({', '.join(sorted(cases)[:4])}"
                f"{' …' if len(cases) > 4 else ''}); {why} record a new base on main (re-run its bench)"
                for changes, cases in sorted(groups.items())]


def _machine(base: Run, run: Run) -> list[str]:
    out = []
    a, b = base.machine.get("cpu") or {}, run.machine.get("cpu") or {}
    for key in ("brand_raw", "family", "model"):
        if a.get(key) != b.get(key):
            out.append(f"CPU {key} {a.get(key)} → {b.get(key)}")
    for key in MACHINE_KEYS:
        x, y = base.session.get(key), run.session.get(key)
        if x != y and key == "cpu_isa":
            gone, added = sorted(set(x or ()) - set(y or ())), sorted(set(y or ()) - set(x or ()))
            out.append(f"CPU flags: {' '.join(['-' + f for f in gone] + ['+' + f for f in added])}")
        elif x != y:
            out.append(f"{key} {x} → {y}")
    gpu_a, gpu_b = base.session.get("gpu") or {}, run.session.get("gpu") or {}
    out += [f"GPU {key} {gpu_a.get(key)} → {gpu_b.get(key)}" for key in sorted(set(gpu_a) | set(gpu_b))
            if key != "memory_gb" and gpu_a.get(key) != gpu_b.get(key)]
    return out


def drift(base: Run, run: Run) -> Drift:
    locks = base.session.get("pins"), run.session.get("pins")
    lock_a, lock_b = (lock if isinstance(lock, dict) else None for lock in locks)  # (an early run kept a digest)
    out = Drift(_machine(base, run), no_lock=lock_a is None or lock_b is None)
    for record in run.records:
        before = base.find(record.case)
        if before is None:
            continue
        a, b = versions(base, before), versions(run, record)
        drifted = []
        for name in sorted(set(a) & set(b)):
            if a[name] == b[name]:
                continue
            pin_a, pin_b = ((lock or {}).get(_name(name)) for lock in (lock_a, lock_b))
            if not out.no_lock and pin_a != pin_b:
                out.bumped[name] = (a[name], b[name])
            else:
                drifted.append(f"{name} {a[name]} → {b[name]}")
        if drifted:
            out.refused[record.where()] = drifted
    return out
