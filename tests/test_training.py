"""Training steps: accumulation reaches the token budget, autocast trains, and a step that cannot learn is caught."""

import pytest
import torch

from gpt2compress.measure.training import TrainSetup, accumulation_steps, train_steps

from helpers import random_gpt2, random_windows


def windows():
    return random_windows(n=16, seq_len=32, ragged=False)


def test_accumulation_reaches_the_effective_batch_in_tokens():
    assert accumulation_steps(TrainSetup(tokens_per_step=4096, micro_batch=4), seq_len=128) == 8
    assert accumulation_steps(TrainSetup(tokens_per_step=100, micro_batch=4), seq_len=128) == 1


@pytest.mark.parametrize("precision, attention", [("fp32", "sdpa"), ("fp32", "eager"), ("bf16", "sdpa")])
def test_steps_learn_and_count_their_tokens(precision, attention):
    setup = TrainSetup(precision=precision, attention=attention, tokens_per_step=256, micro_batch=4, steps=3,
                       learning_rate=1e-2)
    result = train_steps(random_gpt2(), windows(), setup, progress=False)
    assert result.accumulation == 2 and result.tokens_per_step == 2 * 4 * 32
    assert len(result.losses) == len(result.step_s) == 3
    assert result.learned, result.losses
    assert result.tokens_per_s > 0 and result.peak_memory_bytes > 0


def test_a_step_that_cannot_learn_is_reported():
    model = random_gpt2()
    for module in model.modules():  # no dropout: with lr 0 every step sees exactly the same loss
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    frozen = TrainSetup(tokens_per_step=128, micro_batch=4, steps=2, learning_rate=0.0)
    result = train_steps(model, windows(), frozen, progress=False)
    assert result.losses[0] == result.losses[-1] and not result.learned


def test_too_little_data_names_the_options():
    with pytest.raises(ValueError, match="--train-tokens"):
        train_steps(random_gpt2(), windows(), TrainSetup(tokens_per_step=10**6, micro_batch=4), progress=False)


def test_cpu_training_memory_is_the_models_not_the_sessions():
    """The weights plus what training adds (gradients, AdamW's two moments, activations), however much this process
    held before: 512 MiB here."""
    from gpt2compress.measure.memory import tensor_bytes

    session = torch.ones(512 * 2**20 // 4)
    session.add_(1)
    model = random_gpt2(n_layer=2, n_embd=256, n_head=4, vocab_size=4096, n_positions=64)
    weights = tensor_bytes(model)
    setup = TrainSetup(tokens_per_step=128, micro_batch=4, steps=2)
    result = train_steps(model, random_windows(n=8, seq_len=32, vocab_size=4096, ragged=False), setup, progress=False)
    assert 3 * weights <= result.peak_memory_bytes < weights * 4 + 256 * 2**20  # + grads + 2 moments, not + 512 MiB
