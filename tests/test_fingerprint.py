"""Cache keys follow what built the model: the stage code, the helpers it runs, library versions, the source."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpt2compress.core import fingerprint
from gpt2compress.core.registry import STAGES
from gpt2compress.runtimes.pytorch import save_model
from gpt2compress.build.sources import load_source
from gpt2compress.core.variants import VARIANTS, plan

from helpers import ROOT, random_gpt2

PACKAGE = Path(fingerprint.__file__).resolve().parents[1]


def keys(ctx) -> dict[str, list[str]]:
    fingerprint.code_fingerprint.cache_clear()
    return {name: [step.key for step in plan(chain, ctx)] for name, chain in VARIANTS.items()}


def rekeyed(before: dict, after: dict) -> dict[str, list[bool]]:
    return {name: [a != b for a, b in zip(before[name], after[name])] for name in before}


def expected(stages_hit: set[str], source_hit: bool = False) -> dict[str, list[bool]]:
    """A prefix is re-keyed iff it holds a hit stage (or the source itself was hit): keys chain."""
    out = {}
    for name, chain in VARIANTS.items():
        flags, hit = [source_hit], source_hit
        for stage_name in chain:
            hit = hit or stage_name in stages_hit
            flags.append(hit)
        out[name] = flags
    return out


@pytest.fixture
def code_copy(tmp_path, monkeypatch):
    """A copy of the package's source that fingerprints read instead of the installed one."""
    copy = tmp_path / "gpt2compress"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "package_root", lambda: copy)
    yield copy
    fingerprint.code_fingerprint.cache_clear()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


TRAINERS = {"finetune", "distill", "lora", "lora_pruned"}
WITH_DATA = TRAINERS | {"prune", "openvino", "ov_int8_weights", "ov_int8_static", "inc_int8"}


@pytest.mark.parametrize("module,old,new,hit,source_hit", [
    ("build/stages/int8_scratch.py", "clamp_min(1e-12) / 127", "clamp_min(1e-12) / 127 * 40", {"int8_scratch"}, False),
    ("build/stages/pruning.py", "torch.argsort(score)", "torch.argsort(-score)", {"prune"}, False),
    ("build/stages/openvino.py", "smooth_quant_alpha: float = 0.5", "smooth_quant_alpha: float = 0.6",
     {"openvino", "ov_int8_weights", "ov_int8_static"}, False),
    ("build/stages/finetune.py", '"cosine"', '"linear"', TRAINERS, False),  # a helper module of four stages
    ("build/data.py", "yield {", "yield {**{},", WITH_DATA, False),  # a helper of every stage that reads data
    ("runtimes/pytorch.py", "model.eval()", "model.train().eval()", set(), True),  # every saved model
])
def test_editing_build_code_rekeys_what_runs_it_and_nothing_else(ctx, code_copy, module, old, new, hit, source_hit):
    before = keys(ctx)
    edit(code_copy / module, old, new)
    assert rekeyed(before, keys(ctx)) == expected(hit, source_hit)


NOT_BUILD_PACKAGES = ("core", "measure", "history", "report", "cli")


@pytest.mark.parametrize("module", [*(str(p.relative_to(PACKAGE)) for name in NOT_BUILD_PACKAGES
                                      for p in sorted((PACKAGE / name).glob("*.py"))),
                                    "runtimes/openvino/scorer.py", "runtimes/openvino/genai.py"])  # how it is run
def test_editing_reporting_or_orchestration_code_rekeys_nothing(ctx, code_copy, module):
    before = keys(ctx)
    (code_copy / module).write_text((code_copy / module).read_text() + "\nCHANGED = True\n")
    assert keys(ctx) == before


def test_docstrings_and_comments_rekey_nothing(ctx, code_copy):
    before = keys(ctx)
    edit(code_copy / "build/stages/int8_scratch.py", '"""From-scratch INT8', '"""# reworded\nFrom-scratch INT8')
    edit(code_copy / "build/stages/int8_scratch.py", "return q, scale", "return q, scale  # a new comment")
    assert keys(ctx) == before


def test_moving_a_module_moves_no_key(ctx, code_copy):
    """Where a module lives is not code: renaming the peer engines' helper (and its importers' import lines) keeps
    every key, while an edit of its code still re-keys the stages that run it."""
    before = keys(ctx)
    (code_copy / "runtimes/peers.py").rename(code_copy / "runtimes/peer_helpers.py")
    for importer in ("ct2.py", "ort.py", "llamacpp.py"):
        edit(code_copy / "build/stages" / importer, "runtimes.peers import", "runtimes.peer_helpers import")
    assert keys(ctx) == before
    edit(code_copy / "runtimes/peer_helpers.py", "def not_installed", "X = 1\n\n\ndef not_installed")
    peers = {s.name for s in STAGES.values() if s.module.rpartition(".")[2] in ("ct2", "ort", "llamacpp")}
    assert rekeyed(before, keys(ctx)) == expected(peers)


def test_bench_code_is_never_read():
    reports = {"gpt2compress.history.runs", "gpt2compress.report.stage_charts", "gpt2compress.history.compare"}
    built = fingerprint.build_modules(("gpt2compress.build.stages.openvino", "gpt2compress.build.sources"), PACKAGE)
    assert not reports & set(built)


@pytest.mark.parametrize("library,hit", [
    ("nncf", {"ov_int8_weights", "ov_int8_sym_weights", "ov_int4_weights", "ov_int8_static", "ov_int8_static_plain"}),
    ("openvino", {"openvino", "ov_int8_weights", "ov_int8_sym_weights", "ov_int4_weights", "ov_int8_static"}),
    ("optimum-intel", {"openvino", "ov_int8_weights", "ov_int8_sym_weights", "ov_int4_weights", "ov_int8_static"}),
    ("neural-compressor-pt", {"inc_int8"}),
    ("peft", {"lora", "lora_pruned"}),
    ("bitsandbytes", {"bnb_int8", "bnb_nf4"}),
    ("llama-cpp-python", {"gguf_f32", "gguf_q8_0", "gguf_q4_0"}),
    ("accelerate", {"finetune", "distill", "lora", "lora_pruned", "bnb_int8", "bnb_nf4"}),
])
def test_a_library_upgrade_rekeys_the_stages_that_run_it(ctx, monkeypatch, library, hit):
    before = keys(ctx)
    real = fingerprint._installed
    monkeypatch.setattr(fingerprint, "_installed", lambda name: "99.0" if name == library else real(name))
    assert rekeyed(before, keys(ctx)) == expected(hit)


@pytest.mark.parametrize("library", ["torch", "transformers"])
def test_a_torch_or_transformers_upgrade_rekeys_everything(ctx, monkeypatch, library):
    before = keys(ctx)
    real = fingerprint._installed
    monkeypatch.setattr(fingerprint, "_installed", lambda name: "99.0" if name == library else real(name))
    after = keys(ctx)
    assert all(a != b for name in before for a, b in zip(before[name], after[name]))


def _fake_hub_snapshot(cache: Path, repo: str, commit: str, model) -> None:
    folder = cache / f"models--{repo.replace('/', '--')}"
    model.save_pretrained(folder / "snapshots" / commit)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)


def test_a_hub_model_is_keyed_by_its_resolved_commit(tmp_path, local_checkpoint):
    """Offline, from a hub cache laid out as the hub leaves it: refs/main names the commit in use."""
    from gpt2compress.build.tokenizer import load_tokenizer

    hub, model = tmp_path / "hub", random_gpt2()
    for commit in ("a" * 40, "b" * 40):  # the same weights under two commits: a re-upload is still a new revision
        _fake_hub_snapshot(hub, "org/tiny-gpt2", commit, model)
        load_tokenizer(local_checkpoint).save_pretrained(hub / "models--org--tiny-gpt2" / "snapshots" / commit)
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}  # read once, at import: a new process

    def key_at(commit: str) -> str:
        (hub / "models--org--tiny-gpt2" / "refs" / "main").write_text(commit)
        done = subprocess.run([sys.executable, "-c", "from gpt2compress.build.sources import load_source; "
                               "print(load_source('org/tiny-gpt2').key)"], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()[-1]

    first = key_at("a" * 40)
    assert key_at("a" * 40) == first
    assert key_at("b" * 40) != first


def test_a_local_checkpoint_is_keyed_by_content_not_mtime(tmp_path, local_checkpoint):
    ckpt = shutil.copytree(local_checkpoint, tmp_path / "ckpt")
    key = load_source(str(ckpt)).key
    for f in ckpt.iterdir():
        os.utime(f, (1e9, 1e9))
    assert load_source(str(ckpt)).key == key
    model = load_source(str(ckpt)).model
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.bias[0] += 1
    save_model(model, ckpt)
    assert load_source(str(ckpt)).key != key


EXPERIMENT = """
import json, sys
sys.path.insert(0, {tests!r})
import gpt2compress
from gpt2compress.core.cache import entries
from gpt2compress.build.data import load_corpus
from gpt2compress.measure.perplexity import perplexity
from gpt2compress.build.sources import Source
from gpt2compress.build.tokenizer import train_bpe
from gpt2compress.core.variants import Context, Settings, build
from helpers import random_gpt2
from pathlib import Path

corpus = load_corpus("embedded")
tok = train_bpe(corpus.train_text[:40_000], 300, Path({tok!r}))
ctx = Context(Source("test", random_gpt2(vocab_size=len(tok)), tok, "test-source"), corpus,
              Settings(seq_len=32, eval_samples=8, finetune_max_steps=2, finetune_samples=16, calibration_samples=8))
before = {{e.path.name for e in entries()}}
ppl = {{name: perplexity(build(name, ctx).model, ctx.eval) for name in ("fp32", "pruned", "int8-scratch",
                                                                     "pruned-finetuned-int8-scratch")}}
built = sorted(e.label for e in entries() if e.kind == "variants" and e.path.name not in before)
print(json.dumps({{"package": gpt2compress.__file__, "perplexity": ppl, "built": built}}))
"""


def test_an_edited_stage_is_rebuilt_from_a_warm_cache(tmp_path, code_copy):
    """The issue's experiment, in two processes sharing one cache: the unchanged code warms it, then a copy
    of the code whose INT8 scales are 40x too large runs against it."""
    edit(code_copy / "build/stages/int8_scratch.py", "clamp_min(1e-12) / 127", "clamp_min(1e-12) / 127 * 40")
    script = EXPERIMENT.format(tests=str(ROOT / "tests"), tok=str(tmp_path / "tok"))
    env = {**os.environ, "GPT2COMPRESS_CACHE": str(tmp_path / "cache")}

    def run(pythonpath: str | None) -> dict:
        run_env = {**env, "PYTHONPATH": pythonpath} if pythonpath else env
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=run_env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    original = run(None)
    edited = run(str(code_copy.parent))
    assert Path(edited["package"]).parent == code_copy
    assert edited["perplexity"]["int8-scratch"] != original["perplexity"]["int8-scratch"]
    assert edited["perplexity"]["fp32"] == original["perplexity"]["fp32"]
    assert edited["built"] == ["test: int8_scratch", "test: prune > finetune > int8_scratch"]  # nothing else
