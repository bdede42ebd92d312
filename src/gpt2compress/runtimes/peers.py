"""What the peer engines (llama.cpp, CTranslate2, ONNX Runtime) share: which models they can take, where their
conversions live, and the install hint when their package is absent. Each engine is one stage module
(stages/llamacpp.py, stages/ct2.py, stages/ort.py)."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import torch

from .pytorch import notes


def not_installed(module: str, extra: str, what: str) -> str | None:
    """None when `module` imports; else the reason a case skips, with the install command."""
    if importlib.util.find_spec(module) is None:
        return f"{what} is not installed: pip install -e '.[{extra}]'"
    return None


def not_a_float_gpt2(model: Any, one_head_count: bool = True) -> str | None:
    """Why an engine's GPT-2 graph cannot hold this model: it is not a PyTorch GPT-2 LM, its weights are
    already quantized (int8-scratch), or (`one_head_count`: a graph with one head count per model) it is pruned."""
    if not isinstance(model, torch.nn.Module) or getattr(getattr(model, "config", None), "model_type", None) != "gpt2":
        return f"a {type(model).__name__} is not a PyTorch GPT-2 LM"
    recorded = notes(model.config)
    if "int8_scratch" in recorded or (one_head_count and recorded.get("pruned_heads")):
        return f"this engine's GPT-2 needs the {'full, ' if one_head_count else ''}float model " \
               f"(this one has {', '.join(recorded)})"
    return None


def converting_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"gpt2compress-{prefix}-"))


class ConvertedModel:
    """A peer engine's model: a directory in the engine's own format. A fresh conversion's directory is temporary
    and lives as long as the model (the builder copies it into the cache with `save_pretrained`)."""

    def __init__(self, path: Path, scratch: Path | None = None, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads or torch.get_num_threads()  # the engine runs on the bench's threads, as torch does
        if scratch is not None:
            weakref.finalize(self, shutil.rmtree, scratch, True)

    def save_pretrained(self, out: str | Path) -> None:
        shutil.copytree(self.path, out, dirs_exist_ok=True)
