"""Reading saved benchmark JSON (pytest-benchmark's format, our `extra_info`) into flat rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

BASELINE = "fp32"
FORWARD = "forward"  # the default kind: rows written before kinds existed are forward rows


@dataclass
class Run:
    label: str
    machine: dict
    rows: list[dict] = field(default_factory=list)

    def row(self, device: str, variant: str, kind: str = FORWARD) -> dict | None:
        return next((r for r in self.of(kind) if r["device"] == device and r["variant"] == variant), None)

    def of(self, kind: str) -> list[dict]:
        """Rows of one benchmark kind: "forward", "generate", "train", "classify", ..."""
        return [r for r in self.rows if r["kind"] == kind]

    def by_device(self, kind: str) -> list[tuple[str, list[dict]]]:
        """(device, rows of `kind` on it) for each device that has any: one report table each."""
        return [(d, rows) for d in self.devices if (rows := [r for r in self.of(kind) if r["device"] == d])]

    @property
    def devices(self) -> list[str]:
        return sorted({r["device"] for r in self.rows})


def load_run(path: str | Path, label: str | None = None) -> Run:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read benchmark JSON {path}: {err}; write one with "
                         f"`pytest bench/ --benchmark-json={path.name}`") from err
    run = Run(label or path.stem, data.get("machine_info", {}))
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "variant" not in info:
            continue  # not one of ours
        stats = bench.get("stats", {})
        samples = info.get("latency_samples_ms") or [s * 1e3 for s in stats.get("data", [])]
        run.rows.append({"kind": FORWARD, **info, "samples_ms": samples, "stats": stats, "name": bench.get("name")})
    if not run.rows:
        raise ValueError(f"{path} holds no gpt2compress benchmark (was it written by `pytest bench/`?)")
    return run


def mb(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else n_bytes / 2**20


def summary_row(row: dict, base: dict | None) -> dict:
    """The numbers the summary table, the charts and `compare` share."""
    peak = max(row.get("peak_memory_forward_bytes") or 0, row.get("peak_memory_eval_bytes") or 0)
    out = {
        "variant": row["variant"], "device": row["device"], "chain": " → ".join(row.get("chain") or ["(baseline)"]),
        "precision": row.get("precision"), "perplexity": row.get("perplexity"),
        "perplexity_meaningful": row.get("perplexity_meaningful", True),
        "median_ms": row.get("median_ms"), "p90_ms": row.get("latency_p90_ms"), "p99_ms": row.get("latency_p99_ms"),
        "tokens_per_s": row.get("tokens_per_s"), "size_mb": mb(row.get("size_on_disk_bytes")),
        "peak_memory_mb": mb(peak), "parameters": row.get("parameters"), "heads": row.get("heads_per_layer"),
        "reserved_mb": mb(row.get("peak_memory_reserved_bytes")), "mean_power_w": row.get("mean_power_w"),
        "energy_per_sample_mj": row.get("energy_per_sample_mj"),
    }
    if base:
        b = summary_row(base, None)
        for key in ("perplexity", "median_ms", "size_mb", "peak_memory_mb", "tokens_per_s", "energy_per_sample_mj"):
            out[f"{key}_ratio"] = out[key] / b[key] if out[key] and b[key] else None
    return out


def summaries(run: Run) -> list[dict]:
    """Forward rows with their ratios to the same device's fp32 forward row."""
    return [summary_row(r, run.row(r["device"], BASELINE)) for r in run.of(FORWARD)]
