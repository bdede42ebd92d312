import torch
from transformers.pytorch_utils import Conv1D

from gpt2compress.runtimes.pytorch import load_model, save_model
from gpt2compress.measure.perplexity import perplexity
from gpt2compress.measure.memory import size_on_disk
from gpt2compress.build.stages.int8_scratch import (Int8Config, Int8Embedding, Int8Linear, quantize_int8_scratch,
                                                        quantize_tensor)

from helpers import random_gpt2


def test_quantize_tensor_error_within_half_a_step():
    w = torch.randn(64, 48) * 0.05
    q, scale = quantize_tensor(w)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127
    assert float((q.float() * scale - w).abs().max()) <= float(scale) / 2 + 1e-7


def test_every_weight_matrix_is_int8_and_within_bound(model):
    floats = {n: m.weight.detach().clone() for n, m in model.named_modules()
              if isinstance(m, (Conv1D, torch.nn.Embedding))}
    quantize_int8_scratch(model)
    assert not [m for m in model.modules() if isinstance(m, (Conv1D, torch.nn.Linear, torch.nn.Embedding))]
    for name, module in model.named_modules():
        if isinstance(module, Int8Linear):
            ref = floats[name] if isinstance(module, Int8Embedding) else floats[name].t()
            err = (module.dequantized(torch.float32) - ref).abs().max()
            assert float(err) <= float(module.scale) / 2 + 1e-7, name


def test_int8_shrinks_size_about_4x_and_keeps_quality(tmp_path, windows):
    model = random_gpt2(n_layer=2, n_embd=160, vocab_size=500)
    save_model(model, tmp_path / "fp32")
    ppl_fp32 = perplexity(model, windows)
    quantize_int8_scratch(model)
    save_model(model, tmp_path / "int8")
    ratio = size_on_disk(tmp_path / "fp32") / size_on_disk(tmp_path / "int8")
    assert 3.5 < ratio <= 4.0
    assert abs(perplexity(model, windows) / ppl_fp32 - 1) < 0.01


def test_int8_save_load_identical_logits(model, windows, tmp_path):
    quantize_int8_scratch(model)
    save_model(model, tmp_path / "q")
    loaded = load_model(tmp_path / "q")
    assert isinstance(loaded.transformer.wte, Int8Embedding)
    assert loaded.lm_head.embedding is loaded.transformer.wte  # still tied
    with torch.no_grad():
        a = model(input_ids=windows.input_ids).logits
        b = loaded(input_ids=windows.input_ids).logits
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_linears_only(model):
    quantize_int8_scratch(model, Int8Config(embeddings=False))
    assert isinstance(model.transformer.wte, torch.nn.Embedding)
    assert isinstance(model.transformer.h[0].mlp.c_fc, Int8Linear)
