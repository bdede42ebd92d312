import pytest
import torch

from gpt2compress.measure.perplexity import perplexity
from gpt2compress.build.stages import STAGES, StageNotApplicable, check_chain
from gpt2compress.core.variants import Context, Settings, build



def test_chain_builds_and_records_info(ctx):
    built = build("pruned-finetuned", ctx)
    assert built.info["heads_per_layer"] == [4, 4]
    assert built.info["precision"] == "fp32" and built.runtime == "torch"
    assert built.info["parameters"] < ctx.source.model.num_parameters()
    assert ctx.source.model.transformer.h[0].attn.num_heads == 5  # the shared source is untouched
    assert (built.path / "model.safetensors").exists()


def test_warm_build_reuses_the_cache(ctx, monkeypatch):
    first = build("pruned", ctx)
    calls = []
    original = STAGES["prune"].apply
    monkeypatch.setitem(STAGES, "prune", STAGES["prune"].__class__(
        **{**STAGES["prune"].__dict__, "apply": lambda m, c: calls.append(1) or original(m, c)}))
    second = build("pruned", ctx)
    assert not calls and second.path == first.path
    torch.testing.assert_close(perplexity(second.model, ctx.eval), perplexity(first.model, ctx.eval))


def test_changed_settings_change_the_key(ctx):
    a = build("pruned", ctx).path
    ctx.settings = Settings(**{**ctx.settings.__dict__, "prune_fraction": 0.4})
    ctx.__dict__.pop("calibration", None)
    b = build("pruned", ctx)
    assert a != b.path and b.info["heads_per_layer"] == [3, 3]


def test_interrupted_build_leaves_nothing_trusted(ctx, monkeypatch):
    def boom(model, config):
        raise KeyboardInterrupt

    monkeypatch.setitem(STAGES, "prune", STAGES["prune"].__class__(**{**STAGES["prune"].__dict__, "apply": boom}))
    with pytest.raises(KeyboardInterrupt):
        build("pruned", ctx)
    monkeypatch.undo()
    assert build("pruned", ctx).info["heads_per_layer"] == [4, 4]


@pytest.mark.parametrize("chain,device,reason", [
    (("fp16",), "cpu", "does not apply to device 'cpu'"),
    (("openvino",), "cuda", "does not apply to device 'cuda'"),
    (("ov_int8_static",), "cpu", "takes a openvino model"),
])
def test_stage_that_does_not_apply_is_refused_with_reason(chain, device, reason):
    with pytest.raises(StageNotApplicable, match=reason):
        check_chain(chain, device)


def test_unknown_stage_lists_known_ones():
    with pytest.raises(KeyError, match="known stages"):
        check_chain(("magic",), "cpu")


def test_bf16_refused_where_the_cpu_would_emulate_it(monkeypatch):
    from gpt2compress.build import hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2"}))
    with pytest.raises(StageNotApplicable, match="no native bf16"):
        check_chain(("bf16",), "cpu")
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    check_chain(("prune", "bf16"), "cpu")


def test_window_longer_than_the_model_names_the_fix(ctx):
    with pytest.raises(ValueError, match="--seq-len 64 or less"):
        Context(ctx.source, ctx.corpus, Settings(seq_len=128))


def test_the_variants_listing_names_every_case_and_why_it_cannot_run_here(monkeypatch, capsys):
    from gpt2compress.build import hardware
    from gpt2compress.core.cases import names
    from gpt2compress.cli import main
    from gpt2compress.core.registry import STAGES

    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2"}))
    assert main(["variants", "--devices", "cpu"]) == 0
    listing, stages = capsys.readouterr().out.split("\n\n")
    lines = {line.split()[0]: line for line in listing.splitlines()[1:]}
    assert list(lines) == names()
    assert lines["fp32"].endswith(" yes") and "forward, generate, train" in lines["fp32"]
    assert "no: stage 'bf16' does not apply to device 'cpu': this CPU has no native bf16" in lines["bf16"]
    assert "trained with precision=bf16" in lines["bf16-autocast"]
    assert "prune > finetune > openvino > ov_int8_static" in lines["pruned-finetuned-ov-int8-static"]
    abouts = {line.split()[0]: line for line in stages.splitlines()[1:]}
    assert all(stage.about and stage.about in abouts[name] for name, stage in STAGES.items())


def test_bf16_on_cuda_without_a_gpu_says_there_is_none_to_check(monkeypatch):
    from gpt2compress.build.stages.precision import native_bf16

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert native_bf16("cuda").startswith("no CUDA GPU visible")


def test_pipeline_refuses_an_unknown_variant_before_loading_anything(monkeypatch, capsys):
    from gpt2compress.build import sources
    from gpt2compress.cli import main

    monkeypatch.setattr(sources, "load_source", lambda *a, **k: pytest.fail("loaded the model for a typo"))
    assert main(["pipeline", "--variants", "fp32,nope"]) == 2
    assert "--variants: unknown nope; known: fp32," in capsys.readouterr().err


def test_pipeline_keeps_the_rows_measured_before_a_failure(local_checkpoint, tmp_path, monkeypatch):
    import json

    from gpt2compress.core import variants
    from gpt2compress.cli import main

    real = variants.build
    monkeypatch.setattr(variants, "build", lambda name, ctx, chain=None: real(name, ctx, chain) if name == "fp32"
                        else (_ for _ in ()).throw(RuntimeError("a stage crashed")))
    out = tmp_path / "rows.json"
    with pytest.raises(RuntimeError, match="a stage crashed"):
        main(["pipeline", "--model", str(local_checkpoint), "--devices", "cpu", "--variants", "fp32,pruned",
              "--eval-samples", "4", "--rounds", "2", "--json", str(out)])
    assert [row["variant"] for row in json.loads(out.read_text())["rows"]] == ["fp32"]
