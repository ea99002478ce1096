"""Representation transfer for BiLSTM, CNN and static students (issue 13): the loss on
hand-computed values, masking, the students' pooled/states outputs, the xtremedistil recipe
and gradual unfreezing (frozen groups bit-identical, unfrozen ones changed)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from kdexam import api
from kdexam.errors import KdexamError
from kdexam.objectives import BuildContext, ModelShape, RepresentationLoss
from kdexam.objectives.representation import compare

U = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
V = torch.tensor([[1.0, 4.0], [2.0, 1.0]])


def _identity(loss: RepresentationLoss) -> RepresentationLoss:
    with torch.no_grad():
        loss.projection.weight.copy_(torch.eye(2))
        loss.projection.bias.zero_()
    return loss


def test_the_three_losses_on_known_vectors():
    assert compare(U, V, "mse", 1.0).item() == pytest.approx((0 + 4 + 4 + 0) / 4)
    cos = [(1 * 1 + 2 * 4) / (math.sqrt(5) * math.sqrt(17)), (0 * 2 + 1 * 1) / (1 * math.sqrt(5))]
    assert compare(U, V, "cosine", 1.0).item() == pytest.approx(sum(1 - c for c in cos) / 2)
    p, q = torch.softmax(V / 2, -1), torch.softmax(U / 2, -1)  # teacher p, student q, τ = 2
    kl = (p * (p.log() - q.log())).sum(-1).mean() * 4
    assert compare(U, V, "kl", 2.0).item() == pytest.approx(kl.item(), rel=1e-5)


def test_sentence_vector_against_cls_and_masked_mean():
    cls = _identity(RepresentationLoss(3, "cls", "mse", student_width=2, teacher_width=2))
    assert cls.requires == ({"cls.3"}, {"pooled"})
    assert cls({"pooled": U}, {"cls.3": V}, {}).item() == pytest.approx(2.0)
    mean = _identity(RepresentationLoss(3, "mean", "mse", student_width=2, teacher_width=2))
    assert mean.requires == ({"mean.3"}, {"pooled"})
    assert mean({"pooled": U}, {"mean.3": V}, {}).item() == pytest.approx(2.0)


def test_the_teachers_mean_state_is_the_masked_mean_of_its_layer(tiny_bert_dir):
    """``mean.K`` = Σ_real hidden.K / #real: padding never enters, and it equals the same
    sentence's mean without padding."""
    from transformers import AutoModel, AutoTokenizer

    from kdexam.outputs import encoder_outputs

    model, tok = AutoModel.from_pretrained(tiny_bert_dir).eval(), AutoTokenizer.from_pretrained(tiny_bert_dir)
    batch = dict(tok(["the movie was good and the plot fine", "good"], padding=True, return_tensors="pt"))
    with torch.inference_mode():
        out = encoder_outputs(model, batch, {"mean.2", "hidden.2"})
        alone = encoder_outputs(model, dict(tok(["good"], return_tensors="pt")), {"hidden.2"})["hidden.2"]
    n = int(batch["attention_mask"][1].sum())
    assert n < batch["input_ids"].shape[1]
    assert torch.allclose(out["mean.2"][1], out["hidden.2"][1, :n].mean(0), atol=1e-6)
    assert torch.allclose(out["mean.2"][1], alone[0].mean(0), atol=1e-5)


def test_tagging_compares_token_states_at_first_subwords_only():
    loss = _identity(RepresentationLoss(2, student_width=2, teacher_width=2, tagging=True))
    assert loss.requires == ({"word.2"}, {"states"})
    states = torch.tensor([[[1.0, 2.0], [50.0, 50.0], [0.0, 1.0], [7.0, 7.0]]])
    nan = float("nan")  # position 3: a word the teacher's truncation cut off; position 4: an fp16 overflow
    teacher = torch.tensor([[[1.0, 4.0], [0.0, 0.0], [2.0, 1.0], [nan, nan], [float("inf"), 0.0]]])
    states = torch.cat([states, torch.tensor([[[3.0, 3.0]]])], 1)
    batch = {"attention_mask": torch.ones(1, 5), "loss_mask": torch.tensor([[True, False, True, True, True]])}
    assert loss({"states": states}, {"word.2": teacher}, batch).item() == pytest.approx(2.0)
    nothing = {"attention_mask": torch.ones(1, 5), "loss_mask": torch.tensor([[False, False, False, True, True]])}
    assert loss({"states": states}, {"word.2": teacher}, nothing).item() == 0.0


def test_the_teachers_word_states_land_on_the_students_first_subwords():
    """``word.K`` is stored per word (each word's first subword in the teacher's encoding; NaN for a
    word truncation cut) and laid out at the student's own first-subword positions."""
    import numpy as np

    from kdexam.tasks import Task
    from kdexam.teachers.teacher import stored_form, to_batch

    task = Task("token-classification", ["O", "X"])
    states = torch.arange(10.0).reshape(5, 2)  # teacher: [CLS] w0 w0' w1 [SEP]; w2 was truncated
    row = {"input_ids": [0] * 5, "word_ids": [-1, 0, 0, 1, -1], "n_words": 3}
    stored = stored_form("word.1", states, row, task)
    assert stored.dtype == np.float16 and np.array_equal(stored[:2], np.array([[2.0, 3.0], [6.0, 7.0]]))
    assert np.isnan(stored[2]).all()
    batch = {"input_ids": torch.zeros(1, 6, dtype=torch.long), "index": torch.tensor([0])}
    out = to_batch({"word.1": [stored]}, batch, task, positions=[np.array([1, 2, 4])])["word.1"]  # student: one token per word
    assert torch.equal(out[0, 1], torch.tensor([2.0, 3.0])) and torch.equal(out[0, 2], torch.tensor([6.0, 7.0]))
    assert out[0, 4].isnan().all() and out[0, 0].isnan().all()


def test_the_projection_learns_and_widths_come_from_the_shapes():
    ctx = BuildContext("Objective 1 ('representation')", "classification", ModelShape(6, 8, 2), ModelShape(pooled_size=5))
    loss = RepresentationLoss.build(RepresentationLoss.Params(), ctx)
    assert (loss.layer, loss.projection.in_features, loss.projection.out_features) == (6, 5, 8)
    with pytest.raises(KdexamError, match="has none"):
        RepresentationLoss.build(RepresentationLoss.Params(), BuildContext("o", "classification", ModelShape(6, 8, 2), ModelShape(4, 8, 2)))
    with pytest.raises(KdexamError, match="layers 1 to 6"):
        RepresentationLoss.build(RepresentationLoss.Params(layer=7), ctx)


@pytest.mark.parametrize("kind", ["bilstm", "cnn", "static"])
def test_students_give_pooled_and_states_of_their_declared_widths(kind, tiny_bert_dir):
    from kdexam.config import StudentSpec
    from kdexam.students.registry import build_student
    from kdexam.tasks import Task
    from kdexam.training.distiller import student_outputs

    for task in (Task("classification", ["a", "b"]), Task("token-classification", ["O", "X"])):
        spec = StudentSpec(kind=kind, embedding_dim=8, **({"hidden_size": 4} if kind == "bilstm" else {}))
        model, tok = build_student(spec, task, tiny_bert_dir, train_texts=["the movie was good"])
        batch = dict(tok(["the movie was good", "good"], padding=True, return_tensors="pt"))
        out = student_outputs(model, batch, {"pooled", "states"})
        shape = model.shape
        assert out["states"].shape[-1] == shape.states_size and out["states"].shape[:2] == batch["input_ids"].shape
        if task.kind == "classification":
            assert out["pooled"].shape == (2, shape.pooled_size)
        else:
            assert shape.pooled_size is None


def test_xtremedistil_recipe_runs_its_stages(tmp_path, tiny_bert_dir):
    from conftest import sentiment_examples, write_jsonl

    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "train.jsonl", sentiment_examples(48, seed=1))
    write_jsonl(data / "validation.jsonl", sentiment_examples(16, seed=2))
    api.finetune_teacher(data=data, model=tiny_bert_dir, out=tmp_path / "t", epochs=1, batch_size=16)
    r = api.distill(teacher=tmp_path / "t", data=data, student="cnn", embedding_dim=8, recipe="xtremedistil",
                    out=tmp_path / "s", epochs=3, batch_size=16, patience=1)
    assert [s["stage"] for s in r["stages"]] == ["representation", "logits-head", "logits-top2", "logits", "gold"]
    # the representation stage leaves the head untrained: its own validation loss, not the head's accuracy,
    # selects its weights and stops it (it used to stop at once on a flat, untrained-head accuracy)
    log = [json.loads(line) for line in (tmp_path / "s" / "train_log.jsonl").read_text().splitlines()]
    first = log[:r["stages"][0]["steps"] // 3 and 3]
    assert [list(x["validation"]) for x in first] == [["objective"]] * 3, "3 epochs, each scored by the stage's loss"
    losses = [x["validation"]["objective"] for x in first]
    assert r["stages"][0]["best_validation"] == min(losses) and losses[-1] < losses[0]
    assert "accuracy" in log[3]["validation"]
    with pytest.raises(KdexamError, match="recipe 'xtremedistil' brings its own objectives"):  # they were dropped silently
        api.distill(teacher=tmp_path / "t", data=data, student="cnn", recipe="xtremedistil", objective=["soft_ce"], out=tmp_path / "x")
    with pytest.raises(KdexamError, match="parameter 'temperature' is invalid: needs a temperature > 0"):
        api.distill(teacher=tmp_path / "t", data=data, student="cnn", objective=["representation:temperature=0,loss=kl"],
                    out=tmp_path / "x")
    with pytest.raises(KdexamError, match="parameter 'temperature' is invalid: it applies to loss kl only"):  # it did nothing
        api.distill(teacher=tmp_path / "t", data=data, student="cnn", objective=["representation:temperature=4,loss=mse"],
                    out=tmp_path / "x")
    with pytest.raises(KdexamError, match="unknown recipe 'xtreme'"):
        api.distill(teacher=tmp_path / "t", data=data, student="cnn", recipe="xtreme", out=tmp_path / "x")


def test_a_frozen_group_is_bit_identical_after_its_stage_and_the_head_changes(tmp_path, tiny_bert_dir):
    """One stage with unfreeze 1 (the head only): the student's other weights equal its initial ones."""
    from conftest import sentiment_examples, write_jsonl
    from safetensors.torch import load_file

    from kdexam.config import StudentSpec
    from kdexam.students.registry import build_student
    from kdexam.tasks import Task

    data = tmp_path / "data"
    data.mkdir()
    rows = sentiment_examples(48, seed=1)
    write_jsonl(data / "train.jsonl", rows)
    write_jsonl(data / "validation.jsonl", sentiment_examples(16, seed=2))
    api.finetune_teacher(data=data, model=tiny_bert_dir, out=tmp_path / "t", epochs=1, batch_size=16)
    cfg = {"teacher": str(tmp_path / "t"), "data": {"name": str(data)}, "student": {"kind": "cnn", "embedding_dim": 8},
           "out": str(tmp_path / "s"), "train": {"epochs": 2, "batch_size": 16},
           "stages": [{"name": "head", "unfreeze": 1, "objectives": [{"name": "kl"}]}]}
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    api.distill(tmp_path / "c.yaml")
    torch.manual_seed(42)  # distill() seeds before building the student, so this is its initial state
    initial, _ = build_student(StudentSpec(kind="cnn", embedding_dim=8), Task("classification", ["neg", "pos"]),
                               tmp_path / "t", train_texts=[r["text"] for r in rows])
    before = initial.state_dict()
    after = load_file(str(tmp_path / "s" / "model.safetensors"))
    frozen = [k for k in before if not k.startswith("classifier.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
