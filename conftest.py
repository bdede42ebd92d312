"""Options for `pytest bench/` (they live at the root so `pytest tests bench` sees them too)."""

from __future__ import annotations

import platform

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gpt2compress", "GPT-2 compression benchmark")
    group.addoption("--model", default="tiny", help="tiny (default) | gpt2-random | hub id | local checkpoint dir")
    group.addoption("--data", default=None, help="embedded (default) | wikitext2 (hub) | a WikiText-2 dir; "
                                                 "env GPT2COMPRESS_DATA")
    group.addoption("--tokenizer", default=None, help="tokenizer dir or hub id for gpt2-random")
    group.addoption("--device", default="auto", help="auto (every available) | cpu | cuda | cpu,cuda")
    group.addoption("--budgets", default=None, help="budgets TOML (default bench/budgets.toml)")
    group.addoption("--stages", default=None, help="comma-separated variants to run (default: all)")
    group.addoption("--seq-len", type=int, default=None, help="tokens per window (default 128)")
    group.addoption("--eval-samples", type=int, default=None, help="eval windows for perplexity (default: all)")
    group.addoption("--batch-size", type=int, default=1, help="batch of the timed forward (default 1)")
    group.addoption("--profile", default=None, metavar="DIR", help="torch.profiler traces per stage here")
    group.addoption("--memray", default=None, metavar="DIR", help="memray captures per stage here")
    group.addoption("--smoke", action="store_true", help="only the fast smoke selection (what CI runs)")
    group.addoption("--prompt-len", type=int, default=None,
                    help="generate: prompt tokens (default 128, fewer if the model's context is shorter)")
    group.addoption("--new-tokens", type=int, default=64, help="generate: tokens generated (default 64)")
    group.addoption("--gen-batch-sizes", default="1,8", help="generate: comma-separated batch sizes (default 1,8)")
    group.addoption("--gen-rounds", type=int, default=3, help="generate: timed rounds (default 3)")
    group.addoption("--train-tokens", type=int, default=4096,
                    help="train: effective batch per optimizer step in tokens, reached by gradient accumulation")
    group.addoption("--train-micro-batch", type=int, default=4, help="train: sequences per micro-batch (default 4)")
    group.addoption("--train-steps", type=int, default=5, help="train: timed optimizer steps (default 5)")
    group.addoption("--agnews", default=None, metavar="DIR",
                    help="classify: AG News dir with test.csv + classes.txt, or ag_news (hub); env GPT2COMPRESS_AGNEWS")
    group.addoption("--hellaswag", default=None, metavar="PATH",
                    help="forward: also score HellaSwag (a jsonl file, or hellaswag for the hub's validation set)")
    group.addoption("--hellaswag-samples", type=int, default=None, help="hellaswag: first N examples (default: all)")
    group.addoption("--finetune-steps", type=int, default=None,
                    help="optimizer steps of every training stage (finetune, distill, lora); default: one epoch")


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Identity beyond pytest-benchmark's default: library versions, CPU ISA, GPU, driver, CUDA."""
    import importlib.metadata as md

    import torch

    versions = {}
    for package in ("torch", "transformers", "openvino", "nncf", "optimum-intel", "neural-compressor-pt", "gpt2compress"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    from gpt2compress.hardware import isa_summary

    gpu = {}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "capability": f"{props.major}.{props.minor}",
               "memory_gb": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
               "driver": _nvidia_driver()}
    machine_info["gpt2compress"] = {"versions": versions, "cpu_isa": isa_summary(), "torch_cpu_capability":
                                    torch.backends.cpu.get_cpu_capability(), "gpu": gpu,
                                    "threads": torch.get_num_threads(), "python": platform.python_version()}


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
