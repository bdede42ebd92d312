"""Adding a stage or a runtime is one new file plus its registration, from outside the package: the bench builds,
caches, keys and scores the new variant like its own (docs/layout.md)."""

import importlib
import json
import sys
import textwrap

import pytest
import torch

from gpt2compress.core import fingerprint
from gpt2compress.core.registry import RUNTIMES, STAGES, scoring_engine
from gpt2compress.core.variants import VARIANTS, build, plan

PLUGIN = textwrap.dedent('''
    """A user's own method, in a file of theirs: halve every weight (a stage) and save it as its own runtime."""
    from dataclasses import dataclass

    import torch

    from gpt2compress.core.registry import CPU, register_runtime, register_stage
    from gpt2compress.runtimes.pytorch import load_model, save_model

    SCALE = 0.5


    class Scorer:  # what scores windows of this runtime's models: the model, counting its calls
        calls = 0

        def __init__(self, model):
            self.model = model

        def __call__(self, **batch):
            Scorer.calls += 1
            return self.model(**batch)


    register_runtime("halved", load=lambda path, device: load_model(path).to(device),
                     save=lambda model, out, tokenizer: save_model(model, out, tokenizer),
                     scorer=lambda built, timed=None, **_: Scorer(built.model))


    @dataclass(frozen=True)
    class HalveConfig:
        scale: float = SCALE


    @register_stage("halve", lambda ctx: HalveConfig(), devices=(CPU,), gives="halved", about="every weight x 0.5")
    def halve(model, config):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(config.scale)
        return model
''')


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "my_halving.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("my_halving")
    monkeypatch.setitem(VARIANTS, "halved", ("halve",))
    yield tmp_path / "my_halving.py"
    STAGES.pop("halve", None), RUNTIMES.pop("halved", None), sys.modules.pop(module.__name__, None)
    fingerprint.code_fingerprint.cache_clear()


def test_a_stage_and_a_runtime_from_outside_the_package_build_cache_and_score(ctx, plugin):
    built = build("halved", ctx)
    assert built.runtime == "halved" and STAGES["halve"].module == "my_halving"
    weight = built.model.transformer.wte.weight
    assert torch.allclose(weight, build("fp32", ctx).model.transformer.wte.weight * 0.5)
    engine = scoring_engine(built)  # the runtime's own scorer, as the bench scores the variant
    engine(input_ids=torch.ones(1, 4, dtype=torch.long))
    assert type(engine).__name__ == "Scorer" and type(engine).calls == 1
    assert build("halved", ctx).path == built.path  # cached under the same key


def test_editing_the_plugin_rekeys_its_builds(ctx, plugin):
    before = plan(VARIANTS["halved"], ctx)[-1].key
    plugin.write_text(plugin.read_text().replace("SCALE = 0.5", "SCALE = 0.25"))
    fingerprint.code_fingerprint.cache_clear()
    assert plan(VARIANTS["halved"], ctx)[-1].key != before


KIND_PLUGIN = textwrap.dedent('''
    """A user's own kind, in a file of theirs: `embed`, the token-embedding lookup alone, timed in rounds that
    alternate with fp32's. The file registers the kind and is its bench test module."""
    from dataclasses import dataclass
    from typing import ClassVar

    import torch

    from gpt2compress.core.cases import Case
    from gpt2compress.core.kinds import Kind, Page, register_kind
    from gpt2compress.core.metrics import RATIO, Metric
    from gpt2compress.core.records import Record, Timed
    from gpt2compress.core.variants import BASELINE, VARIANTS, build
    from gpt2compress.measure.fields import identity
    from gpt2compress.measure.pairing import Reference, alternate, ms, note_pairing


    @dataclass
    class EmbedRecord(Timed, Record):
        KIND: ClassVar[str] = "embed"
        REFERENCE: ClassVar[str] = BASELINE
        DERIVED: ClassVar[tuple] = ("median_ms",)
        tokens: int | None = None


    def lookup(model, ids):
        return lambda: model.get_input_embeddings()(ids)


    def reference_for(setting):
        ids = setting.ctx.eval.input_ids[:4]
        built = build(BASELINE, setting.ctx)
        record = EmbedRecord(**identity(built, setting.ctx), tokens=ids.numel())
        return (), lambda: Reference(record, lambda: build(BASELINE, setting.ctx).model, ids)


    def measure(built, ctx, reference, runner, options):
        record = EmbedRecord(**identity(built, ctx), tokens=reference.inputs.numel())
        with reference.loaded() as base, torch.no_grad():
            paired = alternate(lookup(built.model, reference.inputs), lookup(base, reference.inputs), 5, 1, runner)
        record.latency_samples_ms = ms(paired.times)
        note_pairing(record, paired)
        return record.against(EmbedRecord(latency_samples_ms=ms(paired.reference)))


    def section(runs):
        return [f"## Embedding lookup: {r.variant} {r.median_ms:.4f} ms" for run in runs for r in run.of("embed")]


    KIND = register_kind(Kind(
        "embed", EmbedRecord, lambda: [Case("embed", v, VARIANTS[v]) for v in (BASELINE, "int8-scratch")],
        reference_for, measure, Page(section),
        metrics=(Metric("embed_latency", ("embed",), "median_ms", "ms", "lower", "embedding lookup, ms", 0.10,
                        samples="latency_samples_ms", timing=True, budgets={"max_embed_latency_ratio": RATIO}),))).name


    def test_embed(case, device, reference, measure, gate):
        gate(measure(reference))
''')

BUDGETS = textwrap.dedent('''
    version = 1
    [cpu."*".int8-scratch]
    max_embed_latency_ratio = 1000
''')


def test_a_kind_from_outside_the_package_is_measured_gated_read_back_and_drawn(local_checkpoint, tmp_path):
    """One file of a user's registers a kind (record, metric, reference, cases, measure, page) and is its bench
    test: the suite parametrizes it, times it through pytest-benchmark, gates its budget key, and the results
    read back into its typed record and onto its page."""
    from helpers import ROOT, run_bench

    from gpt2compress.core.kinds import KINDS
    from gpt2compress.core.records import RECORDS
    from gpt2compress.core.metrics import BUDGET_KEYS, METRICS
    from gpt2compress.history.runs import load_run
    from gpt2compress.report.stage_charts import summary_markdown

    plugin = tmp_path / "user" / "test_embed_kind.py"
    plugin.parent.mkdir()
    plugin.write_text(KIND_PLUGIN)
    (plugin.parent / "budgets.toml").write_text(BUDGETS)
    out = tmp_path / "embed.json"
    done = run_bench(local_checkpoint, out, "--budgets", str(plugin.parent / "budgets.toml"), "--rootdir",
                     str(plugin.parent), suite=plugin)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 passed" in done.stdout and ROOT.exists()
    rows = json.loads(out.read_text())["benchmarks"]
    assert {r["name"] for r in rows} == {"test_embed[fp32-cpu]", "test_embed[int8-scratch-cpu]"}
    assert all(r["stats"]["rounds"] == 5 for r in rows)  # pytest-benchmark timed the paired rounds

    sys.path.insert(0, str(plugin.parent))
    try:
        importlib.import_module("test_embed_kind")  # the kind is known where its module is imported
        run = load_run(out)
        (record,) = [r for r in run.of("embed") if r.variant == "int8-scratch"]
        assert type(record).__name__ == "EmbedRecord" and record.ratios["embed_latency"] > 0
        assert record.budget == {"max_embed_latency_ratio": 1000}
        assert "## Embedding lookup: int8-scratch" in summary_markdown([run])
    finally:
        sys.path.remove(str(plugin.parent))
        sys.modules.pop("test_embed_kind", None)
        KINDS.pop("embed", None), RECORDS.pop("embed", None), METRICS.pop("embed_latency", None)
        BUDGET_KEYS.pop("max_embed_latency_ratio", None)
