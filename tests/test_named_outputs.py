"""Named outputs: captured in one pass, cached per name, added later without recomputing, online beyond a budget."""

import os

import numpy as np
import pytest
import torch

from conftest import sentiment_examples
from kdexam.data.readers import Example
from kdexam.outputs import encoder_outputs, parse_name
from kdexam.tasks import Task

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny random BERT classifier laid out as a teacher run (2 layers, width 32, 2 heads)."""
    from transformers import BertConfig, BertForSequenceClassification

    from kdexam.paths import atomic_write_json

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("teacher")
    cfg = BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2)
    BertForSequenceClassification(cfg).save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    atomic_write_json(d / "task.json", Task("classification", ["neg", "pos"], False, "accuracy", "x").to_dict())
    return d


def examples(n=24):
    return [Example(r["text"], None, r["label"]) for r in sentiment_examples(n, seed=5)]


def test_names_parse():
    assert parse_name("hidden.3") == ("hidden", 3) and parse_name("embeddings") == ("hidden", 0)
    assert parse_name("logits") == ("logits", None) and parse_name("value.1") == ("value", 1)
    with pytest.raises(ValueError):
        parse_name("hiden.1")


def test_encoder_outputs_match_the_models_own(teacher_dir, tiny_tokenizer):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    enc = tiny_tokenizer(["the movie was good", "bad"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = encoder_outputs(model, dict(enc), {"logits", "hidden.0", "hidden.2", "cls.1", "attention.2", "query.1", "value.2"})
        ref = model(**enc, output_hidden_states=True, output_attentions=True)
    torch.testing.assert_close(out["logits"], ref.logits)
    torch.testing.assert_close(out["hidden.2"], ref.hidden_states[2])
    torch.testing.assert_close(out["cls.1"], ref.hidden_states[1][:, 0])
    torch.testing.assert_close(out["attention.2"], ref.attentions[1])
    with torch.inference_mode():
        query1 = model.bert.encoder.layer[0].attention.self.query(ref.hidden_states[0])
        value2 = model.bert.encoder.layer[1].attention.self.value(ref.hidden_states[1])
    torch.testing.assert_close(out["query.1"], query1)
    torch.testing.assert_close(out["value.2"], value2)


def test_cache_adds_an_output_without_recomputing_the_rest(teacher_dir):
    from kdexam.teachers.teacher import Teacher

    data = examples()
    first = Teacher(teacher_dir, max_length=32)
    a = first.outputs(data, ["logits"])
    assert first.forward_calls > 0 and not a.from_cache
    logits_file = a.path / "logits.npy"
    stamp = os.stat(logits_file).st_mtime_ns

    second = Teacher(teacher_dir, max_length=32)
    b = second.outputs(data, ["logits", "hidden.2", "attention.1"])
    assert second.forward_calls > 0 and b.path == a.path
    assert os.stat(logits_file).st_mtime_ns == stamp, "logits were already cached and must not be rewritten"
    third = Teacher(teacher_dir, max_length=32)
    c = third.outputs(data, ["logits", "hidden.2", "attention.1"])
    assert third.forward_calls == 0 and c.from_cache
    # stored forms: each example cut to its own length, the same as a direct forward
    feats = third.encode(data)
    n = len(feats.rows[3]["input_ids"])
    assert c.example(3, "hidden.2").shape == (n, 32) and c.example(3, "attention.1").shape == (2, n, n)
    direct = Teacher(teacher_dir, max_length=32).compute(data[3:4], ["hidden.2", "attention.1"])
    np.testing.assert_allclose(c.example(3, "hidden.2"), direct["hidden.2"][0], atol=1e-3)
    np.testing.assert_allclose(c.example(3, "attention.1"), direct["attention.1"][0], atol=1e-3)


def test_corrupted_output_is_rebuilt_alone(teacher_dir):
    from kdexam.teachers.teacher import Teacher

    data = examples(20)
    a = Teacher(teacher_dir, max_length=32).outputs(data, ["logits", "hidden.1"])
    f = a.path / "hidden.1.npy"
    with open(f, "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x01\x02\x03\x04")
    stamp = os.stat(a.path / "logits.npy").st_mtime_ns
    t = Teacher(teacher_dir, max_length=32)
    b = t.outputs(data, ["logits", "hidden.1"])
    assert t.forward_calls > 0 and not b.from_cache
    assert os.stat(a.path / "logits.npy").st_mtime_ns == stamp


def test_outputs_beyond_the_budget_are_computed_online_and_equal_the_cached(teacher_dir):
    from kdexam.teachers.teacher import Teacher, to_batch
    from kdexam.data.encode import make_loader

    data = examples(30)
    cached = Teacher(teacher_dir, max_length=32).outputs(data, ["logits", "attention.2", "hidden.1"])
    already = Teacher(teacher_dir, max_length=32).outputs(data, ["logits", "attention.2", "hidden.1"], budget_gb=0.0)
    assert already.from_cache and not already.online, "what is cached is read whatever the budget"
    fresh = examples(31)[1:]
    t2 = Teacher(teacher_dir, max_length=32)
    online = t2.outputs(fresh, ["logits", "attention.2", "hidden.1"], budget_gb=0.0)
    assert set(online.online) == {"attention.2", "hidden.1"} and "logits" in online.stored
    assert online.notes and "cache budget" in online.notes[0]
    ref = Teacher(teacher_dir, max_length=32).outputs(fresh, ["logits", "attention.2", "hidden.1"])
    feats = t2.encode(fresh)
    batch = next(iter(make_loader(feats, t2.tokenizer, t2.task, 8, shuffle=False)))
    idx = batch["index"].tolist()
    names = ["logits", "attention.2", "hidden.1"]
    a, b = to_batch(online.gather(idx, names), batch, t2.task), to_batch(ref.gather(idx, names), batch, t2.task)
    for name in names:
        torch.testing.assert_close(a[name].float(), b[name].float(), atol=2e-3, rtol=0)
    assert a["hidden.1"].shape == (8, batch["input_ids"].shape[1], 32)
    assert a["attention.2"].shape == (8, 2, batch["input_ids"].shape[1], batch["input_ids"].shape[1])
    # padding positions hold zeros
    pad = batch["attention_mask"] == 0
    assert torch.all(a["hidden.1"][pad] == 0)
    assert cached.path == already.path


def test_estimate_matches_the_written_size(teacher_dir):
    from kdexam.teachers.teacher import Teacher

    data = examples(16)
    t = Teacher(teacher_dir, max_length=32)
    out = t.outputs(data, ["hidden.1", "attention.1", "cls.2"])
    feats = t.encode(data)
    for name in ("hidden.1", "attention.1", "cls.2"):
        assert t.estimate_bytes(name, feats) == out.stored[name].data.nbytes, name


def test_student_with_another_tokenization_cannot_match_tokens(teacher_dir, tmp_path):
    from kdexam.data.encode import encode
    from kdexam.errors import KdexamError
    from kdexam.teachers.teacher import Teacher, check_same_tokenization
    from conftest import build_tokenizer

    data = examples(8)
    t = Teacher(teacher_dir, max_length=32)
    same = t.encode(data)
    check_same_tokenization(t, data, same, {"hidden.1", "logits"})
    other = encode(data, build_tokenizer(), t.task, 4)  # truncated: other ids
    with pytest.raises(KdexamError, match="tokenizes example"):
        check_same_tokenization(t, data, other, {"hidden.1"})
    check_same_tokenization(t, data, other, {"logits"})  # sentence-level: fine


def test_attention_of_a_training_student_is_a_distribution(teacher_dir, tiny_tokenizer):
    """HF returns attention probabilities after dropout in train mode; asking for them switches that dropout off."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir, attention_probs_dropout_prob=0.5).train()
    enc = tiny_tokenizer(["the movie was good and the plot was great"], return_tensors="pt")
    out = encoder_outputs(model, dict(enc), {"attention.1", "attention.2"})
    for name in ("attention.1", "attention.2"):
        torch.testing.assert_close(out[name].sum(-1), torch.ones_like(out[name].sum(-1)))
    assert model.config.attention_probs_dropout_prob == 0.0
    assert model.bert.encoder.layer[0].output.dropout.p > 0, "hidden-state dropout stays"
