"""Budgets: what each stage may cost, per device and per model, from a versioned TOML file (the one reader of it).

    version = 1
    [cpu."*".pruned]                 # device, model ("*" = any), variant
    max_perplexity_ratio = 1.5       # perplexity / fp32 perplexity
    max_latency_ratio = 1.1          # latency / fp32's, paired rounds of the same session

    [cpu.gpt2-random.ov-int8-static.vnni]   # a CPU class (hardware.CPU_CLASSES): only where the CPU has VNNI/AMX
    max_latency_ratio = 0.60         # a speed claim that INT8 kernels hold there, not on AVX2-only CPUs

    [[compare]]                      # `gpt2compress compare`: override a metric's default threshold
    match = "cpu/ov-.*"              # regex on "device/variant"
    metric = "latency"               # a metric of catalog.METRICS
    kind = "forward"                 # optional: only rows of this kind
    threshold = 0.20

Entries for a specific model override those under "*", and a CPU class's sub-table its own table's. Budget
keys and metric names come from `metrics.py`; an unknown one is an error that lists the known ones. A budget
applies to the records of its metric's kinds, and a budget whose metric was not measured fails, saying why.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .metrics import BUDGET_KEYS, METRICS, budget_value
from .records import RECORDS
from ..build.hardware import CPU_CLASSES
from .registry import CPU, CUDA
from .records import Record

SUPPORTED_VERSION = 1


class BudgetFileError(ValueError):
    """A budgets file that cannot be used; the message says where and how to fix it."""


@dataclass(frozen=True)
class CompareRule:
    pattern: re.Pattern
    metric: str
    threshold: float
    kind: str | None = None

    def matches(self, record: Record, metric: str) -> bool:
        return (metric == self.metric and self.kind in (None, record.kind)
                and self.pattern.fullmatch(f"{record.device}/{record.variant}") is not None)


@dataclass(frozen=True)
class Budgets:
    limits: dict = field(default_factory=dict)  # device -> model -> variant -> {budget key: limit}
    compare: tuple[CompareRule, ...] = ()

    def budget_for(self, device: str, model: str, variant: str, cpu_classes: tuple[str, ...] = ()) -> Budget:
        """The "*" model's limits, then the named model's; in each, a sub-table of a CPU class the measuring CPU
        belongs to (`hardware.cpu_classes`) over the table's own limits."""
        merged: dict[str, float] = {}
        for entry in (self.limits.get(device, {}).get(m, {}).get(variant, {}) for m in ("*", model)):
            merged.update({k: v for k, v in entry.items() if not isinstance(v, dict)})
            for cls in cpu_classes:
                merged.update(entry.get(cls, {}))
        return Budget({k: float(v) for k, v in merged.items()})


@dataclass(frozen=True)
class Budget:
    limits: dict[str, float] = field(default_factory=dict)  # budget key -> limit

    def of(self, kind: str) -> dict[str, float]:
        """The limits that gate records of `kind`."""
        return {k: v for k, v in self.limits.items() if kind in BUDGET_KEYS[k].kinds}

    def violations(self, record: Record) -> list[str]:
        """One line per broken limit ('key: measured X, allowed ≤ Y'), per budgeted metric that was not measured,
        and per measurement the record itself flags as untrustworthy."""
        out = []
        for key, limit in self.of(record.kind).items():
            m = BUDGET_KEYS[key]
            if m.ungated(record):
                continue  # e.g. perplexity of random weights: reported, never gated
            value = budget_value(key, record)
            if value is None:
                out.append(f"{key}: {m.name} was not measured ({_why_missing(m.name, record)}); a budget on it "
                           "cannot pass")
                continue
            bound = "≥" if key.startswith("min_") else "≤"
            if math.isnan(value) or (value < limit if bound == "≥" else value > limit):  # NaN passes neither bound
                out.append(f"{key}: measured {value:.4g}, allowed {bound} {limit:.4g}")
        return out + list(record.problems)


def _why_missing(metric: str, record: Record) -> str:
    m = METRICS[metric]
    if metric in record.missing:
        return record.missing[metric]
    if m.value(record) is None:
        return f"this {record.kind} row has no {m.field}"
    return f"the reference of {record.kind} rows has no {metric} in this run"


def load_budgets(path: str | Path, variant_names: bool = True) -> Budgets:
    """`variant_names`: check each table's variant against the case matrix, which imports every stage (torch and
    all): the bench does; `compare` and the history gate, which read only the [[compare]] rules, skip it and
    answer in a second."""
    path = Path(path)
    if not path.is_file():
        raise BudgetFileError(f"budgets file {path} not found; pass --budgets FILE (default: bench/budgets.toml)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise BudgetFileError(f"{path} is not valid TOML ({err}); fix the syntax there") from err
    if data.get("version") != SUPPORTED_VERSION:
        raise BudgetFileError(f"{path}: `version = {SUPPORTED_VERSION}` is required at the top "
                              f"(found {data.get('version')!r})")
    limits = {k: v for k, v in data.items() if k not in ("version", "compare")}
    variants_known = _case_names() if limits and variant_names else None
    for device, models in limits.items():
        _check_name(path, f"[{device}]", "device", device, (CPU, CUDA))
        for model, variants in _table(path, device, models).items():
            for variant, entry in _table(path, f"{device}.{model}", variants).items():
                where = f"[{device}.{model!r}.{variant}]"
                if variants_known is not None:
                    _check_name(path, where, "variant", variant, variants_known)
                for key, value in _table(path, where, entry).items():
                    if isinstance(value, dict):
                        _check_cpu_class(path, where, key, value)
                    else:
                        _check_limit(path, where, key, value)
    rules = data.get("compare", [])
    if not isinstance(rules, list) or not all(isinstance(rule, dict) for rule in rules):
        raise BudgetFileError(f"{path}: compare rules are an array of tables, each [[compare]] (double brackets) "
                              f"with metric, threshold and optional match / kind; got {rules!r}")
    return Budgets(limits, tuple(_rule(path, rule) for rule in rules))


def _case_names() -> list[str]:
    from .cases import names  # the case table imports the stages: only once a budgets file is read

    return names()


def _check_name(path: Path, where: str, what: str, name: str, known: list[str] | tuple[str, ...]) -> None:
    """A table whose device or variant matches nothing would never gate a row: a typo, not a budget."""
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        raise BudgetFileError(f"{path} {where}: unknown {what} {name!r}" + (f" (did you mean {close[0]!r}?)" if close
                              else "") + f"; known: {', '.join(known)}")


def _check_limit(path: Path, where: str, key: str, value) -> None:
    if key not in BUDGET_KEYS:
        raise BudgetFileError(f"{path} {where}: unknown budget {key!r}; known: {', '.join(sorted(BUDGET_KEYS))}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:  # NaN fails too
        raise BudgetFileError(f"{path} {where}: {key} must be a positive number, got {value!r}")


def _check_cpu_class(path: Path, where: str, name: str, limits: dict) -> None:
    """A sub-table names a CPU class: its limits hold only where the CPU has one of the class's flags."""
    if name not in CPU_CLASSES:
        raise BudgetFileError(f"{path} {where[:-1]}.{name}]: unknown CPU class {name!r}; a sub-table of a variant "
                              f"scopes its limits to CPUs of one class, known: " + ", ".join(
                                  f"{c} ({'/'.join(sorted(flags))})" for c, flags in CPU_CLASSES.items()))
    for key, value in limits.items():
        _check_limit(path, f"{where[:-1]}.{name}]", key, value)


def _rule(path: Path, rule: dict) -> CompareRule:
    metric, threshold, kind = rule.get("metric"), rule.get("threshold"), rule.get("kind")
    if metric not in METRICS:
        raise BudgetFileError(f"{path} [[compare]] {rule}: unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
        raise BudgetFileError(f"{path} [[compare]] {rule}: threshold must be a number ≥ 0 (a fraction: 0.2 = 20 %)")
    if kind is not None and kind not in RECORDS:
        raise BudgetFileError(f"{path} [[compare]] {rule}: unknown kind {kind!r}; known: {', '.join(RECORDS)}")
    try:
        pattern = re.compile(rule.get("match", ".*"))
    except (re.error, TypeError) as err:
        raise BudgetFileError(f"{path} [[compare]] {rule}: match is not a regular expression ({err})") from err
    return CompareRule(pattern, metric, float(threshold), kind)


def _table(path: Path, where: str, value) -> dict:
    if not isinstance(value, dict):
        raise BudgetFileError(f"{path}: {where} must be a table of tables ([device.model.variant]), got {value!r}")
    return value
