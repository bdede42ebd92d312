"""llama.cpp as a peer runtime: the same model as GGUF (f32, q8_0 or q4_0), run by llama-cpp-python.

A CPU team's alternative to every variant here is llama.cpp, so the charts put our
best CPU variant beside the best-known CPU engine, measured by the same benchmarks.

- The conversion is llama.cpp's own `convert_hf_to_gguf.py`. The wheel does not ship
  it, so it is taken from the sdist of the *installed* llama-cpp-python version (a
  GGUF written by another llama.cpp commit may not load), fetched once with
  `pip download` and cached; `$GPT2COMPRESS_LLAMA_CPP` can name a llama.cpp checkout
  instead. It runs in a subprocess: it brings its own `gguf` package.
- `LlamaCppLM` answers the two calls the bench makes of every model: `model(input_ids,
  attention_mask).logits` (perplexity, forward timing) and `generate(...)` (greedy, KV
  cache, per-token timestamps through the logits processors). llama-cpp-python's `Llama`
  decodes one sequence, so generate takes batch 1 only.

llama-cpp-python is an optional extra (`pip install -e '.[llamacpp]'`, a ~10 min
source build of llama.cpp); without it the stages skip with that hint.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers.modeling_outputs import CausalLMOutput

from ...core.cache import cached_dir, content_key, text_key
from ...runtimes.pytorch import save_model
from ...core.registry import CPU, StageNotApplicable, register_runtime, register_stage
from ...runtimes.peers import not_a_float_gpt2, not_installed

if TYPE_CHECKING:
    from ...core.variants import Context

LLAMACPP_LIBRARIES = ("llama-cpp-python",)

GGUF_FILE = "model.gguf"
OUTTYPES = ("f32", "f16", "q8_0", "q4_0")
QUANTIZED = {"q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}  # the converter writes f32; llama.cpp's own quantizer makes these
CONVERTER_ENV = "GPT2COMPRESS_LLAMA_CPP"
CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion", "gguf-py")


class LlamaCppUnavailable(RuntimeError):
    """llama.cpp's converter could not be had; the message names the fix."""


def installed_version() -> str | None:
    """llama-cpp-python's version: which converter to fetch, and part of the GGUF's cache key."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class LlamaCppConfig:
    outtype: str = "q8_0"  # (llama-cpp-python's version is in the stage's fingerprint: an upgrade rebuilds)
    converter: str = ""  # $GPT2COMPRESS_LLAMA_CPP's converter files, hashed ("": the installed version's, above)
    tokenizer: Any = field(default=None, metadata={"hash": False})  # the source's: part of the source key already
    threads: int | None = field(default=None, metadata={"hash": False})  # default: torch's thread count


def llama_cpp_missing(device: str) -> str | None:
    reason = not_installed("llama_cpp", "llamacpp", "llama-cpp-python")
    if reason:
        return f"{reason} (builds llama.cpp, ~10 min; scripts/install-llamacpp.sh picks the build flags)"
    return amx_build(system_info())


def amx_build(info: str) -> str | None:
    """A build with ggml's AMX matmul segfaults on AMX Xeons in its first eval (ggml-org/llama.cpp#20824, #26954:
    worker threads run tile instructions without the kernel's per-thread XTILEDATA permission). A source build
    compiles it in whenever -march=native sees AMX, so it is refused here before it takes the bench down."""
    if "AMX_INT8 = 1" not in info:
        return None
    return ("this llama-cpp-python was built with ggml's AMX kernels, which segfault in the first eval on AMX CPUs "
            "(ggml-org/llama.cpp#20824); rebuild it without them: scripts/install-llamacpp.sh")


@functools.cache
def system_info() -> str:
    """llama.cpp's compiled-in CPU features, asked of a child process (no native library in the bench's own)."""
    ask = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    done = subprocess.run([sys.executable, "-c", ask], capture_output=True, text=True)
    return done.stdout


def converter_dir() -> Path:
    """A directory holding llama.cpp's `convert_hf_to_gguf.py`, `conversion/` and `gguf-py/`."""
    if os.environ.get(CONVERTER_ENV):
        path = Path(os.environ[CONVERTER_ENV]).expanduser()
        if not (path / CONVERTER_FILES[0]).is_file():
            raise LlamaCppUnavailable(f"${CONVERTER_ENV}={path} has no {CONVERTER_FILES[0]}: "
                                      "point it at a llama.cpp checkout")
        return path
    version = installed_version()
    key = f"{version}-{content_key(CONVERTER_FILES)}"  # which of the sdist's files it holds is part of it
    return cached_dir("llama.cpp", key, lambda out: _fetch_converter(version, out))


def converter_key() -> str:
    """What a GGUF's key needs of its converter: a checkout's files under $GPT2COMPRESS_LLAMA_CPP (another
    checkout, or a pull, converts differently); "" for the installed version's own."""
    return _checkout_key(converter_dir()) if os.environ.get(CONVERTER_ENV) else ""


@functools.cache
def _checkout_key(path: Path) -> str:
    """Its .py files (not the __pycache__ a conversion leaves), read once per process: every plan asks."""
    files = sorted(p for name in CONVERTER_FILES for p in ([path / name] if (path / name).is_file()
                                                             else (path / name).rglob("*.py")))
    return content_key([(str(p.relative_to(path)), text_key(p.read_text())) for p in files])


def _fetch_converter(version: str, out: Path) -> None:
    """llama.cpp's converter from the llama-cpp-python sdist of this exact version (it vendors llama.cpp)."""
    with tempfile.TemporaryDirectory(prefix="gpt2compress-llamacpp-") as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
               f"llama-cpp-python=={version}", "-d", tmp]
        done = subprocess.run(pip, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if done.returncode or not sdists:
            raise LlamaCppUnavailable(f"could not download the llama-cpp-python {version} sdist for its GGUF converter "
                                      f"({done.stderr.strip()[-300:]}); set ${CONVERTER_ENV} to a llama.cpp checkout")
        with tarfile.open(sdists[0]) as sdist:
            prefix = f"{sdist.getnames()[0].split('/')[0]}/vendor/llama.cpp/"
            members = [m for m in sdist.getmembers() if m.name.startswith(prefix)
                       and m.name[len(prefix):].split("/")[0] in CONVERTER_FILES]
            for member in members:
                member.name = member.name[len(prefix):]
            sdist.extractall(out, members=members, filter="data")


def gguf_config(ctx: Context, outtype: str) -> LlamaCppConfig:
    return LlamaCppConfig(outtype, converter_key(), tokenizer=ctx.source.tokenizer)


@register_stage("gguf_f32", lambda ctx: gguf_config(ctx, "f32"), devices=(CPU,), gives="llamacpp", precision="fp32",
                libraries=LLAMACPP_LIBRARIES, unsupported=llama_cpp_missing,
                about="llama.cpp peer: GGUF f32 through llama.cpp's converter, run by llama-cpp-python")
@register_stage("gguf_q8_0", lambda ctx: gguf_config(ctx, "q8_0"), devices=(CPU,), gives="llamacpp",
                precision="int8-w (q8_0)", libraries=LLAMACPP_LIBRARIES, unsupported=llama_cpp_missing,
                about="llama.cpp peer: GGUF Q8_0 (8-bit blocks of 32 weights, fp16 scale)")
@register_stage("gguf_q4_0", lambda ctx: gguf_config(ctx, "q4_0"), devices=(CPU,), gives="llamacpp",
                precision="int4-w (q4_0)", libraries=LLAMACPP_LIBRARIES, unsupported=llama_cpp_missing,
                about="llama.cpp peer: GGUF Q4_0 (4-bit blocks of 32 weights), as llama-quantize makes it")
def to_gguf(model: Any, config: LlamaCppConfig) -> LlamaCppLM:
    reason = not_a_float_gpt2(model)
    if reason:
        raise StageNotApplicable(reason)
    if config.outtype not in OUTTYPES:
        raise ValueError(f"GGUF outtype {config.outtype!r}: use one of {OUTTYPES}")
    converter = converter_dir()
    tmp = Path(tempfile.mkdtemp(prefix="gpt2compress-gguf-"))
    hf = save_model(model.float().cpu(), tmp / "hf", config.tokenizer)
    config_json = hf / "config.json"  # the converter reads GPT-2's `n_ctx`, which transformers 5 no longer writes
    settings = json.loads(config_json.read_text())
    config_json.write_text(json.dumps({"n_ctx": settings["n_positions"], **settings}))
    command = [sys.executable, "-c", f"import sys; from {__name__} import convert; convert(*sys.argv[1:])",
               str(converter), str(hf), str(tmp / GGUF_FILE), config.outtype]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"llama.cpp's convert_hf_to_gguf.py failed:\n{done.stderr[-2000:]}")
    return LlamaCppLM(tmp / GGUF_FILE, model.config.n_positions, config.threads, scratch=tmp)


class LlamaCppLM:
    """A GGUF model in llama.cpp behind the calls the bench makes of a transformers LM."""

    max_batch_size = 1  # generate: llama-cpp-python's Llama decodes one sequence

    def __init__(self, path: Path, n_ctx: int, threads: int | None = None, scratch: Path | None = None) -> None:
        self.path, self.n_ctx = Path(path), n_ctx
        self.threads = threads or torch.get_num_threads()  # llama.cpp's own default is half the cores
        if scratch is not None:  # the conversion's temporary directory lives as long as this model
            weakref.finalize(self, shutil.rmtree, scratch, True)

    def _open(self, logits_all: bool):
        from llama_cpp import Llama

        return Llama(model_path=str(self.path), n_ctx=self.n_ctx, n_batch=self.n_ctx, n_threads=self.threads,
                     n_threads_batch=self.threads, logits_all=logits_all, verbose=False)

    @cached_property
    def _scorer(self):
        """Keeps the logits of every position, as a transformers forward returns them."""
        return self._open(logits_all=True)

    @cached_property
    def _decoder(self):
        """Keeps only the next token's logits, as transformers' generate asks for (`logits_to_keep=1`)."""
        return self._open(logits_all=False)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> CausalLMOutput:
        llm = self._scorer
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        logits = torch.zeros(*input_ids.shape, llm.n_vocab())
        for row, (ids, keep) in enumerate(zip(input_ids.tolist(), mask.sum(1).tolist())):
            llm.reset()
            llm.eval(ids[:keep])  # right padding: the real tokens come first
            logits[row, :keep] = torch.from_numpy(llm.scores[:keep])
        return CausalLMOutput(logits=logits)

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, logits_processor=(), **_: Any) -> torch.Tensor:
        """Greedy, exactly `max_new_tokens` tokens (llama.cpp's token generator does not stop at EOS).

        Each processor is called as each token is ready, with `scores=None`: sampling runs inside
        llama.cpp, so processors here observe (the per-token clock) and cannot steer."""
        if input_ids.shape[0] > self.max_batch_size:
            raise ValueError(f"llama.cpp generates one sequence at a time, not a batch of {input_ids.shape[0]}")
        llm, tokens = self._decoder, input_ids[0].tolist()
        llm.reset()  # else llama-cpp-python reuses the cached prompt and the next prefill is not measured
        for token in llm.generate(tokens, temp=0.0, top_k=1, repeat_penalty=1.0, reset=False):
            tokens.append(token)
            for processor in logits_processor:
                processor(torch.tensor([tokens]), None)
            if len(tokens) - input_ids.shape[1] == max_new_tokens:
                break
        return torch.tensor([tokens])

    def save_pretrained(self, out: str | os.PathLike) -> None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, out / GGUF_FILE)
        (out / "llamacpp.json").write_text(json.dumps({"n_ctx": self.n_ctx}))


def load_llamacpp(path: str | os.PathLike) -> LlamaCppLM:
    path = Path(path)
    return LlamaCppLM(path / GGUF_FILE, json.loads((path / "llamacpp.json").read_text())["n_ctx"])


register_runtime("llamacpp", load=lambda path, device: load_llamacpp(path), libraries=LLAMACPP_LIBRARIES,
                 isolated=True)  # native code: a segfault in Llama.eval must cost one case (isolation.py)


def convert(converter: str, hf_dir: str, out: str, outtype: str) -> None:
    """Runs in a subprocess: llama.cpp's GPT-2 conversion, with its own vendored `gguf` package.

    The converter names the BPE pre-tokenizer by hashing its output on a test string; a
    tokenizer trained here (`tiny`'s) is unknown to it. Its pre-tokenizer is GPT-2's
    byte-level one, so it is written as "gpt-2" (the bench feeds token ids, never text)."""
    sys.path[:0] = [converter, str(Path(converter) / "gguf-py")]
    import gguf
    from conversion import get_model_class

    base = get_model_class("GPT2LMHeadModel")

    class GPT2(base):
        model_arch = base.model_arch

        def get_vocab_base_pre(self, tokenizer) -> str:
            try:
                return super().get_vocab_base_pre(tokenizer)
            except NotImplementedError:
                pre = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
                if pre.get("type") == "ByteLevel":
                    return "gpt-2"
                raise

    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}.get(outtype, gguf.LlamaFileType.ALL_F32)
    written = Path(f"{out}.f32") if outtype in QUANTIZED else Path(out)
    with torch.inference_mode():
        GPT2(Path(hf_dir), ftype, written).write()
    if outtype in QUANTIZED:
        quantize(written, Path(out), outtype)


def quantize(f32: Path, out: Path, outtype: str) -> None:
    """llama.cpp's own quantizer with its defaults (what `llama-quantize f32.gguf out.gguf Q4_0` does, the tensors
    it keeps wider included); runs in the conversion's subprocess."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTIZED[outtype])
    if llama_cpp.llama_model_quantize(str(f32).encode(), str(out).encode(), ctypes.byref(params)):
        raise RuntimeError(f"llama.cpp could not quantize {f32} to {outtype}")
    f32.unlink()
