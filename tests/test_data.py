import pytest

from gpt2compress.build.data import (DataSourceError, calibration_windows, eval_windows, load_corpus, paragraphs,
                                         train_windows)
from gpt2compress.build.tokenizer import train_bpe


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("embedded")


@pytest.fixture(scope="module")
def tokenizer(corpus, tmp_path_factory):
    return train_bpe(corpus.train_text[:50_000], 300, tmp_path_factory.mktemp("tok"))


def test_embedded_corpus_needs_no_file_and_holds_out_eval(corpus):
    assert len(corpus.train_text) > 300_000 and len(corpus.eval_text) > 30_000
    train = set(paragraphs(corpus.train_text))
    assert not train & set(paragraphs(corpus.eval_text))


def test_paragraphs_drop_headings_and_fragments():
    text = " = Title = \n \n short\n \n" + "a long enough line of text " * 3 + "\n continues here\n \n"
    assert paragraphs(text) == [("a long enough line of text " * 3).strip() + " continues here"]


def test_wikitext_is_one_paragraph_per_line_even_without_blank_lines(tmp_path):
    """The offline WikiText-2 copy has no blank lines between paragraphs: each line must still be a sample."""
    body = "a paragraph about something, long enough to count as a sample {}"
    lines = [" = Title = "] + [f" {body.format(i)} " for i in range(5)] + [" = = Section = = ", f" {body.format(5)} "]
    (tmp_path / "wiki.test.raw").write_text("\r\n".join(lines) + "\r\n")
    (tmp_path / "wiki.valid.tokens").write_text("\n \n".join(lines))
    corpus = load_corpus(tmp_path)
    assert corpus.paragraphs(corpus.eval_text) == [body.format(i) for i in range(6)]
    assert corpus.paragraphs(corpus.train_text) == [body.format(i) for i in range(6)]


def test_eval_windows_fixed_length_right_padded_and_cached(corpus, tokenizer):
    w = eval_windows(corpus, tokenizer, seq_len=64, max_samples=20)
    assert w.input_ids.shape == (20, 64)
    lengths = w.attention_mask.sum(1)
    for row, n in enumerate(lengths.tolist()):
        assert w.attention_mask[row, :n].all() and not w.attention_mask[row, n:].any()
    assert (w.labels[w.attention_mask == 0] == -100).all()
    again = eval_windows(corpus, tokenizer, seq_len=64, max_samples=20)
    assert again.key == w.key and (again.input_ids == w.input_ids).all()


def test_calibration_is_filtered_for_length(corpus, tokenizer):
    c = calibration_windows(corpus, tokenizer, seq_len=64, n_samples=16, min_tokens=40)
    assert len(c) == 16 and int(c.attention_mask.sum(1).min()) >= 40


def test_train_and_eval_differ(corpus, tokenizer):
    assert train_windows(corpus, tokenizer, 32, 10).key != eval_windows(corpus, tokenizer, 32, 10).key


def test_wikitext_dir(tmp_path):
    (tmp_path / "wiki.test.raw").write_text(" = A = \n \n" + "evaluation text here. " * 5 + "\n")
    (tmp_path / "wiki.valid.tokens").write_text("training text with <unk> here. " * 5 + "\n")
    corpus = load_corpus(tmp_path)
    assert "evaluation" in corpus.eval_text and "training" in corpus.train_text


def test_missing_data_dir_names_the_fix(tmp_path):
    with pytest.raises(DataSourceError, match="--data"):
        load_corpus(tmp_path / "nope")


def test_dir_without_wikitext_files_names_them(tmp_path):
    with pytest.raises(DataSourceError, match="wiki.test.raw"):
        load_corpus(tmp_path)


@pytest.mark.parametrize("empty", ["wiki.test.raw", "wiki.valid.tokens"])
def test_an_empty_wikitext_file_is_named_before_anything_trains(tmp_path, empty):
    text = "\n".join(f" A paragraph of WikiText , number {i} , long enough to be kept as one . " for i in range(20))
    for name in ("wiki.test.raw", "wiki.valid.tokens"):
        (tmp_path / name).write_text("" if name == empty else text)
    with pytest.raises(DataSourceError, match=f"{empty} has no paragraph of ≥50 characters: it is empty"):
        load_corpus(tmp_path)


def test_env_var_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2COMPRESS_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataSourceError, match="missing"):
        load_corpus()
