"""What differs between a base run and the run gated against it, besides the code: the machine and the stack.

Every difference is shown. A library whose version changed while the pins did not (the same `constraints.txt`, by
its digest in the session facts) means the runner's environment drifted under the gate: the verdicts of the cases
that library runs are "not comparable", and the gate fails naming the fix. A run whose pins changed (the PR bumps a
library) is compared as usual: the new version is the PR's change. Pins unknown on either side (a run recorded before
they were kept) count as unchanged: nothing says the PR moved them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..records import Record
from .runs import Run

PINS_FILE = "constraints.txt"  # the lock every install of CI, bench/ci.sh and .ci/run takes its versions from
OWN = ("gpt2compress",)  # this project's own version moves with the code, which the gate is there to judge
MACHINE_KEYS = ("cpu_isa", "torch_cpu_capability", "threads", "python")  # gpt2compress machine facts shown


def pins_digest(root: Path) -> str | None:
    """The lock file's digest: two runs with the same one installed the same versions (None: no lock file)."""
    path = Path(root) / PINS_FILE
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def versions(run: Run, record: Record | None = None) -> dict[str, str]:
    """Library -> version a case ran on: the session's stack, then what its build recorded."""
    found = {**(run.session.get("versions") or {}), **((record.build or {}).get("libraries") or {} if record else {})}
    return {name: str(v) for name, v in found.items() if v is not None and name not in OWN}


@dataclass
class Drift:
    machine: list[str] = field(default_factory=list)  # hardware and platform differences: shown, not refused
    libraries: dict[str, tuple[str, str]] = field(default_factory=dict)  # library -> (base, run), every change
    pins_changed: bool = False  # the run installed from other pins than the base: its versions are its change
    refused: dict[str, list[str]] = field(default_factory=dict)  # case -> the drifted libraries it runs

    def lines(self) -> list[str]:
        libraries = [f"{name} {a} → {b}" for name, (a, b) in sorted(self.libraries.items())]
        why = "the run's pins differ from the base's: the PR's change" if self.pins_changed else "pins unchanged"
        return ([f"machine: {line}" for line in self.machine]
                + ([f"libraries ({why}): {', '.join(libraries)}"] if libraries else []))

    @property
    def failures(self) -> list[str]:
        """One line per set of drifted libraries, naming the cases it makes not comparable and the fix."""
        groups: dict[tuple[str, ...], list[str]] = {}
        for where, names in self.refused.items():
            groups.setdefault(tuple(names), []).append(where)
        return [f"not comparable: {', '.join(f'{n} {self.libraries[n][0]} → {self.libraries[n][1]}' for n in names)}"
                f" with unchanged pins ({PINS_FILE}) in {len(cases)} case(s) ({', '.join(sorted(cases)[:4])}"
                f"{' …' if len(cases) > 4 else ''}): the runner's environment drifted; install from {PINS_FILE} "
                "(bench/ci.sh does) and record a new base on main (re-run its bench)"
                for names, cases in sorted(groups.items())]


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
    pins = base.session.get("pins"), run.session.get("pins")
    out = Drift(_machine(base, run), pins_changed=None not in pins and pins[0] != pins[1])
    for record in run.records:
        before = base.find(record.case)
        if before is None:
            continue
        a, b = versions(base, before), versions(run, record)
        changed = sorted(name for name in set(a) & set(b) if a[name] != b[name])
        for name in changed:
            out.libraries[name] = (a[name], b[name])
        if changed and not out.pins_changed:
            out.refused[record.where()] = changed
    return out
