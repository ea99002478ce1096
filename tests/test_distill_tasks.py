"""Distillation through the other task kinds: tagging (subword and word-level students),
regression and text pairs, each with its loyalty figures."""

import pytest

from conftest import POS_WORDS, NEG_WORDS, FILLER, sentiment_examples, tagging_sentences, write_conll, write_jsonl
from kdexam import api

TEACHER = dict(epochs=10, learning_rate=1e-3, batch_size=16, patience=10)


@pytest.fixture(scope="module")
def tagging_teacher(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("tag")
    (root / "data").mkdir()
    write_conll(root / "data" / "train.conll", tagging_sentences(160, seed=1))
    write_conll(root / "data" / "test.conll", tagging_sentences(40, seed=2))
    api.finetune_teacher(data=root / "data", model=tiny_bert_dir, out=root / "run", **TEACHER)
    return root


def test_tagging_students_subword_and_word_level(tagging_teacher, tmp_path):
    vectors = tmp_path / "vectors.txt"
    words = sorted(set(POS_WORDS + NEG_WORDS + FILLER))
    vectors.write_text(f"{len(words)} 4\n" + "".join(f"{w} {i % 3} 0.5 -0.5 {i / 10}\n" for i, w in enumerate(words)))
    for name, extra in (("cnn", {}), ("glove", {"embeddings": "glove", "vectors_file": str(vectors)})):
        student = "cnn" if name == "cnn" else "bilstm"
        r = api.distill(teacher=tagging_teacher / "run", data=tagging_teacher / "data", student=student,
                        out=tmp_path / name, epochs=8, batch_size=16, learning_rate=5e-3, **extra)
        assert r["task"] == "token-classification"
        loyal = r["student"]["loyalty"]
        assert loyal["label"] >= r["student"]["metrics"]["accuracy"] + r["teacher"]["metrics"]["accuracy"] - 1 - 1e-9
        assert r["student"]["metrics"]["accuracy"] >= 0.6, (name, r["student"]["metrics"])  # chance ~1/3
    for kind in ("bert-tiny", "teacher-layers:1"):  # transformer students tag per subword with their HF token head
        r = api.distill(teacher=tagging_teacher / "run", data=tagging_teacher / "data", student=kind,
                        out=tmp_path / kind.replace(":", "-"), epochs=2, batch_size=16)
        assert r["task"] == "token-classification", kind
        _loyalty_is_consistent(r, out=tmp_path / kind.replace(":", "-"))


def test_a_word_level_tagger_learns_the_teachers_word_states(tagging_teacher, tmp_path):
    """The representation objective on a tagger reads the teacher's states per word (``word.K``), so a
    GloVe-word BiLSTM (another tokenizer) can match them; the matched loss falls."""
    import json

    vectors = tmp_path / "vectors.txt"
    words = sorted(set(POS_WORDS + NEG_WORDS + FILLER))
    vectors.write_text(f"{len(words)} 4\n" + "".join(f"{w} {i % 3} 0.5 -0.5 {i / 10}\n" for i, w in enumerate(words)))
    r = api.distill(teacher=tagging_teacher / "run", data=tagging_teacher / "data", student="bilstm", embeddings="glove",
                    vectors_file=str(vectors), out=tmp_path / "s", epochs=4, batch_size=16, learning_rate=5e-3,
                    objective=["representation:layer=2"])
    assert "word.2" in r["teacher_cache"]["outputs"]
    log = [json.loads(line) for line in (tmp_path / "s" / "train_log.jsonl").read_text().splitlines()]
    losses = [e["train_loss"] for e in log if "train_loss" in e]
    assert losses[-1] < 0.9 * losses[0], losses


def test_regression_student_reports_regression_loyalty(tiny_bert_dir, tmp_path):
    rows = [{"text": r["text"], "label": (1.0 if r["label"] == "pos" else -1.0) + (i % 7) / 70}
            for i, r in enumerate(sentiment_examples(200))]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    api.finetune_teacher(data=data, model=tiny_bert_dir, out=tmp_path / "teacher", **TEACHER)
    r = api.distill(teacher=tmp_path / "teacher", data=data, student="bilstm", out=tmp_path / "s", epochs=6, batch_size=16)
    assert r["task"] == "regression" and r["primary_metric"] == "pearson"
    assert set(r["student"]["loyalty"]) == {"regression", "pearson"}
    assert r["student"]["metrics"]["pearson"] > 0.5, r["student"]["metrics"]


def test_pair_students(tiny_bert_dir, tmp_path):
    ex = sentiment_examples(240)
    pairs = [(a, ex[(i + 2) % len(ex)] if i % 4 < 2 else ex[(i + 1) % len(ex)]) for i, a in enumerate(ex)]
    data = write_jsonl(tmp_path / "train.jsonl", [{"text": a["text"], "text_pair": b["text"], "label": int(a["label"] == b["label"])}
                                                  for a, b in pairs])
    api.finetune_teacher(data=data, model=tiny_bert_dir, out=tmp_path / "teacher", epochs=2)
    for kind, extra in (("bilstm", {}), ("bilstm", {"pair_mode": "siamese"}), ("cnn", {}), ("cnn", {"pair_mode": "siamese"}),
                        ("bert-tiny", {}), ("teacher-layers:1", {})):
        out = tmp_path / (kind.replace(":", "-") + "-".join(["", *extra.values()]))
        r = api.distill(teacher=tmp_path / "teacher", data=data, student=kind, out=out, epochs=1, **extra)
        assert r["task"] == "classification", kind
        _loyalty_is_consistent(r, out=out)


def _loyalty_is_consistent(r: dict, out) -> None:
    """Label loyalty is at least P(both right) >= acc_S + acc_T - 1 (same examples), and scoring the
    saved student again (``kdexam evaluate``) gives the same accuracy and loyalty."""
    s, t = r["student"], r["teacher"]
    assert s["loyalty"]["label"] >= s["metrics"]["accuracy"] + t["metrics"]["accuracy"] - 1 - 1e-9, r
    again = api.evaluate(out, split=r["split"])
    assert again["student"]["metrics"]["accuracy"] == pytest.approx(s["metrics"]["accuracy"])
    assert again["student"]["loyalty"]["label"] == pytest.approx(s["loyalty"]["label"])
