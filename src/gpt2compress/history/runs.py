"""Reading saved results into records: pytest-benchmark's JSON (our rows are its `extra_info`) or the journal
(`results.jsonl`) a session appends to as it measures, which survives a crash that loses the JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..core.kinds import reference_of
from ..core.metrics import FORWARD
from ..build.hardware import cpu_list, isa_level
from ..core.records import Record, RecordError, from_extra_info

JOURNAL_SUFFIX = ".jsonl"


@dataclass
class Run:
    label: str
    machine: dict
    records: list[Record] = field(default_factory=list)

    def of(self, kind: str, device: str | None = None) -> list[Record]:
        """Records of one kind ("forward", "generate", "train", "classify"), optionally on one device."""
        return [r for r in self.records if r.kind == kind and (device is None or r.device == device)]

    def record(self, device: str, variant: str, kind: str = FORWARD, shape: tuple | None = None) -> Record | None:
        return next((r for r in self.of(kind, device) if r.variant == variant and (shape is None or r.shape == shape)),
                    None)

    def find(self, case: tuple) -> Record | None:
        return next((r for r in self.records if r.case == case), None)

    def reference_for(self, record: Record) -> Record | None:
        """The same run's reference row for `record` (same kind, device and shape)."""
        return self.find((record.kind, record.device, reference_of(record.kind), *record.shape))

    def by_device(self, kind: str) -> list[tuple[str, list[Record]]]:
        """(device, records of `kind` on it) for each device that has any: one report table each."""
        return [(d, rows) for d in self.devices if (rows := self.of(kind, d))]

    @property
    def session(self) -> dict:
        """What bench/conftest.py says of the session: skips, cases and outcomes, exit status, tier, command line."""
        return self.machine.get("gpt2compress", {})

    @property
    def failure(self) -> str | None:
        return failure(self.session)

    @property
    def devices(self) -> list[str]:
        return sorted({r.device for r in self.records})

    def fill_ratios(self) -> None:
        """Rows from the previous release carry no ratios this version trusts: divide by the run's reference row
        (unpaired: that release timed the reference once, not alternately)."""
        for r in self.records:
            base = self.reference_for(r)
            if not r.ratios and base is not None:
                r.against(base, paired=False)


def failure(facts: dict) -> str | None:
    """Why this run must never be a gate's base: its pytest failed, or its session never finished (a journal
    without its last line). None: it passed, or it predates the record of outcomes (nothing says otherwise)."""
    status = facts.get("exitstatus")
    if status is None:
        return "the session never finished (a crash or a cancelled job)" if facts.get("cases") else None
    if status == 0:
        return None
    failed = sorted(t for t, c in facts.get("cases", {}).items() if c.get("outcome") in ("failed", "error"))
    named = f": {', '.join(failed[:3])}{' …' if len(failed) > 3 else ''}" if failed else ""
    return f"pytest exited {status}{named}"


def describe_machine(machine: dict) -> str:
    """One line naming what measured a run: CPU model and ISA, threads and the CPUs they were pinned to, the
    libraries that set the speed, the GPU. Every report and chart carries it, since a number means little without."""
    cpu, ours = machine.get("cpu") or {}, machine.get("gpt2compress") or {}
    model = ", ".join(f"{k} {cpu[k]}" for k in ("family", "model") if cpu.get(k) is not None)
    isa = isa_level(ours["cpu_isa"]) if ours.get("cpu_isa") else "ISA unknown"
    brand = cpu.get("brand_raw") or machine.get("processor") or "unknown CPU"
    line = f"{brand} ({'; '.join(filter(None, [model, isa]))})"
    if ours.get("threads"):
        line += f", {ours['threads']} thread{'s' if ours['threads'] != 1 else ''}"
        if ours.get("cpus_allowed"):
            line += f" on CPUs {cpu_list(ours['cpus_allowed'])} of {ours.get('cpus_online') or '?'}"
    versions = ours.get("versions") or {}
    libraries = [f"{name} {versions[name]}" for name in ("torch", "openvino") if versions.get(name)]
    gpu = (ours.get("gpu") or {}).get("name")
    return "; ".join([line, *([", ".join(libraries)] if libraries else []), *([f"GPU {gpu}"] if gpu else [])])


def measured_on(runs: list[Run]) -> list[str]:
    """The machine line of each run, once when they share one (a chart footer, summary.md's second line)."""
    lines = [describe_machine(run.machine) for run in runs]
    return lines[:1] if len(set(lines)) == 1 else [f"{run.label}: {line}" for run, line in zip(runs, lines)]


SESSION_KEYS = ("skipped", "durations", "cases", "exitstatus", "shard", "tier", "argv", "cwd", "pins",
                "ceiling")  # differ by run (the ceiling: a probe's noise; drift names the CPU itself)


def _with_session(machine: dict, data: dict) -> dict:
    """The machine info, with the session's own facts (skips, test times, shard, command line) under
    `machine["gpt2compress"]`, where the history keeps them."""
    session = data.get("gpt2compress")
    return {**machine, "gpt2compress": {**machine.get("gpt2compress", {}), **session}} if session else machine


def _rows_from_json(path: Path, data: dict) -> list[tuple[str, dict]]:
    return [(f"{path} benchmark {b.get('name') or i}", b.get("extra_info", {}))
            for i, b in enumerate(data.get("benchmarks", []))]


def _rows_from_journal(path: Path, lines: list[str]) -> tuple[dict, list[tuple[str, dict]]]:
    machine, rows = {}, []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash: everything before it stands
            continue
        if entry.get("type") == "session":  # its shard, tier and command line too: the gate's re-runs need them
            machine = _with_session(entry.get("machine_info", machine), entry)
        elif entry.get("type") == "record":
            rows.append((f"{path} line {n}", entry["record"]))
        elif entry.get("type") == "case" and entry.get("test"):  # an outcome, noted as it settled
            case = {k: v for k, v in entry.items() if k not in ("type", "test", "time")}
            machine.setdefault("gpt2compress", {}).setdefault("cases", {})[entry["test"]] = case
        elif entry.get("type") == "finished":
            machine.setdefault("gpt2compress", {})["exitstatus"] = entry.get("exitstatus")
    return machine, rows


def load_run(path: str | Path, label: str | None = None) -> Run:
    """A results JSON from `pytest bench/ --benchmark-json=PATH`, or its journal `PATH` with `.jsonl`."""
    path = Path(path)
    journal = path.with_suffix(JOURNAL_SUFFIX)
    if not path.exists() and path.suffix != JOURNAL_SUFFIX and journal.exists():
        raise ValueError(f"{path} was not written (did the session crash?); its journal {journal} holds every row "
                         f"measured before that: pass {journal} instead")
    try:
        text = path.read_text()
        if path.suffix == JOURNAL_SUFFIX:
            machine, rows = _rows_from_journal(path, text.splitlines())
        else:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise json.JSONDecodeError("not a JSON object (pytest-benchmark writes one)", text, 0)
            machine, rows = _with_session(data.get("machine_info", {}), data), _rows_from_json(path, data)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read benchmark results {path}: {err}; write them with "
                         f"`pytest bench/ --benchmark-json={path.with_suffix('.json').name}`") from err
    run = Run(label or path.stem, machine)
    for where, info in rows:
        if "variant" not in info:
            continue  # not one of ours (another plugin's benchmark in the same session)
        run.records.append(from_extra_info(info, where))
    if not run.records:
        raise RecordError(f"{path} holds no gpt2compress results (no row with a `variant`): write it with "
                          f"`pytest bench/ --benchmark-json={path.with_suffix('.json').name}`")
    run.fill_ratios()
    return run
