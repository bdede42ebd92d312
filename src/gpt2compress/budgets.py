"""Budgets: what each stage may cost, per device and per model, from a versioned TOML file.

    version = 1
    [cpu."*".pruned]                 # device, model ("*" = any), variant
    max_perplexity_ratio = 1.5       # perplexity / fp32 perplexity
    max_latency_ratio = 1.1          # median latency / fp32 median, same session

Entries for a specific model override those under "*". Ratios measured in one
session are the gate; absolute numbers (`max_peak_memory_mb`, `max_size_mb`) are
for limits a deployment really has.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

SUPPORTED_VERSION = 1


class BudgetFileError(ValueError):
    """A budgets file that cannot be used; the message says where and how to fix it."""


@dataclass(frozen=True)
class Budget:
    max_perplexity_ratio: float | None = None
    max_latency_ratio: float | None = None
    max_size_ratio: float | None = None
    max_peak_memory_mb: float | None = None
    max_size_mb: float | None = None
    min_tokens_per_s_ratio: float | None = None
    min_energy_efficiency: float | None = None  # fp32 energy per sample / this variant's (CUDA with a sensor)
    min_decode_tokens_per_s_ratio: float | None = None  # generate: decode tokens/s / fp32's, same batch
    max_ttft_ratio: float | None = None  # generate: time to first token / fp32's
    min_train_tokens_per_s_ratio: float | None = None  # train: tokens/s / the fp32 setup's
    max_train_memory_ratio: float | None = None  # train: peak memory / the fp32 setup's
    max_accuracy_drop: float | None = None  # classify: accuracy points below the fp32 classifier's, same run

    def violations(self, measured: dict[str, float | None], perplexity_meaningful: bool = True) -> list[str]:
        """One line per broken limit: 'name: measured X, allowed Y'. Missing measurements are not checked."""
        out = []
        for f in fields(self):
            limit = getattr(self, f.name)
            value = measured.get(f.name.removeprefix("max_").removeprefix("min_"))
            if limit is None or value is None:
                continue
            if f.name == "max_perplexity_ratio" and not perplexity_meaningful:
                continue  # random weights: perplexity is reported, never gated
            broken = value < limit if f.name.startswith("min_") else not value <= limit or math.isnan(value)
            if broken:
                bound = "≥" if f.name.startswith("min_") else "≤"
                out.append(f"{f.name}: measured {value:.4g}, allowed {bound} {limit:.4g}")
        return out


KNOWN = {f.name for f in fields(Budget)}


def load_budgets(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BudgetFileError(f"budgets file {path} not found; pass --budgets FILE (default: bench/budgets.toml)")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise BudgetFileError(f"{path} is not valid TOML ({err}); fix the syntax there") from err
    if data.get("version") != SUPPORTED_VERSION:
        raise BudgetFileError(f"{path}: `version = {SUPPORTED_VERSION}` is required at the top "
                              f"(found {data.get('version')!r})")
    for device, models in data.items():
        if device in ("version", "compare"):  # [[compare]] thresholds: read by gpt2compress.compare
            continue
        for model, variants in _table(path, device, models).items():
            for variant, entry in _table(path, f"{device}.{model}", variants).items():
                where = f"[{device}.{model!r}.{variant}]"
                for key, value in _table(path, where, entry).items():
                    if key not in KNOWN:
                        raise BudgetFileError(f"{path} {where}: unknown budget {key!r}; known: {', '.join(sorted(KNOWN))}")
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                        raise BudgetFileError(f"{path} {where}: {key} must be a positive number, got {value!r}")
    return data


def _table(path: Path, where: str, value) -> dict:
    if not isinstance(value, dict):
        raise BudgetFileError(f"{path}: {where} must be a table of tables ([device.model.variant]), got {value!r}")
    return value


def budget_for(budgets: dict, device: str, model: str, variant: str) -> Budget:
    models = budgets.get(device, {})
    merged = {**models.get("*", {}).get(variant, {}), **models.get(model, {}).get(variant, {})}
    return Budget(**{k: float(v) for k, v in merged.items()})
