"""The kinds of measurement, registered: forward, generate, train, classify, and any a plugin adds.

A kind is one module (`gpt2compress/kinds/<name>.py`, or a file of a user's) that calls `register_kind` with its
typed record, its reference variant and how that reference is measured, its cases, how one case is measured, and
its report page. The bench's one parametrize hook, its fixtures, records read back from JSON, budgets and the
report all read the kind from here; nothing else names the four built-in ones. The built-in kinds register the
first time the registry is read (as the stages do, `registry.stage`); reading results back needs only their record
classes (`records.RECORDS`), never the measurement code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .cases import Case
    from .metrics import Metric
    from .records import Record


class BadOption(ValueError):
    """An option value a kind cannot measure with; the message names the option to change (the case fails)."""


@dataclass(frozen=True)
class Setting:
    """What a kind's reference and options are made from in the bench: the device's context, the run's options
    (`option("--rounds")`) and the suite's other fixtures (`fixture("hellaswag")`)."""

    ctx: Any
    option: Callable[[str], Any]
    fixture: Callable[[str], Any]


@dataclass(frozen=True)
class Page:
    """A kind's part of `summary.md` (markdown lines) and its charts (the files drawn), from the runs read back."""

    section: Callable[[list], list[str]]
    charts: Callable[[list, Path], list[Path]] = lambda runs, out: []


@dataclass(frozen=True)
class Kind:
    name: str
    record: type[Record]  # one typed record per kind (its REFERENCE: the variant every ratio divides by)
    cases: Callable[[], list[Case]]  # read at call time, so a plugin's variant adds its cases
    # `Setting` -> (key, measure): the reference, measured once per session and key, never changed afterwards
    measure_reference: Callable[[Setting], tuple[tuple, Callable[[], Any]]]
    # (built, ctx, reference, runner, options) -> the case's record, its rounds timed by `runner`
    measure: Callable[..., Record]
    page: Page | None = None
    smoke: tuple[str, ...] = ()  # --smoke: besides the reference, which cases prove this kind runs
    # tier -> its cases besides the reference (a tier it does not name: none of them); None: every case, every tier
    tiers: dict[str, tuple[str, ...]] | None = None
    family: str = "lm"  # the model its cases build from: cases that train the same one share a --shard group
    metrics: tuple[Metric, ...] = ()  # a plugin kind's own metrics (the built-in ones are in metrics.METRICS)
    options: Callable[[Case, Callable[[str], Any]], dict] = lambda case, option: {}  # per-case measure options
    context: str = "ctx"  # the fixture its cases measure in (classify: `classify_ctx`)
    # a kind that times its rounds itself (train: optimizer steps) gives them here, in seconds, for pytest-benchmark
    own_rounds: Callable[[Record], list[float]] | None = None

    @property
    def reference(self) -> str:
        return self.record.REFERENCE


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    """Adds `kind`, its record class (`records.RECORDS`, what reads results back) and its own metrics to the
    catalog; a name already taken is an error naming the owner."""
    from .metrics import register_metric
    from .records import RECORDS

    if kind.name in KINDS and KINDS[kind.name] is not kind:
        raise ValueError(f"kind {kind.name!r} is already registered (by {KINDS[kind.name].record.__module__}): "
                         "choose another name")
    for m in kind.metrics:
        register_metric(m)
    RECORDS[kind.name] = kind.record
    KINDS[kind.name] = kind
    return kind


def _builtin() -> None:
    importlib.import_module("gpt2compress.kinds")  # every built-in kind module registers itself on import


def kinds() -> list[str]:
    _builtin()
    return list(KINDS)


def kind_of(name: str) -> Kind:
    _builtin()
    if name not in KINDS:
        raise KeyError(f"unknown kind {name!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[name]


def reference_of(kind: str) -> str:
    """Read off the kind's record class: reading results never imports a kind's measurement code."""
    from .records import RECORDS

    if kind not in RECORDS:
        raise KeyError(f"unknown kind {kind!r}; known kinds: {', '.join(RECORDS)}")
    return RECORDS[kind].REFERENCE
