"""Every compression stage: importing this package imports each module in it, and each registers itself.

A stage is a plain function `(model, config) -> model` registered with
`registry.register_stage` (name, config factory, devices, the runtime it takes and
gives, the libraries it runs). Adding one is a new module here and a line in
`variants.VARIANTS`; see `registry.py`.
"""

from __future__ import annotations

import importlib
import pkgutil

from ...core.registry import CPU, CUDA, RUNTIMES, STAGES, Stage, StageNotApplicable, check_chain, stage  # noqa: F401
from ...runtimes import pytorch as _io  # noqa: F401  (registers the "torch" runtime)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
