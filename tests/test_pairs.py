"""Text pairs for BiLSTM/CNN students: the pair encoding, the split into two texts, and
siamese encoding (each text encoded alone, the head reading [u; v; |u-v|; u*v])."""

from __future__ import annotations

import pytest
import torch

from conftest import sentiment_examples
from kdexam.data.encode import Collator, encode
from kdexam.data.readers import Example
from kdexam.errors import KdexamError
from kdexam.students import StudentSpec, build_student, check_spec
from kdexam.students.bilstm import split_pair
from kdexam.tasks import Task

PAIR = Task("classification", ["no", "yes"], text_pair=True)
LONG = "the movie was really quite good and the plot was great and the actors were lovely"


@pytest.fixture(scope="module")
def teacher(tiny_bert_dir, tmp_path_factory):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    d = tmp_path_factory.mktemp("pair-teacher")
    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2).save_pretrained(d)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(d)
    return d


def batch(tok, examples):
    rows = encode(examples, tok, PAIR, max_length=64).rows
    b = Collator(tok, PAIR)([dict(r, index=i) for i, r in enumerate(rows)])
    return {k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def test_split_pair_by_token_type():
    ids = torch.tensor([[1, 5, 6, 2, 7, 2, 0], [1, 5, 2, 7, 8, 9, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]])
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1]])
    (a, ma), (b, mb) = split_pair(ids, mask, types)
    assert [r[: int(m.sum())] for r, m in zip(a.tolist(), ma)] == [[1, 5, 6, 2], [1, 5, 2]]
    assert [r[: int(m.sum())] for r, m in zip(b.tolist(), mb)] == [[7, 2], [7, 8, 9, 2]]
    with pytest.raises(ValueError, match="token_type_ids"):
        split_pair(ids, mask, None)


@pytest.mark.parametrize("kind,extra", [("bilstm", {"hidden_size": 8}), ("cnn", {"num_filters": 4})])
def test_siamese_encodes_each_text_alone(kind, extra, teacher):
    torch.manual_seed(0)
    model, tok = build_student(StudentSpec(kind=kind, pair_mode="siamese", **extra), PAIR, teacher)
    model.eval()
    assert model.embeddings.segment is None  # the two texts are apart: no segment embedding needed
    width = model.feature_dim() // 4
    with torch.no_grad():
        model.get_input_embeddings().weight[tok.pad_token_id] = 0.5  # any read of padding would show
        examples = [Example("good", "bad film"), Example("good", LONG), Example(LONG, "bad film"), Example("bad", "fine")]
        out = model(**batch(tok, examples), output_hidden_states=True)
    u, v = out["pooled"][:, :width], out["pooled"][:, width : 2 * width]
    assert torch.allclose(u[0], u[1], atol=1e-5)  # same first text, different second: same u
    assert torch.allclose(v[0], v[2], atol=1e-5)  # same second text: same v
    assert not torch.allclose(u[0], u[2])
    p = out["pooled"]
    assert torch.allclose(p[:, 2 * width : 3 * width], (u - v).abs()) and torch.allclose(p[:, 3 * width :], u * v)
    for i, e in enumerate(examples):  # padding invariance: alone equals in the batch
        with torch.no_grad():
            alone = model(**batch(tok, [e]))["logits"][0]
        assert torch.allclose(alone, out["logits"][i], atol=1e-5)


def test_pair_encoding_marks_the_second_text(teacher, tmp_path):
    """Every student reads pairs through its tokenizer's pair encoding, second text marked with type 1."""
    vectors = tmp_path / "v.txt"
    vectors.write_text("3 2\ngood 1 0\nbad 0 1\nfilm 1 1\n")
    pairs = [(r["text"], "bad film") for r in sentiment_examples(10)]
    for spec in (StudentSpec(kind="bilstm"), StudentSpec(kind="cnn", pair_mode="siamese"),
                 StudentSpec(kind="bilstm", embeddings="glove", vectors_file=str(vectors), pair_mode="siamese"),
                 StudentSpec(kind="bert-tiny"), StudentSpec(kind="teacher-layers:1")):
        model, tok = build_student(spec, PAIR, teacher, train_texts=pairs)
        b = batch(tok, [Example("good film", "bad")])
        types = b["token_type_ids"][0].tolist()
        n_a = len(tok("good film")["input_ids"])  # [CLS] good film [SEP]
        assert types[:n_a] == [0] * n_a and set(types[n_a:]) == {1}, spec.kind
        with torch.no_grad():
            assert model(**b)["logits"].shape == (1, 2)


def test_a_tokenizer_that_leaves_out_type_ids_still_marks_the_pair(teacher, tmp_path):
    """DistilBERT-style tokenizers mark the second text but leave token_type_ids out of their outputs:
    the static student's second text was pooled as nothing (v = 0) and siamese students failed at
    their first step. The student's tokenizer now outputs them, also after saving."""
    import json
    import shutil

    from transformers import AutoTokenizer

    d = tmp_path / "no-types"
    shutil.copytree(teacher, d)
    config = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps({**config, "model_input_names": ["input_ids", "attention_mask"]}))
    assert "token_type_ids" not in AutoTokenizer.from_pretrained(d)("good", "bad")
    pairs = [(r["text"], "bad film") for r in sentiment_examples(10)]
    for spec in (StudentSpec(kind="static", embedding_dim=8), StudentSpec(kind="cnn", pair_mode="siamese")):
        model, tok = build_student(spec, PAIR, d, train_texts=pairs)
        b = batch(tok, [Example("good film", "bad")])
        assert set(b["token_type_ids"][0].tolist()) == {0, 1}, spec.kind
        with torch.no_grad():
            assert model(**b)["logits"].shape == (1, 2)
        tok.save_pretrained(tmp_path / f"saved-{spec.kind}")
        assert "token_type_ids" in AutoTokenizer.from_pretrained(tmp_path / f"saved-{spec.kind}")("good", "bad")


def test_siamese_errors(teacher):
    with pytest.raises(KdexamError, match="text-pair"):
        check_spec(StudentSpec(kind="bilstm", pair_mode="siamese"), Task("classification", ["a", "b"]))
    with pytest.raises(KdexamError, match="pair_mode"):
        check_spec(StudentSpec(kind="bert-tiny", pair_mode="siamese"), PAIR)
