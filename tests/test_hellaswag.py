"""HellaSwag scoring on a hand-written jsonl (tests/data): an oracle scores 1.0, uniform logits exactly chance."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from gpt2compress.build.data import DataSourceError
from gpt2compress.measure.hellaswag import Example, ending_logprobs, evaluate, load_hellaswag, parse

from helpers import ROOT, random_gpt2

DATA = ROOT / "tests" / "data" / "hellaswag_tiny.jsonl"


class Bytes:
    """A byte tokenizer: one token per character, so ending lengths are under the test's control."""

    def encode(self, text, add_special_tokens=False):
        return list(text.encode())


class Stub(torch.nn.Module):
    """Logits over 256 bytes that ignore the context: `bonus` on upper-case letters (the right endings here)."""

    def __init__(self, bonus: float):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(256))
        self.weight.data[ord("A"): ord("Z") + 1] = bonus

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.weight.expand(*input_ids.shape, 256))


@pytest.fixture
def examples():
    return load_hellaswag(DATA)


def test_jsonl_reads_both_forms(examples):
    assert len(examples) == 8 and [e.label for e in examples] == [0, 1, 2, 3] * 2
    assert examples[5].context == "Misc: Two men lift a heavy box. They"  # a hub row: lm-eval's query, label "1"
    assert examples[0].context == "A man is sitting on a roof. he"  # build-nanogpt's row: its raw ctx


def test_a_model_preferring_the_right_endings_scores_one(examples):
    assert evaluate(Stub(bonus=5.0), Bytes(), examples, progress=False) == {
        "hellaswag_acc": 1.0, "hellaswag_acc_norm": 1.0, "hellaswag_acc_stderr": 0.0, "hellaswag_acc_norm_stderr": 0.0,
        "hellaswag_examples": 8}


def test_uniform_logits_score_chance(examples):
    """Equal-length endings tie; ties pick ending 0, the label of exactly a quarter of the examples."""
    scores = evaluate(Stub(bonus=0.0), Bytes(), examples, progress=False)
    assert scores["hellaswag_acc"] == scores["hellaswag_acc_norm"] == 0.25


def test_acc_norm_divides_by_ending_length():
    """Uniform logits: the shortest ending has the largest sum (acc); per character of the ending (lm-eval's length:
    without the space before it) the longest wins (acc_norm -> 0)."""
    example = Example("some context", ("a longer ending", "a long one", "short", "the longest ending of all"), 2)
    scores = evaluate(Stub(bonus=0.0), Bytes(), [example], progress=False)
    assert scores["hellaswag_acc"] == 1.0 and scores["hellaswag_acc_norm"] == 0.0


def test_padded_rows_score_as_each_ending_alone():
    """The batched, right-padded score of each ending equals a forward on that sequence alone."""
    model, tok = random_gpt2(vocab_size=256), Bytes()
    example = Example("The cat sat", ("on the mat", "down", "quietly on a chair", "x"), 0)
    context = tok.encode(example.context)
    for ending, got in zip(example.endings, ending_logprobs(model, tok, example)):
        ids = torch.tensor([context + tok.encode(" " + ending)])
        with torch.no_grad():
            logprobs = F.log_softmax(model(input_ids=ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None])[:, 0]
        assert got == pytest.approx(float(logprobs[len(context) - 1:].sum()), abs=1e-4)


def test_long_context_is_cut_from_the_left_to_fit():
    model, tok = random_gpt2(vocab_size=256, n_positions=64), Bytes()
    example = Example("x" * 100, ("an ending", "another"), 0)
    assert len(ending_logprobs(model, tok, example, max_len=64)) == 2


@pytest.mark.parametrize("row,message", [
    ({"endings": ["a", "b"], "label": 0}, "needs ctx"),
    ({"ctx": "c", "endings": ["a", "b"], "label": 5}, "not an index"),
])
def test_bad_rows_say_what_is_missing(row, message):
    with pytest.raises(DataSourceError, match=message):
        parse(row)


def test_missing_file_names_the_option(tmp_path):
    with pytest.raises(DataSourceError, match="--hellaswag"):
        load_hellaswag(tmp_path / "none.jsonl")


LMEVAL_DATA = ROOT / "tests" / "data" / "hellaswag_lmeval.jsonl"  # the hub's row format, WikiHow artifacts included
LMEVAL_TASK = """
task: hellaswag_local
include: {hellaswag_yaml}
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files:
    validation: {rows}
training_split: null
"""


def test_scores_equal_lm_eval_harness_on_the_same_model_and_rows(local_checkpoint, tmp_path, monkeypatch):
    """lm-eval-harness's own `hellaswag` task (its yaml and preprocessing, run offline on a local copy of the rows)
    is the judge: every choice's log-likelihood to 1e-4 relative, acc, acc_norm and their standard errors equal."""
    lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is a test dependency: pip install -e '.[dev]'")
    from pathlib import Path

    from lm_eval.tasks import TaskManager

    from gpt2compress.build.tokenizer import load_tokenizer
    from gpt2compress.runtimes.pytorch import load_model

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hellaswag_yaml = Path(lm_eval.__file__).parent / "tasks" / "hellaswag" / "hellaswag.yaml"
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "hellaswag_local.yaml").write_text(
        LMEVAL_TASK.format(hellaswag_yaml=hellaswag_yaml, rows=LMEVAL_DATA))
    judged = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={local_checkpoint},dtype=float32",
                                     tasks=["hellaswag_local"], device="cpu", batch_size=1, log_samples=True,
                                     task_manager=TaskManager(include_path=str(tmp_path / "tasks")))
    theirs = {s["doc_id"]: [float(r[0][0]) for r in s["resps"]] for s in judged["samples"]["hellaswag_local"]}
    model, tokenizer = load_model(local_checkpoint).eval(), load_tokenizer(local_checkpoint)
    examples = load_hellaswag(LMEVAL_DATA)
    assert examples[2].context.startswith("Home and Garden: [header]") is False  # WikiHow's brackets preprocessed
    limit = model.config.n_positions  # rows longer than the model's window: cut from the left as lm-eval cuts
    for i, example in enumerate(examples):
        assert ending_logprobs(model, tokenizer, example, limit) == pytest.approx(theirs[i], rel=1e-4)
    ours = evaluate(model, tokenizer, examples, limit, progress=False)
    summary = judged["results"]["hellaswag_local"]
    for name in ("acc", "acc_norm"):
        assert ours[f"hellaswag_{name}"] == pytest.approx(summary[f"{name},none"], abs=1e-9)
        assert ours[f"hellaswag_{name}_stderr"] == pytest.approx(summary[f"{name}_stderr,none"], abs=1e-9)
