# ruff: noqa: W291, W293  (WikiText's raw lines end in a space, as the articles below keep)
"""WikiText-2 perplexity by lm-eval-harness's `wikitext` protocol (measure/documents.py): lm-eval's own task, run
offline on a local copy of the documents, is the judge of every document's log-likelihood and of the word / byte
perplexity and bits per byte."""

import json
import math

import pytest

from gpt2compress.measure.documents import detokenize, documents, loglikelihood, rolling_windows, score

RAW = """ = Valkyria Chronicles = 
 
 Senjō no Valkyria 3 : Unrecorded Chronicles ( Japanese : 戦場のヴァルキュリア3 ) is a tactical role @-@ playing \
video game developed by Sega . The game began development in 2010 , carrying over a large portion of the work done \
on Valkyria Chronicles II . It met with positive sales in Japan , and was praised by both Japanese and western \
critics . 
 
 = = Gameplay = = 
 
 As with previous Valkyira Chronicles games , the game is a tactical role @-@ playing game where players take \
control of a military unit and take part in missions against enemy forces . The game 's story was 1 @,@ 200 pages \
long , and " the characters " were drawn by Raita Honjou . 
 
 = Tower Building of the Little Rock Arsenal = 
 
 The Tower Building of the Little Rock Arsenal , also known as U.S. Arsenal Building , is a building located in \
MacArthur Park in downtown Little Rock , Arkansas . Built in 1840 , it was part of Little Rock 's first military \
installation . It was 12 @.@ 5 m tall ; its walls are 2 ft ( 0 @.@ 61 m ) thick . 
 
 = Cicely Mary Barker = 
 
 Cicely Mary Barker ( 28 June 1895 – 16 February 1973 ) was an English illustrator best known for a series of \
fantasy illustrations depicting fairies and flowers . Barker 's art education began in girlhood with \
correspondence courses and instruction at the Croydon School of Art . 
"""

LMEVAL_TASK = """
task: wikitext_local
include: {wikitext_yaml}
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files:
    test: {docs}
training_split: null
validation_split: null
test_split: test
"""


def test_the_raw_file_splits_into_articles_at_top_level_headings():
    pages = documents(RAW)
    assert len(pages) == 3 and pages[0].startswith(" = Valkyria Chronicles = ") and "= = Gameplay = =" in pages[0]
    assert pages[2].startswith(" = Cicely Mary Barker = ")
    assert "role-playing" in detokenize(pages[0]) and "1,200 pages" in detokenize(pages[0])


def test_rolling_windows_score_every_token_once_with_as_much_context_as_fits():
    tokens = list(range(10, 33))  # 23 tokens, windows of 8
    windows = rolling_windows(tokens, prefix=0, max_len=8)
    assert [targets for _, targets in windows] == [tokens[0:8], tokens[8:16], tokens[16:23]]
    assert windows[0][0] == [0, *tokens[:7]]  # the first token after the end-of-text token
    assert windows[1][0] == tokens[7:15] and windows[2][0] == tokens[14:22]  # the last window reads 8 tokens too
    assert all(len(inputs) <= 8 for inputs, _ in windows)


def test_document_perplexity_equals_lm_eval_harness_on_the_same_model_and_documents(local_checkpoint, tmp_path,
                                                                                      monkeypatch):
    lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is a test dependency: pip install -e '.[dev]'")
    from pathlib import Path

    from lm_eval.tasks import TaskManager

    from gpt2compress.build.tokenizer import load_tokenizer
    from gpt2compress.runtimes.pytorch import load_model

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pages = documents(RAW)
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"page": page}) + "\n" for page in pages))
    wikitext_yaml = Path(lm_eval.__file__).parent / "tasks" / "wikitext" / "wikitext.yaml"
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "wikitext_local.yaml").write_text(LMEVAL_TASK.format(wikitext_yaml=wikitext_yaml, docs=docs))
    judged = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={local_checkpoint},dtype=float32",
                                     tasks=["wikitext_local"], device="cpu", batch_size=1, log_samples=True,
                                     task_manager=TaskManager(include_path=str(tmp_path / "tasks")))
    model, tokenizer = load_model(local_checkpoint).eval(), load_tokenizer(local_checkpoint)
    limit = model.config.n_positions
    assert len(tokenizer.encode(detokenize(pages[0]))) > 2 * limit  # the rolling windows are exercised
    for sample in judged["samples"]["wikitext_local"]:
        theirs = float(sample["filtered_resps"][0])
        assert loglikelihood(model, tokenizer, pages[sample["doc_id"]], limit) == pytest.approx(theirs, rel=1e-4)
    ours, summary = score(model, tokenizer, pages, limit, progress=False), judged["results"]["wikitext_local"]
    for name in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert getattr(ours, name) == pytest.approx(summary[f"{name},none"], rel=1e-4)
    assert math.isclose(ours.bits_per_byte, math.log2(ours.byte_perplexity))


def test_the_bench_scores_by_documents_names_the_protocol_and_never_compares_across_protocols(local_checkpoint,
                                                                                               tmp_path, capsys):
    from gpt2compress.cli import main
    from gpt2compress.history.runs import load_run

    from helpers import run_bench

    budgets = tmp_path / "open.toml"
    budgets.write_text("version = 1\n")
    out = tmp_path / "docs.json"
    done = run_bench(local_checkpoint, out, "--stages", "fp32,int8-scratch", "--eval-protocol", "documents",
                     "--budgets", str(budgets), "--rounds", "3")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (row,) = [r for r in load_run(out).of("forward") if r.variant == "int8-scratch"]
    assert row.eval_protocol == "documents" and row.bits_per_byte == pytest.approx(math.log2(row.byte_perplexity))
    assert row.perplexity > 1 and row.ratios["perplexity"] > 0  # word perplexity, against fp32's by the same protocol
    data = json.loads(out.read_text())
    for bench in data["benchmarks"]:  # the same rows, as if scored by windows, one twice as perplexed
        bench["extra_info"].update(eval_protocol="windows", perplexity=bench["extra_info"]["perplexity"] * 2)
    windows = tmp_path / "windows.json"
    windows.write_text(json.dumps(data))
    capsys.readouterr()
    main(["compare", str(out), str(windows)])
    compared = capsys.readouterr().out
    assert "forward/cpu/int8-scratch" in compared and " perplexity " not in compared  # two protocols: not compared
    for bench in data["benchmarks"]:
        bench["extra_info"]["eval_protocol"] = "documents"
    windows.write_text(json.dumps(data))
    assert main(["compare", str(out), str(windows)]) == 1  # the same protocol: the doubled perplexity is caught
    assert " perplexity " in capsys.readouterr().out
