"""Options for `pytest bench/` (they live at the root so `pytest tests bench` sees them too)."""

from __future__ import annotations

import os
import platform

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    from gpt2compress.options import add_pytest_options

    add_pytest_options(parser.getgroup("gpt2compress", "GPT-2 compression benchmark"))


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Identity beyond pytest-benchmark's default: library versions, CPU ISA, GPU, driver, CUDA."""
    machine_info["gpt2compress"] = _ours()


def pytest_report_header(config: pytest.Config) -> str:
    """The machine line reports carry (summary.md, charts, the PR page), at the top of the run's output."""
    from gpt2compress.hardware import cpu_generation, cpu_model
    from gpt2compress.report.runs import describe_machine

    machine = {"cpu": {"brand_raw": cpu_model(), **cpu_generation()}, "gpt2compress": _ours()}
    return f"gpt2compress: {describe_machine(machine)}"


def _ours() -> dict:
    import importlib.metadata as md

    import torch

    versions = {}
    for package in ("torch", "transformers", "openvino", "nncf", "optimum-intel", "neural-compressor-pt",
                    "gpt2compress"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    from gpt2compress.hardware import cpus_allowed, isa_summary

    gpu = {}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "capability": f"{props.major}.{props.minor}",
               "memory_gb": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
               "driver": _nvidia_driver()}
    return {"versions": versions, "cpu_isa": isa_summary(), "torch_cpu_capability":
            torch.backends.cpu.get_cpu_capability(), "gpu": gpu, "threads": torch.get_num_threads(),
            "cpus_allowed": cpus_allowed(), "cpus_online": os.cpu_count(), "python": platform.python_version()}


def _nvidia_driver() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """$GPT2COMPRESS_CACHE_MAX: cap the build cache once the session no longer needs its entries."""
    from gpt2compress.cache import apply_cap

    capped = apply_cap()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if capped and reporter is not None:
        reporter.write_line(capped)
