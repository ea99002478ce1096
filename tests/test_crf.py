"""The CRF layer of BiLSTM taggers: likelihood and Viterbi against brute force, word
compaction, decoding back to words, the gold loss, and a CRF tagger through distill."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from conftest import tagging_sentences, write_conll
from kdexam import api
from kdexam.data.encode import Features
from kdexam.evaluation.predict import decode
from kdexam.objectives import GoldLoss
from kdexam.students import StudentSpec, build_student, load_student, save_student
from kdexam.students.crf import CRF, compact, crf_params, viterbi, word_emissions
from kdexam.tasks import Task


def brute_force(crf: CRF, emissions: torch.Tensor) -> tuple[list[int], float, torch.Tensor]:
    """Best sequence, its score and log Z of one sentence [W, C] by enumerating every tag sequence."""
    w, c = emissions.shape
    scores = {}
    for seq in itertools.product(range(c), repeat=w):
        s = crf.start_transitions[seq[0]] + crf.end_transitions[seq[-1]]
        s = s + sum(emissions[i, t] for i, t in enumerate(seq))
        s = s + sum(crf.transitions[a, b] for a, b in zip(seq, seq[1:]))
        scores[seq] = s
    best = max(scores, key=lambda k: scores[k].item())
    return list(best), scores, torch.logsumexp(torch.stack(list(scores.values())), 0)


@pytest.fixture()
def crf() -> CRF:
    torch.manual_seed(0)
    m = CRF(3)
    with torch.no_grad():  # larger transition scores than the init, so they change the answer
        m.transitions.normal_(0, 2)
        m.start_transitions.normal_()
        m.end_transitions.normal_()
    return m


def test_nll_and_viterbi_match_brute_force(crf):
    torch.manual_seed(1)
    emissions = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()  # the second sentence has 2 words
    tags = torch.tensor([[0, 2, 1, 1], [2, 0, 1, 1]])  # tags past the end are ignored
    expected = []
    for r in range(2):
        n = int(mask[r].sum())
        best, scores, log_z = brute_force(crf, emissions[r, :n])
        seq = tuple(tags[r, :n].tolist())
        expected.append(log_z - scores[seq])
        assert viterbi(emissions[r, :n].detach().numpy(), **crf_params(crf)) == best
        assert crf.decode(emissions[r : r + 1], mask[r : r + 1]) == [best]
    assert torch.allclose(crf.nll(emissions, tags, mask), torch.stack(expected).mean(), atol=1e-5)


def test_transitions_change_the_decoded_path():
    m = CRF(2)
    with torch.no_grad():
        m.transitions.copy_(torch.tensor([[0.0, -100.0], [0.0, 0.0]]))  # tag 0 is never followed by tag 1
        m.start_transitions.zero_()
        m.end_transitions.zero_()
    e = np.array([[1.0, 0.0], [0.0, 1.0]])  # the per-word argmax is 0, 1: forbidden
    assert viterbi(e, **crf_params(m)) in ([0, 0], [1, 1])
    assert viterbi(e[:0], **crf_params(m)) == []


def test_compact_gathers_marked_positions_in_order():
    values = torch.arange(12.0).view(2, 6)
    mask = torch.tensor([[0, 1, 0, 1, 1, 0], [1, 0, 0, 0, 0, 0]]).bool()
    out, m = compact(values, mask, width=3)
    assert out.tolist() == [[1.0, 3.0, 4.0], [6.0, 0.0, 0.0]]
    assert m.tolist() == [[True, True, True], [True, False, False]]
    full, _ = compact(values, mask)
    assert full.shape == (2, 6)
    labels = torch.tensor([[-100, 2, -100, 0, 1, -100]])
    e, t, wm = word_emissions(torch.randn(1, 6, 3), labels)
    assert t.tolist() == [[2, 0, 1]] and wm.all() and e.shape == (1, 3, 3)


def test_gold_loss_of_a_crf_student_is_the_crf_nll(crf):
    """The student owns its gold loss (the CRF's NLL); the objective and the Distiller pass it on."""
    from kdexam.objectives import build_objectives
    from kdexam.training.distiller import Distiller

    torch.manual_seed(2)
    logits = torch.randn(2, 5, 3)
    labels = torch.tensor([[-100, 1, -100, 2, -100], [-100, 0, 0, -100, -100]])  # first subwords carry tags
    e, t, m = word_emissions(logits, labels)
    got = GoldLoss("token-classification")({"logits": logits, "gold_loss": crf.nll(e, t, m)}, None, {"labels": labels})
    assert torch.allclose(got, crf.nll(e, t, m))
    plain = GoldLoss("token-classification")({"logits": logits}, None, {"labels": labels})
    assert not torch.allclose(got, plain)

    class Tagger(torch.nn.Module):  # stands for a CRF student: logits out, its own gold loss
        def __init__(self):
            super().__init__()
            self.crf = crf

        def forward(self, input_ids, attention_mask=None):
            return {"logits": logits}

        def gold_loss(self, out_logits, gold):
            return self.crf.nll(*word_emissions(out_logits, gold))

    objective = build_objectives([{"name": "gold"}], "token-classification")
    total, _ = Distiller(Tagger(), objective)({"input_ids": labels.clamp(min=0), "labels": labels}, None)
    assert torch.allclose(total, crf.nll(e, t, m))


def test_decode_with_crf_maps_first_subwords_to_words(crf):
    task = Task("token-classification", ["A", "B", "O"])
    # 4 words: word 1 has two subwords, word 3 was cut off by truncation
    word_ids = [-1, 0, 1, 1, 2, -1]
    logits = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    feats = Features([{"word_ids": word_ids, "n_words": 4}])
    params = crf_params(crf)
    tags = decode(task, [logits], feats, crf=params)[0]
    best = viterbi(logits[[1, 2, 4]], **params)
    assert tags == [task.labels[i] for i in best] + ["O"]
    plain = decode(task, [logits], feats)[0]
    assert plain[:3] == [task.labels[i] for i in logits[[1, 2, 4]].argmax(-1)]


def test_crf_only_for_bilstm_tagging():
    from kdexam.errors import KdexamError
    from kdexam.students import check_spec

    with pytest.raises(KdexamError, match="crf"):
        check_spec(StudentSpec(kind="cnn", crf=True), Task("token-classification", ["A", "B"]))
    with pytest.raises(KdexamError, match="crf"):
        check_spec(StudentSpec(kind="bilstm", crf=True), Task("classification", ["A", "B"]))


def test_crf_tagger_distils_saves_and_reloads(tiny_bert_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_conll(data / "train.conll", tagging_sentences(160, seed=1))
    write_conll(data / "test.conll", tagging_sentences(40, seed=2))
    api.finetune_teacher(data=data, model=tiny_bert_dir, out=tmp_path / "teacher", epochs=6, learning_rate=1e-3, batch_size=16)
    r = api.distill(teacher=tmp_path / "teacher", data=data, student="bilstm", crf=True, hidden_size=32,
                    out=tmp_path / "crf", epochs=6, batch_size=16, learning_rate=5e-3)
    assert r["student"]["metrics"]["accuracy"] >= 0.6, r["student"]["metrics"]  # chance is about 1/3
    # agreement is at least P(both right) >= acc_S + acc_T - 1 (inclusion-exclusion over the same words)
    assert r["student"]["loyalty"]["label"] >= r["student"]["metrics"]["accuracy"] + r["teacher"]["metrics"]["accuracy"] - 1 - 1e-9
    record = json.loads((tmp_path / "crf" / "student.json").read_text())
    assert record["architecture"]["crf"] is True
    assert any("lample2016neural" in c for c in r["citations"])
    model, tok, spec, task = load_student(tmp_path / "crf")
    assert spec.crf and model.crf is not None
    # the saved transitions are the trained ones (not the random init of a rebuilt model)
    again, _ = build_student(spec, task, tmp_path / "teacher")
    assert not torch.allclose(again.crf.transitions, model.crf.transitions)
    save_student(model, tok, spec, task, tmp_path / "copy")
    model2, *_ = load_student(tmp_path / "copy")
    assert torch.equal(model2.crf.transitions, model.crf.transitions)
