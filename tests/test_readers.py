import json
import re

import pytest

from conftest import sentiment_examples, tagging_sentences, write_conll, write_jsonl
from kdexam.config import DataConfig
from kdexam.data.readers import Example, read_conll, read_file
from kdexam.data.splits import infer_task, load_data
from kdexam.errors import KdexamError


def cfg(name, **kw):
    return DataConfig(name=str(name), **kw)


def test_csv_tsv_jsonl_read_the_same(tmp_path):
    rows = [{"sentence": "good film", "y": "pos"}, {"sentence": 'a "quoted", text', "y": "neg"}]
    (tmp_path / "d.csv").write_text('sentence,y\ngood film,pos\n"a ""quoted"", text",neg\n')
    (tmp_path / "d.tsv").write_text("sentence\ty\ngood film\tpos\na \"quoted\", text\tneg\n")
    write_jsonl(tmp_path / "d.jsonl", rows)
    c = DataConfig(text_column="sentence", label_column="y")
    for ext in ("csv", "tsv", "jsonl"):
        ex = read_file(tmp_path / f"d.{ext}", c)
        assert [(e.text, e.label) for e in ex] == [("good film", "pos"), ('a "quoted", text', "neg")], ext


def test_json_array_and_pairs(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps([{"text": "a", "text_pair": "b", "label": 1}]))
    ex = read_file(p, DataConfig())
    assert (ex[0].text, ex[0].text_pair, ex[0].label) == ("a", "b", 1)


def test_conll_reader(tmp_path):
    p = tmp_path / "d.conll"
    p.write_text("-DOCSTART- -X- O\n\nEU B-ORG\nrejects O\n\n\nGerman B-MISC\n")
    ex = read_conll(p, DataConfig())
    assert [e.text for e in ex] == [["EU", "rejects"], ["German"]]
    assert [e.label for e in ex] == [["B-ORG", "O"], ["B-MISC"]]
    # hashtag tokens are tokens, CoNLL-U comment lines are not
    p.write_text("# text = #love it\n#love\tNNP\nit\tPRP\n")
    assert read_conll(p, DataConfig())[0].text == ["#love", "it"]
    # a multi-column CoNLL file: token first, tag last
    p.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n")
    assert read_conll(p, DataConfig())[0].label == ["B-ORG", "O"]


def test_conll_sentence_starting_with_hash_token(tmp_path):
    # '# NN O' at a sentence's start is the token '#' (shaped like the file's rows, a known tag);
    # '# sent_id = 3' and '# newdoc' are comments
    p = tmp_path / "d.conll"
    p.write_text("EU NNP B-ORG\nrejects VBZ O\n\n# NN O\nwins VBZ O\n\n# sent_id = 3\nok JJ O\n\n# newdoc\nfine JJ O\n")
    ex = read_conll(p, DataConfig())
    assert [e.text for e in ex] == [["EU", "rejects"], ["#", "wins"], ["ok"], ["fine"]]
    assert ex[1].label == ["O", "O"]
    # a comment after such a row is no token row (its column count is none of the file's): skipped, not
    # read as the token '#' tagged with its last word; a hashtag row with a tag only hashtags have stays
    p.write_text("# NN O O\n# text = x y z\ngood JJ B-NP O\n\n#love HT B-NP HT\nit PRP B-NP O\n#tbt HT B-NP HT\n")
    ex = read_conll(p, DataConfig())
    assert [(e.text, e.label) for e in ex] == [(["#", "good"], ["O", "O"]), (["#love", "it", "#tbt"], ["HT", "O", "HT"])]


def test_predict_conll_words_sentence_starting_with_hash(tmp_path):
    from kdexam.inference.inputs import _read_conll_words

    p = tmp_path / "words.conll"
    p.write_text("EU\nrejects\n\n#\nwins\n\n# text = ok\nok\n\n#sent-1\nbar\n")
    assert _read_conll_words(p) == [{"tokens": ["EU", "rejects"]}, {"tokens": ["#", "wins"]}, {"tokens": ["ok"]}, {"tokens": ["bar"]}]


@pytest.mark.parametrize("content,match", [
    ("text,label\nhello\n", "no value in label column"),
    ("text,label\n,pos\n", "empty text"),
    ("txt,label\nhello,pos\n", r"no column 'text' \(it has: txt, label\); pass --text-column NAME. Did you mean 'txt'"),
    ("text,label\nhello,pos,extra\n", "more fields than the header"),
    ("", "is empty"),
])
def test_malformed_csv(tmp_path, content, match):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(KdexamError, match=match):
        read_file(p, DataConfig())


def test_malformed_jsonl_conll_encoding(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    with pytest.raises(KdexamError, match="line 2 is not valid JSON"):
        read_file(p, DataConfig())
    p.write_text('["not", "an object"]\n')
    with pytest.raises(KdexamError, match="not a JSON object"):
        read_file(p, DataConfig())
    c = tmp_path / "bad.conll"
    c.write_text("word\tTAG\nlonely\n")
    with pytest.raises(KdexamError, match="line 2 is not 'token<TAB>tag'"):
        read_file(c, DataConfig())
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,pos\n".encode("latin-1"))
    with pytest.raises(KdexamError, match="not valid UTF-8"):
        read_file(latin, DataConfig())
    with pytest.raises(KdexamError, match="unknown extension"):
        read_file(tmp_path / "x.xlsx", DataConfig())
    lines = tmp_path / "reviews.txt"
    lines.write_text("great\n")  # one text per line is not CoNLL: the error says what to give instead
    with pytest.raises(KdexamError, match="A .txt file is read as CoNLL.*--unlabelled"):
        read_file(lines, DataConfig())


def test_broken_manifest_is_a_sentence(tmp_path):
    from kdexam.data.readers import read_directory

    write_jsonl(tmp_path / "train.jsonl", sentiment_examples(10))
    (tmp_path / "dataset.json").write_text("{bad")
    with pytest.raises(KdexamError, match="not a valid dataset manifest.*remove it"):
        read_directory(tmp_path, DataConfig())


def test_directory_with_splits_and_label_vocab(sentiment_dir):
    d = load_data(cfg(sentiment_dir))
    assert d.task.kind == "classification" and d.task.labels == ["neg", "pos"]
    assert (len(d.train), len(d.validation), len(d.test)) == (200, 40, 60)
    assert d.eval_split == "test" and not d.notes


def test_validation_carved_stratified_and_the_same_whatever_the_runs_seed(tmp_path):
    """The carve used the run's seed: a student (seed 1) of a teacher (seed 42) was scored on
    sentences the teacher had trained on (16 of 20 in the reviewer's case)."""
    p = write_jsonl(tmp_path / "train.jsonl", sentiment_examples(100))
    a, b = load_data(cfg(p), seed=1), load_data(cfg(p), seed=1)
    assert [e.text for e in a.validation] == [e.text for e in b.validation]
    assert len(a.validation) == 10 and len(a.train) == 90
    assert sorted(e.label for e in a.validation) == ["neg"] * 5 + ["pos"] * 5
    assert a.test is None and a.eval_split == "validation"
    assert "carved" in a.notes[0] and "seed 42" in a.notes[0]
    for seed in (2, 42):
        c = load_data(cfg(p), seed=seed)
        assert [e.text for e in c.validation] == [e.text for e in a.validation]
        assert {e.text for e in c.train} == {e.text for e in a.train}  # (in another order: the run's shuffle)
    regression = write_jsonl(tmp_path / "score.jsonl", [{"text": f"text {i}", "label": i / 7} for i in range(60)])
    assert ([e.text for e in load_data(cfg(regression), seed=1).validation]
            == [e.text for e in load_data(cfg(regression), seed=5).validation])
    # the same targets read as classes (a classifier teacher's task) said as such, not as "too small"
    with pytest.raises(KdexamError, match=r"read as classification.*\(60 labels in 60 examples\).*regression targets"):
        load_data(cfg(regression).model_copy(update={"task": "classification"}), seed=1)
    texts = write_jsonl(tmp_path / "texts.jsonl", [{"text": f"text {i}", "label": f"a review {i}"} for i in range(60)])
    with pytest.raises(KdexamError, match=r"60 labels in 60 examples.*check that --label-column names the label column"):
        load_data(cfg(texts), seed=1)  # (a label column that holds the texts: no talk of regression)


def test_a_regression_eval_split_of_one_target_is_read_with_a_note(tmp_path):
    """Pearson's r on one example was reported as 0.0; it is undefined (NaN), and the data says so.
    A split of one example is read (a small file carves a one-row validation split)."""
    d = tmp_path / "d"
    d.mkdir()
    write_jsonl(d / "train.jsonl", [{"text": f"text {i}", "label": i / 7} for i in range(20)])
    write_jsonl(d / "validation.jsonl", [{"text": f"held {i}", "label": i / 3} for i in range(5)])
    assert not any("undefined" in n for n in load_data(cfg(d, max_eval=2)).notes)
    one = load_data(cfg(d, max_eval=1))
    assert len(one.validation) == 1
    assert any(n.startswith("the validation split holds 1 example(s) with one target value") for n in one.notes)
    small = write_jsonl(tmp_path / "small.jsonl", [{"text": f"text {i}", "label": i / 7} for i in range(10)])
    carved = load_data(cfg(small))
    assert (len(carved.train), len(carved.validation)) == (9, 1) and any("undefined (NaN)" in n for n in carved.notes)


def test_the_label_set_is_the_whole_trains_not_the_max_train_subsets(tmp_path):
    rows = [{"text": f"common {i}", "label": "ab"[i % 2]} for i in range(40)] + [{"text": "the rare one", "label": "rare"}]
    d = tmp_path / "d"
    d.mkdir()
    write_jsonl(d / "train.jsonl", rows)
    write_jsonl(d / "validation.jsonl", [{"text": "v rare", "label": "rare"}, {"text": "v a", "label": "a"}])
    for seed in (1, 2, 3):
        data = load_data(cfg(d, max_train=10), seed=seed)
        assert data.task.labels == ["a", "b", "rare"] and len(data.train) == 10


def test_json_1_and_1_0_are_one_class(tmp_path):
    d, b = tmp_path / "d", tmp_path / "b"
    d.mkdir()
    b.mkdir()
    write_jsonl(d / "train.jsonl", [{"text": f"row {i}", "label": [1, 0, 1.0, 0.0][i % 4]} for i in range(40)])
    (d / "test.csv").write_text("text,label\nx,1\ny,0\n", encoding="utf-8")
    assert load_data(cfg(d)).task.labels == ["0", "1"]
    write_jsonl(b / "train.jsonl", [{"text": f"row {i}", "label": [0.0, 1.0][i % 2]} for i in range(40)])
    assert load_data(cfg(b, task="classification")).task.labels == ["0.0", "1.0"]  # as runs before named them


def test_a_text_pair_in_a_later_json_row_is_not_dropped(tmp_path):
    p = write_jsonl(tmp_path / "train.jsonl", [{"text": "a cat sat", "label": "x"}, {"text": "q", "text_pair": "a", "label": "y"}])
    with pytest.raises(KdexamError, match="has a second text \\(text_pair\\) in some rows and not in others"):
        load_data(cfg(p))


def test_a_tsv_text_starting_with_a_quote_keeps_its_rows_apart(tmp_path):
    """CSV quote rules let a text opening with '"' swallow the rows after it into one row with the
    last row's label; a TSV that breaks them is read with no quoting (as GLUE's files are written)."""
    p = tmp_path / "train.tsv"
    p.write_text('text\tlabel\n"Wow, great\tpos\nnice one\tpos\nawful film\tneg\nbad movie" indeed\tneg\n'
                 '"Hello," she said.\tpos\nplain\tneg\n', encoding="utf-8")
    rows = [(e.text, e.label) for e in read_file(p, cfg(p))]
    assert rows == [('"Wow, great', "pos"), ("nice one", "pos"), ("awful film", "neg"), ('bad movie" indeed', "neg"),
                    ('"Hello," she said.', "pos"), ("plain", "neg")]
    stray = tmp_path / "stray.tsv"  # a stray quote whose match ends a field rows later: no quote error, rows merged
    stray.write_text('text\tlabel\n"Hello there\t1\nsecond row\t0\nthird ends with quote"\t1\nfourth\t0\n', encoding="utf-8")
    assert [e.text for e in read_file(stray, cfg(stray))] == ['"Hello there', "second row", 'third ends with quote"', "fourth"]
    quoted = tmp_path / "quoted.tsv"  # a well-quoted TSV keeps its quote rules: a tab inside a quoted field
    quoted.write_text('text\tlabel\n"a\tb ""c"""\tpos\nd\tneg\n', encoding="utf-8")
    assert [(e.text, e.label) for e in read_file(quoted, cfg(quoted))] == [('a\tb "c"', "pos"), ("d", "neg")]
    broken = tmp_path / "broken.csv"  # a CSV must follow them: an error, not rows merged
    broken.write_text('text,label\n"Oops,pos\nrow two,neg\nrow three",neg\n"x" y,pos\n', encoding="utf-8")
    with pytest.raises(KdexamError, match="is not valid CSV"):
        read_file(broken, cfg(broken))


def test_space_separated_conll_keeps_a_no_break_space_inside_its_token(tmp_path):
    p = tmp_path / "train.conll"
    p.write_text("Il PRON\ncoûte VERB\n10\u00a0000 NUM\neuros NOUN\n", encoding="utf-8")
    assert read_file(p, cfg(p, task="token-classification"))[0].text == ["Il", "coûte", "10\u00a0000", "euros"]


def test_max_train_takes_first_n_after_seeded_shuffle(sentiment_dir):
    full = load_data(cfg(sentiment_dir), seed=3)
    sub = load_data(cfg(sentiment_dir, max_train=25), seed=3)
    assert [e.text for e in sub.train] == [e.text for e in full.train[:25]]
    assert [e.text for e in sub.validation] == [e.text for e in full.validation]


def test_unseen_label_is_a_clear_error(sentiment_dir):
    write_jsonl(sentiment_dir / "test.jsonl", [{"text": "hm", "label": "neutral"}])
    with pytest.raises(KdexamError, match=r"Label 'neutral' appears in the test split .* never in train"):
        load_data(cfg(sentiment_dir))


def test_task_inference(tmp_path):
    reg = write_jsonl(tmp_path / "reg.jsonl", [{"text": f"t{i}", "label": i / 7} for i in range(30)])
    assert load_data(cfg(reg)).task.kind == "regression"
    assert load_data(cfg(reg)).task.primary_metric == "pearson"
    conll = write_conll(tmp_path / "train.conll", tagging_sentences(30))
    t = load_data(cfg(conll))
    assert t.task.kind == "token-classification" and t.task.labels == ["ADJ", "DET", "NOUN"]


def test_regression_with_non_numeric_label(tmp_path):
    p = write_jsonl(tmp_path / "r.jsonl", [{"text": "a", "label": "x"}] * 20)
    with pytest.raises(KdexamError, match="not a number"):
        load_data(cfg(p, task="regression"))


def test_wrong_task_for_data(tmp_path, sentiment_dir):
    with pytest.raises(KdexamError, match="not in CoNLL form"):
        load_data(cfg(sentiment_dir, task="token-classification"))
    conll = write_conll(tmp_path / "train.conll", tagging_sentences(20))
    with pytest.raises(KdexamError, match="--task token-classification"):
        load_data(cfg(conll, task="classification"))


def test_missing_path_and_unknown_name(tmp_path):
    with pytest.raises(KdexamError, match="does not exist"):
        load_data(cfg(tmp_path / "missing.csv"))
    with pytest.raises(KdexamError, match="did you mean 'movie-sentiment'"):
        load_data(cfg("movie-sentimnt"))


def test_unlabelled_data_and_single_label(tmp_path):
    p = write_jsonl(tmp_path / "u.jsonl", [{"text": f"line {i}"} for i in range(20)])
    with pytest.raises(KdexamError, match="has no labels"):
        load_data(cfg(p))
    p = write_jsonl(tmp_path / "one.jsonl", [{"text": f"line {i}", "label": "x"} for i in range(20)])
    with pytest.raises(KdexamError, match="only one label"):
        load_data(cfg(p))


def test_bad_primary_metric(sentiment_dir):
    with pytest.raises(KdexamError, match="Primary metric 'pearson' does not exist for classification"):
        load_data(cfg(sentiment_dir, primary_metric="pearson"))


def test_saved_hf_dataset_directory(tmp_path):
    import datasets

    rows = sentiment_examples(30)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    d = load_data(cfg(tmp_path / "saved"))
    assert len(d.train) + len(d.validation) == 30 and d.task.labels == ["neg", "pos"]


def test_infer_task_rules():
    assert infer_task([Example("a", None, 0.5), Example("b", None, 1.0)]) == "regression"
    assert infer_task([Example("a", None, "1"), Example("b", None, "0")] * 10) == "classification"
    assert infer_task([Example("a", None, "pos")]) == "classification"
    assert infer_task([Example(["a"], None, ["X"])]) == "token-classification"
    # integer codes: a small 3-class or 12-intent file is classification (it was regression), a 0-100 score is not
    assert infer_task([Example(f"s{i}", None, i % 3) for i in range(25)]) == "classification"
    assert infer_task([Example(f"s{i}", None, i % 12) for i in range(100)]) == "classification"
    assert infer_task([Example(f"s{i}", None, i % 101) for i in range(300)]) == "regression"


def test_lines_end_at_line_breaks_only(tmp_path):
    """U+2028, U+0085 and a form feed inside a text stay in it (``str.splitlines`` would cut there),
    and a quoted CSV field may span lines."""
    p = tmp_path / "u.jsonl"
    p.write_text(json.dumps({"text": "great film\u2028really", "label": "pos"}, ensure_ascii=False) + "\r\n"
                 + json.dumps({"text": "dull\x0cplot\x85", "label": "neg"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [e.text for e in read_file(p, DataConfig())] == ["great film\u2028really", "dull\x0cplot\x85"]
    c = tmp_path / "multi.csv"
    c.write_text('text,label\n"line one\nline two",pos\n"a\u2028b",neg\nplain,pos\n', encoding="utf-8")
    assert [e.text for e in read_file(c, DataConfig())] == ["line one\nline two", "a\u2028b", "plain"]
    c.write_text('text,label\n"line one\nline two",pos\nhello\n', encoding="utf-8")
    with pytest.raises(KdexamError, match="line 4 has no value in label column"):  # (the file's own line number)
        read_file(c, DataConfig())


def test_hash_token_inside_a_conll_sentence_is_a_word(tmp_path):
    p = tmp_path / "t.conll"
    p.write_text("# sent_id = 1\nI O\nlove O\n# O\nNLP B-MISC\n\n# text = next\nok O\n", encoding="utf-8")
    assert [(e.text, e.label) for e in read_conll(p, DataConfig())] == [
        (["I", "love", "#", "NLP"], ["O", "O", "O", "B-MISC"]), (["ok"], ["O"])]


def test_lone_surrogate_is_a_sentence(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"text": "good \\ud83d film", "label": "pos"}\n', encoding="utf-8")
    with pytest.raises(KdexamError, match="line 1 holds half of a UTF-16 surrogate pair"):
        read_file(p, DataConfig())


def test_held_out_splits_must_be_labelled_and_shaped_like_train(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", sentiment_examples(30))
    write_jsonl(tmp_path / "test.jsonl", [{"text": r["text"]} for r in sentiment_examples(5, seed=1)])
    with pytest.raises(KdexamError, match="The test split of .* has no label \\(column 'label'\\); label every test"):
        load_data(cfg(tmp_path))
    write_jsonl(tmp_path / "test.jsonl", [dict(r, text_pair="x") for r in sentiment_examples(5, seed=1)])
    with pytest.raises(KdexamError, match="The test split .* has a second text .* and the train split does not"):
        load_data(cfg(tmp_path))


def test_hf_no_label_minus_one_is_not_a_class(tmp_path):
    """``datasets`` writes -1 for "no label" (GLUE's test splits): a test split of -1 is left out,
    with a note, instead of every label becoming the last class."""
    import datasets

    rows = sentiment_examples(40)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    as_ids = [{"text": r["text"], "label": ["neg", "pos"].index(r["label"])} for r in rows]
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list(as_ids[:30], features=features),
        "validation": datasets.Dataset.from_list(as_ids[30:], features=features),
        "test": datasets.Dataset.from_list([dict(r, label=-1) for r in as_ids[30:]], features=features),
    }).save_to_disk(str(tmp_path / "glue-like"))
    d = load_data(cfg(tmp_path / "glue-like"))
    assert d.test is None and d.eval_split == "validation" and any("test split left out" in n for n in d.notes)
    datasets.DatasetDict({"train": datasets.Dataset.from_list([dict(r, label=-1) for r in as_ids[:2]] + as_ids[2:30],
                                                              features=features)}).save_to_disk(str(tmp_path / "holes"))
    with pytest.raises(KdexamError, match="row 0 has no value in label column"):
        load_data(cfg(tmp_path / "holes"))


def test_hf_tag_id_minus_one_is_not_the_last_tag(tmp_path):
    import datasets

    names = ["O", "B-PER", "I-PER"]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    rows = [{"tokens": ["Ann", "runs"], "ner_tags": [1, 0]}, {"tokens": ["Bo", "Li"], "ner_tags": [1, 2]}] * 5
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows, features=features),
                          "test": datasets.Dataset.from_list([{"tokens": ["x", "y"], "ner_tags": [-1, -1]}], features=features),
                          }).save_to_disk(str(tmp_path / "ner"))
    with pytest.raises(KdexamError, match="test row 0 has tag id -1, which names no tag"):
        load_data(cfg(tmp_path / "ner"))


def test_integer_labels_read_as_regression_say_so(tmp_path):
    rows = [{"text": f"text number {i}", "label": i % 25} for i in range(75)]  # (i % 3 is three classes since 12-03)
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "validation.jsonl", [{"text": f"held {i}", "label": i % 25} for i in range(25)])
    d = load_data(cfg(tmp_path))
    assert d.task.kind == "regression" and any("pass --task classification" in n for n in d.notes)
    d = load_data(cfg(tmp_path, task="classification"))
    assert d.task.kind == "classification" and not any("inferred" in n for n in d.notes)


def test_span_metric_needs_entity_tags(tmp_path):
    write_conll(tmp_path / "pos.conll", tagging_sentences(20))  # ADJ / NOUN / DET
    assert load_data(cfg(tmp_path / "pos.conll")).task.primary_metric == "accuracy"
    with pytest.raises(KdexamError, match="scores entity spans, but the tags .* are not BIO"):
        load_data(cfg(tmp_path / "pos.conll", primary_metric="span_f1"))


def test_conllu_is_read_by_its_form_and_upos_columns(tmp_path):
    """A .conllu was read as its ID and MISC columns (words '1', '2', tags '_', 'SpaceAfter=No'),
    and its multiword-token rows as words; 'kdexam predict' read the same file by FORM."""
    p = tmp_path / "t.conllu"
    p.write_text("# sent_id = 1\n1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\tNN\t_\t0\troot\t_\tSpaceAfter=No\n\n"
                 "1-2\tdel\t_\t_\t_\t_\t_\t_\t_\t_\n1\tde\tde\tADP\tIN\t_\t2\tcase\t_\t_\n2\tel\tel\tDET\tDT\t_\t0\troot\t_\t_\n"
                 "2.1\tx\tx\tNOUN\tNN\t_\t_\t_\t_\t_\n\n", encoding="utf-8")
    got = read_conll(p, cfg(p))
    assert [(e.text, e.label) for e in got] == [(["The", "cat"], ["DET", "NOUN"]), (["de", "el"], ["ADP", "DET"])]
    xpos = read_conll(p, cfg(p, token_column=1, tag_column=4))  # explicit columns are the user's
    assert xpos[0].label == ["DT", "NN"]


def test_awkward_but_valid_files_are_read(tmp_path):
    """A text over csv's 131,072-character field limit was refused as bad quoting; a tagging .tsv
    with --task token-classification was read as a table ('no column text'); general distillation's
    texts refused a row without a label although labels are ignored there."""
    import csv

    from kdexam.data.splits import load_texts

    with open(tmp_path / "long.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([["word " * 30000, "pos"], ["short", "neg"]] * 5)
    assert len(read_file(tmp_path / "long.csv", cfg(tmp_path / "long.csv"))[0].text) == 150000
    (tmp_path / "ner.tsv").write_text("".join(f"W{i}\tB-PER\nsaid\tO\n\n" for i in range(30)), encoding="utf-8")
    tagged = read_file(tmp_path / "ner.tsv", cfg(tmp_path / "ner.tsv", task="token-classification"))
    assert len(tagged) == 30 and tagged[0].label == ["B-PER", "O"]
    (tmp_path / "p.csv").write_text("text,label\nhello there,pos\nsecond text,\nthird one,neg\n", encoding="utf-8")
    assert sorted(e.text for e in [*load_texts(cfg(tmp_path / "p.csv"))[0], *load_texts(cfg(tmp_path / "p.csv"))[1]]) == [
        "hello there", "second text", "third one"]
    (tmp_path / "semi.csv").write_text("text;label\ngood;pos\nbad;neg\n", encoding="utf-8")
    with pytest.raises(KdexamError, match="Its header looks separated by ';'"):
        read_file(tmp_path / "semi.csv", cfg(tmp_path / "semi.csv"))


def test_a_saved_tagging_dataset_without_a_known_tag_column_is_a_sentence(tmp_path):
    import datasets
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"tokens": [["a", "b"], ["c"]] * 10,
                                                               "labels": [["O", "B-X"], ["O"]] * 10})}).save_to_disk(tmp_path / "hf")
    with pytest.raises(KdexamError, match=r"has no tag column kdexam knows \(it has: tokens, labels\); pass --label-column NAME"):
        load_data(cfg(tmp_path / "hf"))
    assert load_data(cfg(tmp_path / "hf", label_column="labels")).train[0].label in (["O", "B-X"], ["O"])


def test_a_carved_tagging_split_leaves_every_tag_in_train(tmp_path):
    """One CoNLL file whose rare tag fell into kdexam's own carved validation was refused ('never in
    train; remove it from that split'): a split the user has no file of."""
    import random

    from kdexam.data.splits import CARVE_SEED

    order = list(range(30))
    random.Random(CARVE_SEED).shuffle(order)  # the carve's own shuffle: order[0] is carved
    rare = order[0]
    write_conll(tmp_path / "rare.conll", [([f"W{i}", "said"], ["B-RARE" if i == rare else "B-PER", "O"]) for i in range(30)])
    d = load_data(cfg(tmp_path / "rare.conll"))
    assert "B-RARE" in d.task.labels and len(d.validation) == 2 and len(d.train) == 28
    assert not any("B-RARE" in e.label for e in d.validation) and any("B-RARE" in e.label for e in d.train)


def test_another_tools_dataset_json_does_not_hide_the_split_files(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": f"good {i}", "label": "ab"[i % 2]} for i in range(20)])
    write_jsonl(tmp_path / "test.jsonl", [{"text": "fine", "label": "a"}])
    (tmp_path / "dataset.json").write_text('{"name": "mine", "task": "text-classification"}', encoding="utf-8")
    d = load_data(cfg(tmp_path))  # was: "has no train.csv/.tsv/.jsonl/.conll file"
    assert len(d.train) + len(d.validation) == 20 and len(d.test) == 1


def test_a_split_file_is_named_exactly_and_only_one_per_split(tmp_path):
    """_find_split_files took the first sorted match of train.*: train.backup.csv (an old copy) was
    read instead of train.csv without a word; train.csv beside train.jsonl took one of them."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "train.csv").write_text("text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(5)))
    (d / "train.backup.csv").write_text("text,label\n" + "OLD VERSION,pos\nOLD VERSION,neg\n")
    (d / "validation.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    data = load_data(cfg(d))
    assert len(data.train) == 10 and not any("OLD" in e.text for e in data.train)
    (d / "dev.jsonl").write_text('{"text": "good", "label": "pos"}\n')
    with pytest.raises(KdexamError, match=r"has 2 validation files \(dev.jsonl, validation.csv\); keep one"):
        load_data(cfg(d))


def test_one_label_spelled_two_ways_is_refused_not_made_two_classes(tmp_path):
    """JSON true beside "true", CSV 1 beside 1.0, "positive " beside "positive" became two classes
    each (a two-class task trained as four)."""
    many = 10  # rows of each spelling (a validation split is carved from the file by class)
    cases = {
        "bools.jsonl": ('{"text": "a", "label": true}\n{"text": "b", "label": "true"}\n{"text": "c", "label": false}\n',
                        "spells one label 2 ways ('true', true (a JSON boolean))"),
        "numbers.csv": ("a,1\nb,1.0\nc,0\n", "spells one label 2 ways ('1', '1.0')"),
        "spaces.csv": ('a,positive\nb,"positive "\nc,negative\n', "spells one label 2 ways ('positive ', 'positive')"),
    }
    for name, (rows, said) in cases.items():
        (tmp_path / name).write_text(("text,label\n" if name.endswith(".csv") else "") + rows * many)
        with pytest.raises(KdexamError, match=re.escape(said)):
            load_data(cfg(tmp_path / name))
    (tmp_path / "ok.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 1.0}\n{"text": "c", "label": 0}\n' * many)
    assert sorted({e.label for e in load_data(cfg(tmp_path / "ok.jsonl")).train}) == ["0", "1"]  # (JSON 1 and 1.0: one class)


def test_words_and_tags_of_different_counts_are_refused(tmp_path):
    """A dataset with a word short of tags was a traceback (IndexError at alignment); one with a tag
    too many trained with it dropped."""
    import datasets

    for n, tags in enumerate((["O", "B-PER"], ["O", "B-PER", "O", "O"])):
        rows = {"tokens": [["Ann", "met", "Bob"], ["I", "saw", "Kim"]] * 5, "tags": [["B-PER", "O", "B-PER"], tags] * 5}
        datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / f"d{n}"))
        with pytest.raises(KdexamError, match=f"train example 2 has 3 words and {len(tags)} tags; give every word one tag"):
            load_data(cfg(tmp_path / f"d{n}", task="token-classification"))


def test_a_conll_row_of_another_width_and_a_txt_of_texts_are_refused(tmp_path):
    """The tag is the last column: a 4-column CoNLL file's row 'Bob NNP' read NNP as Bob's tag. A .txt
    of 'text<TAB>label' lines was read as one sentence of 'words' with spaces in them, and trained a tagger."""
    p = tmp_path / "d.conll"
    p.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nBob NNP\n")
    with pytest.raises(KdexamError, match="line 4 has 2 columns where line 1 has 4; the tag is read from a column counted from the end"):
        read_conll(p, DataConfig())
    p.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nBob NNP B-NP B-PER\n")
    assert [e.label for e in read_conll(p, DataConfig())] == [["B-ORG", "O"], ["B-PER"]]
    p = tmp_path / "train.txt"
    p.write_text("a good film\tpositive\na bad film\tnegative\n")
    with pytest.raises(KdexamError, match=r"line 1's token 'a good film' holds spaces; CoNLL has one token per line. A .txt file"):
        read_conll(p, DataConfig())


def test_a_tsv_with_valid_quoted_tabs_and_line_breaks_keeps_its_rows(tmp_path):
    """A quoted TSV field holding a line break made the whole file be read again without quoting,
    which then refused it with advice to quote what was quoted."""
    p = tmp_path / "d.tsv"
    p.write_text('text\tlabel\n"quoted\ttab"\tpositive\n"multi\nline"\tnegative\n', encoding="utf-8")
    assert [(e.text, e.label) for e in read_file(p, DataConfig())] == [("quoted\ttab", "positive"), ("multi\nline", "negative")]


def test_a_csv_quote_that_closes_rows_later_is_refused(tmp_path):
    """A text opening with a quote that closed three lines later made one text of three rows (valid
    CSV: only the shape, a line inside a text ending in ',<label>', tells); a quoted text with a
    line break of its own is still read."""
    p = tmp_path / "d.csv"
    p.write_text('text,label\ngood film,positive\n"Best movie ever,positive\nok movie,negative\nwatched on a 12",positive\n'
                 '"two\nlines",negative\n', encoding="utf-8")
    with pytest.raises(KdexamError, match="line 5 holds the line 'Best movie ever,positive' inside a quoted field"):
        read_file(p, DataConfig())
    p.write_text('text,label\ngood film,positive\n"two\nlines, really",negative\n', encoding="utf-8")
    assert [e.text for e in read_file(p, DataConfig())] == ["good film", "two\nlines, really"]


def test_a_label_column_not_in_the_file_names_the_columns(tmp_path):
    """--label-column lable said only "has no labels (no column 'lable')"."""
    p = tmp_path / "d.csv"
    p.write_text("text,label\ngood,pos\nbad,neg\n", encoding="utf-8")
    with pytest.raises(KdexamError, match=r"has no label column 'lable' \(it has: label, text\); pass --label-column NAME. "
                                          r"Did you mean 'label'\?"):
        read_file(p, DataConfig(label_column="lable"))
