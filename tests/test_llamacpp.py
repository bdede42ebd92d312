"""llama.cpp peer: the converter comes from the installed version's sdist, the stage skips cleanly without
the extra, and (where llama-cpp-python is installed) the GGUF model computes what the PyTorch model does."""

import io
import subprocess
import tarfile

import pytest
import torch

from helpers import ROOT, random_gpt2
from gpt2compress.core.cache import content_key
from gpt2compress.measure.generation import cannot_generate, timed_generate
from gpt2compress.build.stages import StageNotApplicable, check_chain
from gpt2compress.build.stages import llamacpp
from gpt2compress.build.stages.llamacpp import LlamaCppConfig, LlamaCppUnavailable, converter_dir, to_gguf


def test_without_the_extra_the_stage_skips_naming_the_install(monkeypatch):
    monkeypatch.setattr(llamacpp.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(StageNotApplicable, match=r"pip install -e '\.\[llamacpp\]'"):
        check_chain(("gguf_q8_0",), "cpu")
    with pytest.raises(StageNotApplicable, match="runs on: cpu"):
        check_chain(("gguf_f32",), "cuda")


def test_a_build_with_ggmls_amx_kernels_is_refused_naming_the_rebuild(monkeypatch):
    monkeypatch.setattr(llamacpp, "not_installed", lambda *args: None)
    monkeypatch.setattr(llamacpp, "system_info", lambda: "CPU : AVX512 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1 |")
    with pytest.raises(StageNotApplicable, match=r"AMX kernels.*scripts/install-llamacpp\.sh"):
        check_chain(("gguf_q8_0",), "cpu")
    monkeypatch.setattr(llamacpp, "system_info", lambda: "CPU : AVX512 = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 |")
    check_chain(("gguf_q8_0",), "cpu")


@pytest.mark.parametrize("cpu, wanted, unwanted", [
    ("fpu avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16",  # an AMX Xeon
     ["-DGGML_NATIVE=OFF", "-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX512_BF16=ON", "-DGGML_AMX_INT8=OFF"],
     ["-DGGML_AMX_INT8=ON"]),
    ("fpu avx2 avx512f avx512bw avx512vl avx512_vnni", ["-DGGML_AVX512_VNNI=ON"], ["AVX512_BF16"]),  # AVX-512 EPYC
    ("fpu avx avx2 fma f16c", ["<native>"], ["GGML_NATIVE=OFF"]),  # AVX2-only: -march=native is right
])
def test_the_llama_cpp_build_names_the_isa_and_never_amx(tmp_path, cpu, wanted, unwanted):
    said = _dry_run(tmp_path, cpu)
    assert all(flag in said for flag in wanted) and not any(flag in said for flag in unwanted)


def test_an_amx_xeon_gets_the_build_measured_on_avx512_cpus_without_amx(tmp_path):
    """The AMX flags change nothing in what is compiled: an AMX Xeon runs the AVX-512 + VNNI + BF16 + VBMI build
    whose libraries hold no tile instruction (checked with objdump on a Zen 4: README)."""
    sapphire_rapids = "fpu avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx512vbmi"
    cmake_args = [_dry_run(tmp_path, flags).split(" wheel key=")[0]
                  for flags in (sapphire_rapids, sapphire_rapids + " amx_tile amx_int8 amx_bf16")]
    assert cmake_args[0] == cmake_args[1] and "-DGGML_AVX512_VBMI=ON" in cmake_args[0]


def _dry_run(tmp_path, cpu: str) -> str:
    """What `install-llamacpp.sh --dry-run` says of a CPU with these flags: its CMAKE_ARGS and wheel key."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {cpu}\n")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "install-llamacpp.sh"), "--dry-run"], capture_output=True,
                          text=True, env={"CPUINFO": str(cpuinfo), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr


def _install_llamacpp(tmp_path, cpu, wheels, *args, script=ROOT / "scripts" / "install-llamacpp.sh"):
    """Runs the script against a fake `python` that logs its argv (and writes the wheel `pip wheel` would)."""
    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {cpu}\n")
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    wheel = "llama_cpp_python-0.0.0-cp3-cp3-linux_x86_64.whl"
    (fake / "python").write_text(f'#!/bin/bash\necho "$*" >> "$LOG"\n[ "$3" = wheel ] && touch "$5/{wheel}"; exit 0\n')
    (fake / "python").chmod(0o755)
    env = {"CPUINFO": str(tmp_path / "cpuinfo"), "PATH": f"{fake}:/usr/bin:/bin", "LOG": str(tmp_path / "log"),
           "LLAMACPP_WHEELS": str(wheels)}
    done = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "log").read_text() if (tmp_path / "log").exists() else ""
    (tmp_path / "log").unlink(missing_ok=True)
    return done.stderr.split("wheel key=")[1].split()[0], log


def test_the_llama_cpp_wheel_is_built_once_per_key_then_installed_from_the_cache(tmp_path):
    wheels, avx2 = tmp_path / "wheels", "fpu avx avx2 fma f16c"
    key, log = _install_llamacpp(tmp_path, avx2, wheels)
    assert " wheel --wheel-dir " in log and "--no-binary llama-cpp-python" in log   # a miss builds from the sdist
    assert f"install --force-reinstall --no-deps {wheels}/{key}/llama_cpp_python-" in log
    assert not list(wheels.glob(".building-*"))   # the build dir became the key's dir, nothing left behind
    again, log = _install_llamacpp(tmp_path, avx2, wheels)
    assert again == key and " wheel " not in log and f"{wheels}/{key}/llama_cpp_python-" in log   # a hit: no build
    other, _ = _install_llamacpp(tmp_path, avx2 + " avx512f avx512bw avx512vl", wheels, "--dry-run")
    assert other != key   # another CPU (and so other CMAKE_ARGS) is another wheel
    edited = tmp_path / "tree" / "scripts" / "install-llamacpp.sh"
    edited.parent.mkdir(parents=True)
    edited.write_text((ROOT / "scripts" / "install-llamacpp.sh").read_text() + "# an edited recipe\n")
    (tmp_path / "tree" / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    rebuilt, _ = _install_llamacpp(tmp_path, avx2, wheels, "--dry-run", script=edited)
    assert rebuilt != key   # a changed build recipe is another wheel


def test_a_converter_dir_without_the_converter_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(llamacpp.CONVERTER_ENV, str(tmp_path))
    with pytest.raises(LlamaCppUnavailable, match="llama.cpp checkout"):
        converter_dir()


def test_a_checkouts_converter_is_in_the_gguf_key(tmp_path, monkeypatch):
    for name, text in {"convert_hf_to_gguf.py": "# converter", "conversion/gpt2.py": "# gpt2",
                       "gguf-py/gguf/__init__.py": ""}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.delenv(llamacpp.CONVERTER_ENV, raising=False)
    assert llamacpp.converter_key() == ""  # the installed version's: its version is in the stage's fingerprint
    monkeypatch.setenv(llamacpp.CONVERTER_ENV, str(tmp_path))
    before = llamacpp.converter_key()
    (tmp_path / "conversion" / "gpt2.py").write_text("# gpt2, after a pull")
    llamacpp._checkout_key.cache_clear()  # read once per process: the next bench process reads the pull
    assert before and llamacpp.converter_key() != before
    assert content_key(LlamaCppConfig("q8_0", before)) != content_key(LlamaCppConfig("q8_0", ""))


def _fake_sdist(path, version):
    files = {"convert_hf_to_gguf.py": b"# converter", "conversion/gpt2.py": b"# gpt2", "gguf-py/gguf/__init__.py": b"",
             "ggml/src/huge.c": b"not needed", "README.md": b"no"}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"llama_cpp_python-{version}/vendor/llama.cpp/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_the_converter_is_extracted_from_the_installed_versions_sdist(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2COMPRESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(llamacpp.CONVERTER_ENV, raising=False)
    monkeypatch.setattr(llamacpp, "installed_version", lambda: "9.9.9")
    asked = []

    def pip(command, **kwargs):
        asked.append(command)
        _fake_sdist(f"{command[command.index('-d') + 1]}/llama_cpp_python-9.9.9.tar.gz", "9.9.9")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(llamacpp.subprocess, "run", pip)
    path = converter_dir()
    assert "llama-cpp-python==9.9.9" in asked[0] and "--no-binary" in asked[0]
    assert (path / "convert_hf_to_gguf.py").read_text() == "# converter"
    assert (path / "conversion" / "gpt2.py").is_file() and (path / "gguf-py" / "gguf" / "__init__.py").is_file()
    assert not (path / "ggml").exists() and not (path / "README.md").exists()
    assert converter_dir() == path and len(asked) == 1  # cached: fetched once


def test_a_failed_download_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2COMPRESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(llamacpp.CONVERTER_ENV, raising=False)
    monkeypatch.setattr(llamacpp, "installed_version", lambda: "9.9.8")
    monkeypatch.setattr(llamacpp.subprocess, "run",
                        lambda command, **kw: subprocess.CompletedProcess(command, 1, "", "no network"))
    with pytest.raises(LlamaCppUnavailable, match=llamacpp.CONVERTER_ENV):
        converter_dir()
    assert not list((tmp_path / "cache" / "llama.cpp").iterdir())  # nothing half-made is left to trust


def test_models_llama_cpps_gpt2_cannot_hold_are_refused():
    model = random_gpt2(n_layer=2, n_head=4, n_embd=64)
    model.config.gpt2compress = {"pruned_heads": {"0": [1]}}  # what the prune stage records
    with pytest.raises(StageNotApplicable, match="full, float model"):
        to_gguf(model, LlamaCppConfig("f32"))


# ---------------------------------------------------------------- with llama-cpp-python installed
@pytest.fixture(scope="module")
def gguf_pair(tmp_path_factory):
    """A small random GPT-2 with a trained byte-level BPE, converted to GGUF f32 and q8_0."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install -e '.[llamacpp]')")
    from gpt2compress.build.tokenizer import train_bpe

    out = tmp_path_factory.mktemp("gguf")
    text = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7}" for i in range(300))
    tokenizer = train_bpe(text, 320, out / "tok")
    model = random_gpt2(n_layer=2, n_head=4, n_embd=64, vocab_size=len(tokenizer), n_positions=64)
    try:
        converted = {t: to_gguf(model, LlamaCppConfig(t, tokenizer=tokenizer, threads=1))
                     for t in ("f32", "q8_0", "q4_0")}
    except LlamaCppUnavailable as exc:
        pytest.skip(str(exc))
    return model, converted


def test_gguf_f32_logits_match_pytorch_and_q8_0_and_q4_0_stay_close(gguf_pair):
    model, converted = gguf_pair
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 16:] = 0  # right padding is skipped, as in the eval windows
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).logits
    f32 = converted["f32"](input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(f32[0], expected[0], atol=1e-3)
    assert torch.allclose(f32[1, :16], expected[1, :16], atol=1e-3)
    q8 = converted["q8_0"](input_ids=ids, attention_mask=mask).logits
    assert (q8[0] - expected[0]).abs().max() < 0.05 * expected[0].abs().max()
    q4 = converted["q4_0"](input_ids=ids, attention_mask=mask).logits  # llama.cpp's own quantizer, from the f32
    assert 0 < (q4[0] - expected[0]).abs().max() < 0.25 * expected[0].abs().max()
    sizes = {t: m.path.stat().st_size for t, m in converted.items()}
    assert sizes["q4_0"] < sizes["q8_0"] < sizes["f32"], sizes


def test_gguf_greedy_generation_matches_transformers_token_for_token(gguf_pair):
    model, converted = gguf_pair
    prompt = torch.randint(0, model.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(1))
    expected = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=10,
                              min_new_tokens=10, pad_token_id=0)
    assert torch.equal(converted["f32"].generate(prompt, max_new_tokens=10), expected)
    llm, evaluated = converted["f32"]._decoder, []
    real_eval = llm.eval
    llm.eval = lambda tokens: (evaluated.append(len(tokens)), real_eval(tokens))[1]
    timings = [timed_generate(converted["f32"], prompt, new_tokens=10) for _ in range(2)]
    assert [len(t.decode_s) for t in timings] == [9, 9]
    assert evaluated == [12] + [1] * 9 + [12] + [1] * 9  # every round's prefill evaluates the whole prompt
    assert cannot_generate(converted["f32"], 1) is None
    assert "1 sequence" in cannot_generate(converted["f32"], 8)
