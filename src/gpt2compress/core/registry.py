"""The registry: every stage, every runtime, and how a saved model is restored, by name.

Modelled on torchao's `register_quantize_module_handler`: a compression method is
one module that registers itself, here with a decorator on its stage function

    @register_stage("int8_scratch", lambda ctx: Int8Config(), devices=(CPU, CUDA), precision="int8-w")
    def quantize_int8_scratch(model, config): ...

(several names may share one function with different configs: `bf16` and `fp16` are
both `cast`). `gpt2compress.build.stages` imports every module in its folder, so adding a
stage is one new file plus one line in `variants.VARIANTS`.

A *runtime* ("torch", "openvino", "inc", "bnb", "llamacpp", "ctranslate2", "onnxruntime") is what a stage gives:
it knows how to save and load its models. A *restorer* replays, on a freshly built
PyTorch model, what a stage recorded in `config.gpt2compress` (pruned heads, INT8
layers, autocast), so `io.load_model` rebuilds the shapes without importing any stage.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .fingerprint import fingerprint

if TYPE_CHECKING:
    from pathlib import Path

    from .variants import Context

CPU, CUDA = "cpu", "cuda"
TORCH_LIBRARIES = ("torch", "transformers", "safetensors")  # every PyTorch model is built and saved with these


class StageNotApplicable(ValueError):
    """The stage cannot run on this device or input; the runner skips it with this reason."""


def _always(device: str) -> str | None:
    return None


@dataclass(frozen=True)
class Runtime:
    name: str
    save: Callable[[Any, Path, Any], None]  # (model, out_dir, tokenizer)
    load: Callable[[Path, str], Any]  # (dir, device) -> model
    libraries: tuple[str, ...] = ()
    module: str = ""  # where save/load live: their code is part of every build that gives this runtime
    isolated: bool = False  # native code outside PyTorch: its cases run in a child process (isolation.py)
    scorer: Callable[..., Any] | None = None  # (built, timed, **properties) -> what scores windows; None: the model
    generator: Callable[..., Any] | None = None  # (built, loop=...) -> what generates; None: the model itself


@dataclass(frozen=True)
class Stage:
    name: str
    apply: Callable[[Any, Any], Any]
    make_config: Callable[[Context], Any]
    devices: tuple[str, ...]
    takes: str = "torch"  # runtime of the input model
    gives: str = "torch"  # runtime of the output model
    precision: str | None = None  # None: unchanged from the input
    about: str = ""
    unsupported: Callable[[str], str | None] = _always  # the reason it cannot run on a device, if any
    libraries: tuple[str, ...] = ()  # packages whose version changes what it builds
    module: str = ""  # where `apply` lives (its code fingerprint starts there)
    trains: bool = False  # runs an optimizer: minutes to hours, so cases that share its output share a shard

    def fingerprint(self) -> dict:
        """Code (this stage's module, the output runtime's save code, all they import) and library versions."""
        out = runtime(self.gives)
        return fingerprint((self.module, out.module), TORCH_LIBRARIES + self.libraries + out.libraries)


STAGES: dict[str, Stage] = {}
RUNTIMES: dict[str, Runtime] = {}
RESTORERS: dict[str, Callable[[Any, Any], Any]] = {}


def register_stage(name: str, make_config: Callable[[Context], Any], *, devices: tuple[str, ...],
                   takes: str = "torch", gives: str = "torch", precision: str | None = None, about: str = "",
                   unsupported: Callable[[str], str | None] | None = None, libraries: tuple[str, ...] = (),
                   trains: bool = False):
    """Decorator: register `apply(model, config) -> model` under `name`."""

    def decorator(apply: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        if name in STAGES and STAGES[name].module != apply.__module__:
            raise ValueError(f"stage {name!r} is registered twice: in {STAGES[name].module} and {apply.__module__}")
        STAGES[name] = Stage(name, apply, make_config, tuple(devices), takes, gives, precision, about,
                             unsupported or _always, tuple(libraries), apply.__module__, trains)
        return apply

    return decorator


def save_pretrained(model: Any, out: Path, tokenizer: Any = None) -> None:
    """What every non-torch runtime's model does to save itself, in its own format (IR, export, GGUF, ...)."""
    model.save_pretrained(out)


def register_runtime(name: str, *, load: Callable, save: Callable = save_pretrained,
                     libraries: tuple[str, ...] = (), isolated: bool = False, scorer: Callable | None = None,
                     generator: Callable | None = None) -> Runtime:
    RUNTIMES[name] = Runtime(name, save, load, tuple(libraries), load.__module__, isolated, scorer, generator)
    return RUNTIMES[name]


def scoring_engine(built: Any, timed: Any = None, **properties: str) -> Any:
    """What scores windows of a built variant (perplexity, forward latency, HellaSwag): its runtime's scorer (e.g.
    OpenVINO's stateless compile, static shapes for `timed`'s batches), or the model itself."""
    scorer = runtime(built.runtime).scorer
    return scorer(built, timed, **properties) if scorer else built.model


def generation_engine(built: Any, loop: str = "genai") -> Any:
    """What generates for a built variant: its runtime's generator (OpenVINO's: `loop` genai, its LLMPipeline, or
    optimum, optimum-intel's `generate`), or the model."""
    generator = runtime(built.runtime).generator
    return generator(built, loop=loop) if generator else built.model


def output_runtime(chain: tuple[str, ...]) -> Runtime:
    """The runtime a chain's model ends in (known before anything is built)."""
    return runtime(stage(chain[-1]).gives if chain else "torch")


def register_restorer(note: str):
    """Decorator: `restore(model, value) -> model` replays the `note` a stage recorded, before weights load."""

    def decorator(restore: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        RESTORERS[note] = restore
        return restore

    return decorator


def _load_all() -> None:
    importlib.import_module("gpt2compress.build.stages")  # every stage module registers itself on import


def _lookup(table: dict, kind: str, name: str):
    _load_all()
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(table))}")
    return table[name]


def stage(name: str) -> Stage:
    return _lookup(STAGES, "stage", name)


def runtime(name: str) -> Runtime:
    return _lookup(RUNTIMES, "runtime", name)


def restorer(note: str) -> Callable[[Any, Any], Any]:
    return _lookup(RESTORERS, "recorded change", note)


def check_chain(chain: tuple[str, ...], device: str) -> None:
    """Raise StageNotApplicable (with the reason) before building anything that cannot run."""
    current = "torch"
    for name in chain:
        step = stage(name)
        if device not in step.devices:
            raise StageNotApplicable(
                f"stage {name!r} does not apply to device {device!r} (runs on: {', '.join(step.devices)})"
            )
        reason = step.unsupported(device)
        if reason:
            raise StageNotApplicable(f"stage {name!r} does not apply to device {device!r}: {reason}")
        if step.takes != current:
            raise StageNotApplicable(f"stage {name!r} takes a {step.takes} model; the chain gives it a {current} one")
        current = step.gives
