"""Adding a stage or a runtime is one new file plus its registration, from outside the package: the bench builds,
caches, keys and scores the new variant like its own (docs/layout.md)."""

import importlib
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
