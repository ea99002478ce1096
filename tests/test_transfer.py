"""Transfer sets: labelled + unlabelled + augmented examples, no leakage into validation/test,
unlabelled rows out of the gold loss, segments cached by content, confidence filtering, stages
that read their data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import sentiment_examples, write_jsonl, write_sentiment_splits
from kdexam import api
from kdexam.config import DataConfig, TransferConfig
from kdexam.data.encode import Collator, encode
from kdexam.data.readers import Example
from kdexam.data.splits import DataSplits, load_data
from kdexam.data.transfer import build_transfer_set, confidence, normalise
from kdexam.errors import KdexamError
from kdexam.objectives import build_objectives
from kdexam.tasks import IGNORE_INDEX, Task
from kdexam.training.distiller import Distiller

pytestmark = pytest.mark.usefixtures("one_thread")
CLS = Task("classification", ["neg", "pos"], False, "accuracy", "t")


def splits(train, validation, test=None, task=CLS) -> DataSplits:
    return DataSplits("t", task, train, validation, test)


def test_normalise():
    assert normalise("  It's  GOOD!\t") == normalise("it s good") == normalise("It`s good") == "it s good"
    assert normalise("ﬁne") == "fine"  # NFKC ligature
    # variants of one text that the old normalisation (punctuation dropped, spaces collapsed) told apart
    for a, b in [("The plot was good. It was fun", "The plot was good.It was fun"), ("A well known actor", "A well-known actor"),
                 ("great movie", "gre\u00adat movie"), ("Peter 's car is red .", "Peter's car is red."),
                 ("New York - based firm", "New York-based firm"), ("good film", "good\tfilm"), ("good film", "good\nfilm")]:
        assert normalise(a) == normalise(b), (a, b)
    # symbols tell texts apart, and so do word boundaries
    for a, b in [("great movie 👍", "great movie 👎"), ("x > y", "x < y"), ("$5", "5"), ("a bc", "ab c")]:
        assert normalise(a) != normalise(b), (a, b)


def test_leakage_is_checked_against_every_held_out_example_and_pairs_either_way(tmp_path):
    """--max-eval cut validation/test before the leakage check, so a transfer row equal to a later
    test row stayed (kdexam evaluate scores the whole test split); a swapped pair was not a match."""
    d = tmp_path / "d"
    d.mkdir()
    write_jsonl(d / "train.jsonl", [{"text": f"train text {i}", "label": "ab"[i % 2]} for i in range(20)]
                + [{"text": "shared sentence seven", "label": "a"}])
    write_jsonl(d / "validation.jsonl", [{"text": f"val text {i}", "label": "ab"[i % 2]} for i in range(6)])
    write_jsonl(d / "test.jsonl", [{"text": f"test text {i}", "label": "ab"[i % 2]} for i in range(6)]
                + [{"text": "shared sentence seven", "label": "a"}])
    (tmp_path / "u.txt").write_text("test text 5\nfresh line\n", encoding="utf-8")
    data = load_data(DataConfig(name=str(d), max_eval=3))
    assert len(data.test) == 3
    t = build_transfer_set(TransferConfig(unlabelled=str(tmp_path / "u.txt")), data, data.task, 0, DataConfig())
    assert "shared sentence seven" not in [e.text for e in t.examples] and "test text 5" not in [e.text for e in t.examples]
    assert t.report["leaked_exact"] == {"gold": 1, "unlabelled": 1}
    pair = Task("classification", ["a", "b"], True)
    swapped = splits([Example("Is the sky blue?", "The sky is blue.", "a"), Example("x", "y", "b")],
                     [Example("The sky is blue.", "Is the sky blue?", "a")], None, pair)
    assert [e.text for e in build_transfer_set(TransferConfig(), swapped, pair, 0, DataConfig()).examples] == ["x"]


def test_no_transfer_example_equals_validation_or_test_after_normalisation(tmp_path):
    train = [Example("a good film", label="pos"), Example("the plot was dull", label="neg"),
             Example("Quite nice.", label="pos")]  # leaks into test (normalised)
    validation = [Example("an awful story", label="neg")]
    test = [Example("quite nice", label="pos"), Example("really lovely actors", label="pos")]
    lines = ["an awful story",  # exact copy of validation
             "Really, LOVELY actors!",  # normalised copy of test
             "a good film",  # repeats a gold row
             "fresh unseen text", "fresh  unseen TEXT",  # a normalised repeat of the line before
             "another new line"]
    (tmp_path / "u.txt").write_text("\n".join(lines), encoding="utf-8")
    t = build_transfer_set(TransferConfig(unlabelled=str(tmp_path / "u.txt")), splits(train, validation, test), CLS, 0,
                           DataConfig())
    held = {normalise(e.text) for e in validation + test}
    assert not [e.text for e in t.examples if normalise(e.text) in held]
    assert [e.text for e in t.examples] == ["a good film", "the plot was dull", "fresh unseen text", "another new line"]
    assert t.sources == ["gold", "gold", "unlabelled", "unlabelled"]
    assert t.segments == [("gold", 0, 2), ("unlabelled", 2, 4)]
    assert t.report["sources"] == {"gold": 2, "unlabelled": 2}
    assert t.report["leaked_exact"] == {"unlabelled": 1}
    assert t.report["leaked_normalised"] == {"gold": 1, "unlabelled": 1}
    assert t.report["duplicates"] == {"unlabelled": 2}
    assert t.examples[2].label is None and t.examples[0].label == "pos"
    assert len(set(t.ids)) == 4 and t.ids == build_transfer_set(
        TransferConfig(unlabelled=str(tmp_path / "u.txt")), splits(train, validation, test), CLS, 5, DataConfig()).ids


def test_unlabelled_from_csv_and_jsonl_columns_and_max(tmp_path):
    (tmp_path / "u.csv").write_text("id,line\n1,one text\n2,two text\n3,three text\n", encoding="utf-8")
    write_jsonl(tmp_path / "u.jsonl", [{"body": f"text number {i}"} for i in range(10)])
    data = splits([Example("x y", label="pos")], [Example("z", label="neg")])
    t = build_transfer_set(TransferConfig(unlabelled=str(tmp_path / "u.csv"), unlabelled_column="line"), data, CLS, 0, DataConfig())
    assert [e.text for e in t.examples[1:]] == ["one text", "two text", "three text"]
    cfg = TransferConfig(unlabelled=str(tmp_path / "u.jsonl"), unlabelled_column="body", max_unlabelled=4)
    a = build_transfer_set(cfg, data, CLS, 0, DataConfig())
    b = build_transfer_set(cfg, data, CLS, 99, DataConfig())
    assert a.report["sources"]["unlabelled"] == 4 and [e.text for e in a.examples] == [e.text for e in b.examples]
    with pytest.raises(KdexamError, match="no column 'text'.*line"):
        build_transfer_set(TransferConfig(unlabelled=str(tmp_path / "u.csv")), data, CLS, 0, DataConfig())
    with pytest.raises(KdexamError, match="neither a built-in dataset nor an existing file"):
        build_transfer_set(TransferConfig(unlabelled=str(tmp_path / "missing.txt")), data, CLS, 0, DataConfig())
    pair = Task("classification", ["a", "b"], True, "accuracy", "p")
    with pytest.raises(KdexamError, match="text pairs"):
        build_transfer_set(TransferConfig(unlabelled=str(tmp_path / "u.jsonl"), unlabelled_column="body"),
                           splits([Example("x", "y", "a")], [Example("z", "w", "b")], task=pair), pair, 0, DataConfig())


def test_several_unlabelled_sources_each_capped_in_one_segment(tmp_path):
    """Sources follow one another in the order given; --max-unlabelled caps each source on its own
    (the same fixed sample a one-source run takes); a text in two sources is kept once."""
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"first source {i}"} for i in range(10)])
    (tmp_path / "b.txt").write_text("second source 0\nsecond source 1\nfirst source 3\n", encoding="utf-8")
    data = splits([Example("x y", label="pos")], [Example("z", label="neg")])
    a, b = str(tmp_path / "a.jsonl"), str(tmp_path / "b.txt")
    alone = build_transfer_set(TransferConfig(unlabelled=a, max_unlabelled=4), data, CLS, 0, DataConfig())
    both = build_transfer_set(TransferConfig(unlabelled=[a, b], max_unlabelled=4), data, CLS, 0, DataConfig())
    first = [e.text for e in alone.examples[1:]]
    assert len(first) == 4 and [e.text for e in both.examples[1:5]] == first
    second = [e.text for e in both.examples[5:]]
    assert set(second) <= {"second source 0", "second source 1", "first source 3"} and "second source 0" in second
    assert len(second) == 3 - ("first source 3" in first)
    assert both.report["unlabelled_sources"] == {a: 4, b: 3} and both.segments[1] == ("unlabelled", 1, 1 + 4 + len(second))
    assert "unlabelled_sources" not in alone.report
    assert TransferConfig(unlabelled=a).unlabelled == [a] and TransferConfig(unlabelled=None).unlabelled == []


def test_unlabelled_tagging_text_is_split_into_words(tmp_path):
    tag = Task("token-classification", ["ADJ", "DET", "NOUN"], False, "accuracy", "tag")
    (tmp_path / "u.txt").write_text("the good film\na plot\n", encoding="utf-8")
    t = build_transfer_set(TransferConfig(unlabelled=str(tmp_path / "u.txt")),
                           splits([Example(["the", "film"], label=["DET", "NOUN"])], [Example(["a"], label=["DET"])], task=tag),
                           tag, 0, DataConfig())
    assert [e.text for e in t.examples] == [["the", "film"], ["the", "good", "film"], ["a", "plot"]]


def test_confidence_filter_keeps_gold_and_confident_rows():
    assert confidence(np.array([0.0, 0.0])) == pytest.approx(0.5)
    assert confidence(np.array([[math.log(3), 0.0], [0.0, 0.0]])) == pytest.approx((0.75 + 0.5) / 2)  # tagging: mean over words
    t = build_transfer_set(TransferConfig(), splits([Example("a", label="pos")], [Example("b", label="neg")]), CLS, 0,
                           DataConfig())
    t.examples += [Example("c"), Example("d")]
    t.sources += ["unlabelled", "augmented:mask"]
    logits = [np.array([0.0, 0.0]), np.array([0.0, 3.0]), np.array([0.1, 0.0])]
    assert t.confident(logits, CLS, 0.9) == [0, 1]  # gold kept even at 0.5; 0.953 kept; 0.525 dropped
    assert t.report["filtered"] == {"augmented:mask": 1} and t.report["trained_on"] == 2
    with pytest.raises(KdexamError, match="regression"):
        t.confident(logits, Task("regression"), 0.9)


def test_collator_marks_rows_without_gold_labels(tiny_tokenizer):
    rows = encode([Example("good film", label="pos"), Example("dull plot"), Example("a nice story", label="neg")],
                  tiny_tokenizer, CLS, 32).rows
    batch = Collator(tiny_tokenizer, CLS)([dict(r, index=i) for i, r in enumerate(rows)])
    assert batch["labels"].tolist() == [1, IGNORE_INDEX, 0]
    reg = Task("regression")
    rows = encode([Example("good film", label=1.5), Example("dull plot")], tiny_tokenizer, reg, 32).rows
    labels = Collator(tiny_tokenizer, reg)([dict(r, index=i) for i, r in enumerate(rows)])["labels"]
    assert labels[0].item() == 1.5 and math.isnan(labels[1].item())
    tag = Task("token-classification", ["ADJ", "NOUN"], False, "accuracy", "tag")
    rows = encode([Example(["good", "films"], label=["ADJ", "NOUN"]), Example(["dull", "plots", "x"])], tiny_tokenizer, tag, 32).rows
    batch = Collator(tiny_tokenizer, tag)([dict(r, index=i) for i, r in enumerate(rows)])
    assert (batch["labels"][1] == IGNORE_INDEX).all() and (batch["labels"][0] != IGNORE_INDEX).sum() == 2
    # the soft losses still see the unlabelled sentence's words: each word's first subword
    assert batch["loss_mask"].sum(1).tolist() == [2, 3]
    assert torch.equal(batch["loss_mask"][0], batch["labels"][0] != IGNORE_INDEX)


def test_mixed_batch_gold_loss_on_labelled_rows_only_soft_loss_on_all():
    torch.manual_seed(0)

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(4, 2))

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            return {"logits": torch.nn.functional.one_hot(input_ids[:, 0], 4).float() @ self.w}

    objective = build_objectives([{"name": "kl", "temperature": 1.0, "weight": 0.5}, {"name": "gold", "weight": 0.5}], "classification")
    d = Distiller(Linear(), objective)
    ids = torch.tensor([[0], [1], [2], [3]])
    labels = torch.tensor([1, IGNORE_INDEX, 0, IGNORE_INDEX])
    teacher = {"logits": torch.randn(4, 2)}
    mixed = d({"input_ids": ids, "labels": labels}, teacher)[0]
    s = d.student(ids)["logits"]
    gold = torch.nn.functional.cross_entropy(s[[0, 2]], labels[[0, 2]])
    kl = torch.nn.functional.kl_div(s.log_softmax(-1), teacher["logits"].log_softmax(-1), reduction="batchmean", log_target=True)
    assert mixed.item() == pytest.approx((0.5 * kl + 0.5 * gold).item(), rel=1e-5)
    mixed.backward()
    assert (d.student.w.grad[[1, 3]] != 0).all(), "unlabelled rows train through the soft loss"
    # a batch of unlabelled rows only: gold contributes 0, not NaN
    only = d({"input_ids": ids[[1, 3]], "labels": labels[[1, 3]]}, {"logits": teacher["logits"][[1, 3]]})[0]
    assert torch.isfinite(only)


# ---- whole runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("transfer")
    data = write_sentiment_splits(root / "data", 80, 30, 30)
    (root / "unlabelled.txt").write_text("\n".join(r["text"] for r in sentiment_examples(100, seed=7)), encoding="utf-8")
    api.finetune_teacher(data=data, model=tiny_bert_dir, out=root / "run", epochs=4, learning_rate=1e-3, batch_size=16,
                         patience=10, max_length=32)
    return root


def small(teacher, out, **kw):
    return api.distill(teacher=teacher / "run", student="bilstm", embedding_dim=16, hidden_size=8, out=out, epochs=1,
                       batch_size=16, **kw)


def test_unlabelled_rows_are_teacher_labelled_in_their_own_cache(teacher, tmp_path):
    plain = small(teacher, tmp_path / "plain")
    with_u = small(teacher, tmp_path / "u", unlabelled=teacher / "unlabelled.txt")
    comp = with_u["transfer"]
    n_gold, n_u = comp["sources"]["gold"], comp["sources"]["unlabelled"]
    assert n_gold == plain["transfer"]["total"] and n_u > 50
    assert with_u["stages"][0]["examples"] == n_gold + n_u
    # the gold segment's outputs come from the plain run's cache: the teacher ran on the new lines only
    assert plain["teacher_cache"]["teacher_forward_calls"] == math.ceil(n_gold / 64) + 1  # + the 30 test examples
    assert with_u["teacher_cache"]["teacher_forward_calls"] == math.ceil(n_u / 64)
    rows = [json.loads(line) for line in (tmp_path / "u" / "transfer.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows].count("unlabelled") == n_u and len({r["id"] for r in rows}) == len(rows)
    again = small(teacher, tmp_path / "u2", unlabelled=teacher / "unlabelled.txt", seed=3)
    assert again["teacher_cache"]["teacher_forward_calls"] == 0 and again["teacher_cache"]["hit"] is True
    saved = json.loads((tmp_path / "u" / "metrics.json").read_text())
    assert saved["transfer"] == comp


def test_two_stage_recipe_changes_data_between_stages(teacher, tmp_path, monkeypatch):
    import kdexam.training.distill as D

    seen = []
    real = D.make_loader

    def spy(*args, indices=None, **kw):
        loader = real(*args, indices=indices, **kw)
        seen.append(list(loader.dataset.indices))
        return loader

    monkeypatch.setattr(D, "make_loader", spy)
    # the third stage, gold alone without data: gold, reads the labelled rows too (an audit, 2026-12-04:
    # it read every row, the teacher-labelled ones with no loss)
    stages = [{"name": "transfer", "data": "transfer", "objectives": [{"name": "kl", "temperature": 2}]},
              {"name": "gold", "data": "gold", "objectives": [{"name": "gold"}], "epochs": 1},
              {"name": "gold-again", "objectives": [{"name": "gold"}], "epochs": 1}]
    r = small(teacher, tmp_path / "s", unlabelled=teacher / "unlabelled.txt", set=["stages=" + json.dumps(stages)])
    gold_n = r["transfer"]["sources"]["gold"]
    assert [s["data"] for s in r["stages"]] == ["transfer", "gold", "gold"]
    assert seen[0] == list(range(r["transfer"]["total"])) and seen[1] == seen[2] == list(range(gold_n))
    assert r["stages"][1]["examples"] == r["stages"][2]["examples"] == gold_n < r["stages"][0]["examples"]


def test_min_confidence_filters_teacher_labelled_rows(teacher, tmp_path):
    r = small(teacher, tmp_path / "c", unlabelled=teacher / "unlabelled.txt", min_confidence=0.999999)
    comp = r["transfer"]
    assert comp["min_confidence"] == 0.999999
    assert comp["trained_on"] == r["stages"][0]["examples"] == comp["total"] - comp["filtered"].get("unlabelled", 0)
    assert comp["filtered"]["unlabelled"] > 0


def test_cli_bad_unlabelled_source_is_one_sentence(teacher, tmp_path, capsys):
    from kdexam.cli import main

    with pytest.raises(SystemExit) as e:
        main(["distill", "--teacher", str(teacher / "run"), "--student", "cnn", "--out", str(tmp_path / "x"),
              "--unlabelled", str(tmp_path / "nope.txt")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "neither a built-in dataset nor an existing file" in err and "Traceback" not in err


def test_transfer_settings_with_general_distillation_are_refused(teacher, tmp_path, capsys):
    from kdexam.cli import main

    with pytest.raises(SystemExit) as e:
        main(["distill", "--general", "--teacher", str(teacher / "run"), "--student", "bert-tiny", "--out",
              str(tmp_path / "g"), "--unlabelled", "movie-dialog"])
    err = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 2 and "do not apply to general distillation" in err and "Traceback" not in err
    assert not (tmp_path / "g").exists()


def test_augmented_transfer_set_is_deterministic_under_a_seed(teacher, tmp_path):
    data = load_data(DataConfig(name=str(teacher / "data")))
    cfg = TransferConfig(augment=["mask", "ngram"], augment_n=3)
    a = build_transfer_set(cfg, data, data.task, 1, DataConfig())
    b = build_transfer_set(cfg, data, data.task, 1, DataConfig())
    c = build_transfer_set(cfg, data, data.task, 2, DataConfig())
    assert a.ids == b.ids and a.sources == b.sources and a.ids != c.ids
    assert {s for s in a.sources} == {"gold", "augmented:mask", "augmented:ngram"}
    assert all(e.label is None for e, s in zip(a.examples, a.sources) if s != "gold")
    held = {normalise(e.text) for e in data.validation + data.test}
    assert not [e for e in a.examples if normalise(e.text) in held]


@pytest.mark.parametrize("task_name", ["tag", "pair"])
def test_augmented_and_unlabelled_runs_for_tagging_and_pairs(tmp_path, tiny_bert_dir, task_name):
    from run_factory import write_data

    data = write_data(tmp_path, task_name)
    api.finetune_teacher(data=data, model=tiny_bert_dir, out=tmp_path / "t", epochs=1, batch_size=16, max_length=32)
    if task_name == "tag":
        (tmp_path / "u.txt").write_text("the good film\na dull plot was here\n", encoding="utf-8")
        extra = dict(unlabelled=tmp_path / "u.txt", augment="mask,ngram", augment_n=2)
    else:
        write_jsonl(tmp_path / "u.jsonl", [{"text": "a good film", "text_pair": "it was"}, {"text": "x y", "text_pair": "z"}])
        extra = dict(unlabelled=tmp_path / "u.jsonl", augment="mask", augment_n=2)
    r = api.distill(teacher=tmp_path / "t", student="bilstm", embedding_dim=16, hidden_size=8, out=tmp_path / "s", epochs=1,
                    batch_size=8, **extra)
    comp = r["transfer"]
    assert comp["sources"]["unlabelled"] == 2 and comp["sources"]["augmented:mask"] > 0
    rows = [json.loads(line) for line in (tmp_path / "s" / "transfer.jsonl").read_text().splitlines()]
    if task_name == "tag":
        assert all(isinstance(r["text"], list) for r in rows)
    else:
        assert all(r.get("text_pair") for r in rows)


def test_augmentation_never_copies_a_gold_row_that_leaked(tmp_path):
    train = [Example("a good film with fine actors", label="pos"), Example("quite a nice story overall", label="pos"),
             Example("the plot was dull and slow", label="neg")]
    test = [Example("Quite a NICE story, overall!", label="pos")]  # the second gold row, normalised
    t = build_transfer_set(TransferConfig(augment=["mask"], augment_n=3), splits(train, [Example("x", label="neg")], test),
                           CLS, 0, DataConfig(), mask_token="[MASK]")
    augmented = [e.text for e, s in zip(t.examples, t.sources) if s.startswith("augmented")]
    assert t.report["leaked_normalised"] == {"gold": 1} and augmented
    assert not [a for a in augmented if "story" in a or "nice" in a]


def test_a_transfer_set_with_no_gold_row_left_is_an_error():
    train = [Example("a good film", label="pos"), Example("a dull film", label="neg")]
    with pytest.raises(KdexamError, match="Every training example of 't' also stands in its validation or test split"):
        build_transfer_set(TransferConfig(), splits(train, train[:1], train[1:]), CLS, 0, DataConfig())


def test_builtin_unlabelled_source_reads_its_own_column(tmp_path, monkeypatch):
    """A built-in unlabelled set is read by its own ``text`` column, whatever the user's data calls
    its text; a user's file without the column names the option that fixes it."""
    import kdexam.data.builtin as builtin

    d = tmp_path / "dialog"
    d.mkdir()
    write_jsonl(d / "train.jsonl", [{"text": f"line {i}"} for i in range(3)])
    monkeypatch.setattr(builtin, "prepare_dataset", lambda name, *a, **k: d)
    data = splits([Example("x y", label="pos")], [Example("z", label="neg")])
    t = build_transfer_set(TransferConfig(unlabelled="movie-dialog"), data, CLS, 0, DataConfig(text_column="sentence"))
    assert [e.text for e in t.examples[1:]] == ["line 0", "line 1", "line 2"]
    (tmp_path / "u.csv").write_text("body\nsome text\n", encoding="utf-8")
    with pytest.raises(KdexamError, match=r"no column 'text' .*; pass --unlabelled-column NAME\."):
        build_transfer_set(TransferConfig(unlabelled=str(tmp_path / "u.csv")), data, CLS, 0, DataConfig())
    for blank in ("", "\n  \n\n"):  # an empty file, or blank lines only: said, not a transfer set quietly without it
        (tmp_path / "u.txt").write_text(blank, encoding="utf-8")
        with pytest.raises(KdexamError, match=r"Unlabelled text '.*u\.txt' holds no texts"):
            build_transfer_set(TransferConfig(unlabelled=str(tmp_path / "u.txt")), data, CLS, 0, DataConfig())
