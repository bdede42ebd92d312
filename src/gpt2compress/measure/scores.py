"""Perplexity of an unchanged build on unchanged windows, kept between runs.

Perplexity is deterministic: the same model bytes, scored on the same windows by the same code, runtime,
libraries, CPU ISA and thread count give the same number. Recomputing it is most of a warm `--tier pr`
run at the 124M shape (about 2.8 min per variant for 512 windows on 2 cores), so it is cached like a
build: keyed by the build's own cache key (source, stages, their code and library versions), the
windows' key, the scoring code (perplexity, the runtime's loader and scorer, by content), the libraries,
the machine (CPU model, ISA, threads, device), and written atomically. A PR that changes a stage re-keys
that stage's builds and so their scores; the record says when a score was reused (`scores_reused`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from ..core.cache import cached_dir, content_key
from ..core.fingerprint import fingerprint
from ..build.hardware import cpu_model, isa_summary
from ..core.registry import TORCH_LIBRARIES, runtime

SCORES_FILE = "scores.json"
SCORING_CODE = ("gpt2compress.measure.perplexity", "gpt2compress.measure.timing")


def score_key(built: Any, windows_key: str, device: str) -> str:
    loader = runtime(built.runtime)
    # the scoring code: perplexity (and the device helper it calls), the runtime's loader and its own scorer, if any
    scorer = (loader.scorer.__module__,) if loader.scorer else ()
    code = fingerprint((*SCORING_CODE, loader.module, *scorer), TORCH_LIBRARIES + loader.libraries)
    gpu = torch.cuda.get_device_name() if device == "cuda" and torch.cuda.is_available() else None
    return content_key("scores", built.info["build"]["key"], windows_key, code, cpu_model(), isa_summary(),
                       torch.get_num_threads(), device, gpu)


def reused_or_scored(built: Any, windows_key: str, device: str, score: Callable[[], dict]) -> dict[str, Any]:
    """`score()`'s fields, computed once per key; `scores_reused` says whether this run computed them."""
    computed = False

    def make(out: Path) -> None:
        nonlocal computed
        (out / SCORES_FILE).write_text(json.dumps(score()))
        computed = True

    path = cached_dir("scores", score_key(built, windows_key, device), make,
                      meta={"label": f"scores of {built.name} on {device}"})
    return {**json.loads((path / SCORES_FILE).read_text()), "scores_reused": not computed}
