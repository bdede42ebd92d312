"""Which cases a gate judged: the base's case list against the run's.

A case the base measured and the run did not is a failure that names it and what the run says of it (skipped, with
its reason; failed or errored; selected but never finished; not selected), unless a recorded retirement covers it
(`history accept SHA --retire CASE --reason …`). A case the run measured and the base did not is new: listed, not
gated. A retired case measured again fails, naming the fix. Cases the run left out because it is another kind of run
than the base (another `--tier`, `--shard`, `--smoke` or `--devices`: a PR tier gated against a nightly base, one
shard of several) are listed apart. A narrower `--stages` or `-k` excuses nothing: a PR could narrow its own
workflow's selection and pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.records import Record
from .runs import Run

KIND_OF_RUN = ("--smoke", "--devices")  # flags that make it another kind of run (beside the tier and shard facts)
RENAMED = {"--devices": ("--device",)}  # a base recorded before the rename (it collided with pytest-playwright's)
RETIRE = "to stop measuring it on purpose: gpt2compress history accept SHA --retire CASE --reason TEXT"


@dataclass
class Coverage:
    vanished: list[str] = field(default_factory=list)  # "case: what the run says of it": each fails the gate
    returned: list[str] = field(default_factory=list)  # retired cases measured again: each fails, naming the fix
    retired: list[str] = field(default_factory=list)  # vanished on purpose: "case: retired at SHA (reason)"
    outside: list[str] = field(default_factory=list)  # outside this run's selection, which differs from the base's
    new: list[str] = field(default_factory=list)  # measured by the run, not by the base: not gated

    @property
    def failures(self) -> list[str]:
        return [f"{line} — the base measured it; this run did not ({RETIRE})" for line in self.vanished] + self.returned

    def lines(self) -> list[str]:
        """What the page and the console say, failures first."""
        return ([f"VANISHED {line}" for line in self.vanished] + [f"RETURNED {line}" for line in self.returned]
                + [f"retired {line}" for line in self.retired] + [f"outside this run's selection: {line}"
                                                                  for line in self.outside]
                + [f"new, not gated: {line}" for line in self.new])


def _flag(argv: list[str], name: str) -> str | None:
    """The value of `name` on a command line (`--smoke` takes none: "on"); None when absent."""
    spelled = {name, *RENAMED.get(name, ())}
    for i, arg in enumerate(argv):
        if arg in spelled:
            return "on" if name == "--smoke" else (argv[i + 1] if i + 1 < len(argv) else None)
        if arg.split("=", 1)[0] in spelled and "=" in arg:
            return arg.split("=", 1)[1]
    return None


def selection(run: Run) -> dict[str, str | None]:
    """What kind of run chose its cases: its tier, its shard(s) (a base merged from shards has them all), smoke,
    device."""
    facts = run.session
    argv = facts.get("argv") or []
    shards = facts.get("shards") or ([facts["shard"]] if facts.get("shard") else None)
    return {"--tier": facts.get("tier"), "--shard": ",".join(shards) if shards else None,
            **{flag: _flag(argv, flag) for flag in KIND_OF_RUN}}


def _described(selection_: dict[str, str | None]) -> str:
    return " ".join(f"{k} {v}" for k, v in selection_.items() if v) or "no selecting option"


def _outcome(record: Record, run: Run) -> dict | None:
    """The run's own word on the base's `record`'s case: its test's outcome (None: the run did not select it)."""
    for case in (run.session.get("cases") or {}).values():
        if (case.get("kind"), case.get("device"), case.get("variant")) == (record.kind, record.device, record.variant) \
                and case.get("batch_size") in (None, getattr(record, "batch_size", None)):
            return case
    return None


def what_became_of(record: Record, run: Run) -> str:
    """Why the run has no row for the base's `record`, in the run's own words where it kept them."""
    if "cases" not in run.session:
        return "not in this run (its results carry no outcomes: measure it with this version of the bench)"
    case = _outcome(record, run)
    if case is None:
        return "not selected by this run (the case matrix, --tier, --stages or -k left it out)"
    outcome, reason = case.get("outcome"), case.get("reason")
    if outcome == "selected":
        return "selected, never finished (the session ended before it)"
    if outcome == "passed":
        return "its test passed but recorded no row"
    return f"{outcome}: {reason}" if reason else outcome


def coverage(base: Run, run: Run, retirements: tuple = ()) -> Coverage:
    """`retirements`: the `history_store.Retirement`s that apply to the run's commit."""
    out = Coverage()
    ours, theirs = selection(run), selection(base)
    for record in base.records:
        if run.find(record.case) is not None:
            continue
        where = record.where()
        retired = next((r for r in retirements if r.covers(record)), None)
        if retired is not None:
            out.retired.append(f"{where}: retired at {retired.commit[:12]} ({retired.reason})")
            continue
        if _outcome(record, run) is None and "cases" in run.session and ours != theirs:
            out.outside.append(f"{where} (this run: {_described(ours)}; the base: {_described(theirs)})")
            continue
        out.vanished.append(f"{where}: {what_became_of(record, run)}")
    for record in run.records:
        if base.find(record.case) is not None:
            continue
        retired = next((r for r in retirements if r.covers(record)), None)
        if retired is not None:
            out.returned.append(
                f"{record.where()}: retired at {retired.commit[:12]} ({retired.reason}) and measured again; to gate "
                f"it, revoke that: gpt2compress history accept {retired.commit[:12]} --retire {retired.case} "
                "--revoke")
        else:
            out.new.append(record.where())
    return out
