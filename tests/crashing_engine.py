"""A pytest plugin (`-p crashing_engine`) that adds a variant whose engine kills its own process when it runs,
as llama.cpp's native code did on an AMX Xeon (SIGSEGV in Llama.eval)."""

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from gpt2compress.core.registry import CPU, CUDA, register_runtime, register_stage
from gpt2compress.core.variants import VARIANTS


class Crashing:
    """Saves like any engine's model; running it segfaults the process."""

    def save_pretrained(self, out: Path) -> None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "engine.bin").write_bytes(b"\0" * 1024)

    def __call__(self, **inputs):
        os.kill(os.getpid(), signal.SIGSEGV)

    generate = __call__


@dataclass(frozen=True)
class CrashConfig:
    pass


register_runtime("crashing", load=lambda path, device: Crashing(), isolated=True)


@register_stage("crash", lambda ctx: CrashConfig(), devices=(CPU, CUDA), gives="crashing", precision="fp32")
def to_crashing_engine(model, config):
    return Crashing()


VARIANTS["crash"] = ("crash",)
