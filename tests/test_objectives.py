"""Distillation objectives checked against values computed by hand (plain ``math``)."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

from kdexam.config import ObjectiveSpec
from kdexam.errors import KdexamError
from kdexam.objectives import (
    CompositeObjective,
    GoldLoss,
    HardDistillationLoss,
    KLDivLoss,
    LogitMSELoss,
    RegressionDistillLoss,
    SoftCrossEntropyLoss,
    build_objectives,
    default_objectives,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# ---- hand arithmetic on plain lists -------------------------------------------


def softmax(row: list[float], T: float = 1.0) -> list[float]:
    exps = [math.exp(v / T) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def cross_entropy(p: list[float], q: list[float]) -> float:
    return -sum(pi * math.log(qi) for pi, qi in zip(p, q))


def entropy(p: list[float]) -> float:
    return -sum(pi * math.log(pi) for pi in p)


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


# 2 examples x 3 classes
S = [[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]]
T_ = [[2.0, 0.5, -1.0], [0.0, 1.0, 2.0]]
GOLD = [1, 2]


def outs(rows, grad: bool = False, dtype=torch.float32) -> dict:
    return {"logits": torch.tensor(rows, dtype=dtype, requires_grad=grad)}


def close(a, b, tol: float = 1e-5) -> bool:
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


# ---- classification logit losses ------------------------------------------------


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_kl_matches_hand_computation(T):
    unscaled = mean([kl(softmax(t, T), softmax(s, T)) for s, t in zip(S, T_)])
    got = KLDivLoss(temperature=T)(outs(S), outs(T_), {})
    assert got.dtype == torch.float32 and got.dim() == 0
    assert close(got, T * T * unscaled)


def test_kl_temperature_squared_factor():
    # hand values at T=3: the loss carries T^2 = 9 times the unscaled KL, and is not the unscaled KL
    unscaled = mean([kl(softmax(t, 3.0), softmax(s, 3.0)) for s, t in zip(S, T_)])
    got = KLDivLoss(temperature=3.0)(outs(S), outs(T_), {}).item()
    assert close(got / unscaled, 9.0)
    assert not close(got, unscaled)


def test_kl_is_zero_when_student_equals_teacher():
    assert close(KLDivLoss(temperature=2.0)(outs(T_), outs(T_), {}), 0.0)


@pytest.mark.parametrize("T", [1.0, 2.5])
def test_soft_cross_entropy_matches_hand_computation(T):
    expected = T * T * mean([cross_entropy(softmax(t, T), softmax(s, T)) for s, t in zip(S, T_)])
    assert close(SoftCrossEntropyLoss(temperature=T)(outs(S), outs(T_), {}), expected)


@pytest.mark.parametrize("T", [1.0, 2.0, 5.0])
def test_soft_ce_minus_kl_is_t_squared_teacher_entropy(T):
    teacher_entropy = mean([entropy(softmax(t, T)) for t in T_])
    diff = SoftCrossEntropyLoss(T)(outs(S), outs(T_), {}) - KLDivLoss(T)(outs(S), outs(T_), {})
    assert close(diff, T * T * teacher_entropy)


def test_soft_ce_and_kl_have_the_same_gradient():
    a, b = outs(S, grad=True), outs(S, grad=True)
    KLDivLoss(2.0)(a, outs(T_), {}).backward()
    SoftCrossEntropyLoss(2.0)(b, outs(T_), {}).backward()
    assert torch.allclose(a["logits"].grad, b["logits"].grad, atol=1e-6)


def test_logit_mse_matches_hand_computation():
    sq = [(s - t) ** 2 for srow, trow in zip(S, T_) for s, t in zip(srow, trow)]
    expected = sum(sq) / 6  # mean over 2 examples x 3 classes
    assert close(LogitMSELoss()(outs(S), outs(T_), {}), expected)


def test_hard_distillation_matches_hand_computation():
    teacher_argmax = [0, 2]  # from T_: 2.0 is the largest of row 0, 2.0 of row 1
    expected = mean([-math.log(softmax(s)[y]) for s, y in zip(S, teacher_argmax)])
    assert close(HardDistillationLoss()(outs(S), outs(T_), {}), expected)
    # the gold labels differ from the teacher's argmax, and the loss must use the teacher's
    with_gold = mean([-math.log(softmax(s)[y]) for s, y in zip(S, GOLD)])
    assert not close(expected, with_gold)
    assert close(HardDistillationLoss()(outs(S), outs(T_), {"labels": torch.tensor(GOLD)}), expected)


def test_gold_cross_entropy_matches_hand_and_ignores_minus_100():
    expected = mean([-math.log(softmax(s)[y]) for s, y in zip(S, GOLD)])
    assert close(GoldLoss()(outs(S), None, {"labels": torch.tensor(GOLD)}), expected)
    only_first = -math.log(softmax(S[0])[1])
    got = GoldLoss("classification")(outs(S), None, {"labels": torch.tensor([1, -100])})
    assert close(got, only_first)


def test_gold_with_no_labelled_row_is_zero_with_graph():
    student = outs(S, grad=True)
    loss = GoldLoss("classification")(student, None, {"labels": torch.tensor([-100, -100])})
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(student["logits"].grad == 0)


def test_gold_returns_the_students_own_gold_loss():
    # e.g. a CRF tagger's negative log-likelihood, computed by the student and handed over as a tensor
    own = torch.tensor(0.75, dtype=torch.float16, requires_grad=True)
    got = GoldLoss("token-classification")({"logits": torch.tensor(TOK_S), "gold_loss": own}, None, token_batch())
    assert got.dtype == torch.float32 and close(got.detach(), 0.75)
    got.backward()
    assert own.grad is not None
    # without it, the cross-entropy over labelled tokens as usual
    plain = GoldLoss("token-classification")({"logits": torch.tensor(TOK_S), "gold_loss": None}, None, token_batch())
    assert close(plain, mean([-math.log(softmax(TOK_S[b][i])[TOK_LABELS[b][i]]) for b, i in LABELLED]))
    with pytest.raises(ValueError, match="0-dim"):
        GoldLoss()({"logits": torch.tensor(S), "gold_loss": torch.zeros(2)}, None, {"labels": torch.tensor(GOLD)})


def test_gold_without_labels_is_an_error():
    with pytest.raises(ValueError, match="labels"):
        GoldLoss()(outs(S), None, {})


# ---- regression ---------------------------------------------------------------------

PRED = [0.5, 2.0, -1.0]
TEACHER_PRED = [1.0, 1.5, 0.0]
TARGET = [0.0, 3.0, -1.5]


@pytest.mark.parametrize("student_shape", ["B", "B1"])
@pytest.mark.parametrize("teacher_shape", ["B", "B1"])
def test_regression_distill_accepts_b_and_b1(student_shape, teacher_shape):
    def shaped(v, kind):
        t = torch.tensor(v)
        return {"logits": t if kind == "B" else t.unsqueeze(1)}

    expected = mean([(p - t) ** 2 for p, t in zip(PRED, TEACHER_PRED)])  # (0.25 + 0.25 + 1) / 3 = 0.5
    assert close(expected, 0.5)
    assert close(RegressionDistillLoss()(shaped(PRED, student_shape), shaped(TEACHER_PRED, teacher_shape), {}), expected)


@pytest.mark.parametrize("unsqueeze", [False, True])
def test_gold_regression_mse_by_hand(unsqueeze):
    pred = torch.tensor(PRED)
    student = {"logits": pred.unsqueeze(1) if unsqueeze else pred}
    expected = mean([(p - y) ** 2 for p, y in zip(PRED, TARGET)])  # (0.25 + 1 + 0.25) / 3 = 0.5
    assert close(expected, 0.5)
    assert close(GoldLoss("regression")(student, None, {"labels": torch.tensor(TARGET)}), expected)
    # inferred from float labels when no task kind is given
    assert close(GoldLoss()(student, None, {"labels": torch.tensor(TARGET)}), expected)


def test_gold_regression_skips_nan_targets():
    labels = torch.tensor([0.0, float("nan"), -1.5])
    expected = mean([(0.5 - 0.0) ** 2, (-1.0 + 1.5) ** 2])
    assert close(GoldLoss("regression")({"logits": torch.tensor(PRED)}, None, {"labels": labels}), expected)


def test_regression_distill_rejects_class_logits():
    with pytest.raises(ValueError, match="one score per example"):
        RegressionDistillLoss()(outs(S), outs(T_), {})


# ---- token classification: which positions count -------------------------------------

# B=2 sentences, L=3 positions, C=2 tags
TOK_S = [[[0.2, 1.0], [1.5, -0.5], [0.0, 0.3]], [[2.0, 0.0], [-1.0, 1.0], [0.7, 0.7]]]
TOK_T = [[[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]], [[0.3, 1.2], [2.0, -2.0], [1.0, 0.0]]]
TOK_LABELS = [[-100, 0, 1], [1, -100, -100]]  # counted: (0,1), (0,2), (1,0)
TOK_ATTN = [[1, 1, 1], [1, 1, 0]]  # counted without labels: all but (1,2)
LABELLED = [(0, 1), (0, 2), (1, 0)]
REAL = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]

TOKEN_LOSSES = {
    "kl": (lambda: KLDivLoss(2.0), lambda s, t: 4.0 * kl(softmax(t, 2.0), softmax(s, 2.0))),
    "soft_ce": (lambda: SoftCrossEntropyLoss(2.0), lambda s, t: 4.0 * cross_entropy(softmax(t, 2.0), softmax(s, 2.0))),
    "mse": (lambda: LogitMSELoss(), lambda s, t: mean([(a - b) ** 2 for a, b in zip(s, t)])),
    "hard": (lambda: HardDistillationLoss(), lambda s, t: -math.log(softmax(s)[t.index(max(t))])),
}


def token_batch(with_labels: bool = True) -> dict:
    batch = {"attention_mask": torch.tensor(TOK_ATTN)}
    if with_labels:
        batch["labels"] = torch.tensor(TOK_LABELS)
    return batch


@pytest.mark.parametrize("name", list(TOKEN_LOSSES))
def test_token_loss_averages_over_labelled_tokens(name):
    make, per_token = TOKEN_LOSSES[name]
    expected = mean([per_token(TOK_S[b][i], TOK_T[b][i]) for b, i in LABELLED])
    assert close(make()(outs(TOK_S), outs(TOK_T), token_batch()), expected)


@pytest.mark.parametrize("name", list(TOKEN_LOSSES))
def test_token_loss_falls_back_to_attention_mask(name):
    make, per_token = TOKEN_LOSSES[name]
    expected = mean([per_token(TOK_S[b][i], TOK_T[b][i]) for b, i in REAL])
    assert close(make()(outs(TOK_S), outs(TOK_T), token_batch(with_labels=False)), expected)


@pytest.mark.parametrize("name", list(TOKEN_LOSSES))
def test_explicit_loss_mask_takes_precedence(name):
    make, per_token = TOKEN_LOSSES[name]
    batch = {**token_batch(), "loss_mask": torch.tensor([[1, 0, 0], [0, 1, 0]])}
    expected = mean([per_token(TOK_S[b][i], TOK_T[b][i]) for b, i in [(0, 0), (1, 1)]])
    assert close(make()(outs(TOK_S), outs(TOK_T), batch), expected)


@pytest.mark.parametrize("name", list(TOKEN_LOSSES))
@pytest.mark.parametrize("with_labels", [True, False])
def test_masked_positions_do_not_change_token_loss(name, with_labels):
    make, _ = TOKEN_LOSSES[name]
    batch = token_batch(with_labels)
    counted = LABELLED if with_labels else REAL
    base = make()(outs(TOK_S), outs(TOK_T), batch).item()
    s, t = torch.tensor(TOK_S), torch.tensor(TOK_T)
    s2, t2 = s.clone(), t.clone()
    for b in range(2):
        for i in range(3):
            if (b, i) not in counted:
                s2[b, i] = torch.tensor([9.0, -7.0])
                t2[b, i] = torch.tensor([-5.0, 8.0])
    assert close(make()({"logits": s2}, {"logits": t2}, batch), base)
    # and a change at a counted position does change it
    s2[counted[0][0], counted[0][1]] += torch.tensor([3.0, -3.0])
    assert not close(make()({"logits": s2}, {"logits": t2}, batch), base)


def test_gold_token_classification_by_hand():
    expected = mean([-math.log(softmax(TOK_S[b][i])[TOK_LABELS[b][i]]) for b, i in LABELLED])
    loss = GoldLoss("token-classification")(outs(TOK_S), None, token_batch())
    assert close(loss, expected)


def test_token_mask_of_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match="does not match"):
        KLDivLoss()(outs(TOK_S), outs(TOK_T), {"attention_mask": torch.ones(2, 5)})


def test_student_teacher_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        KLDivLoss()(outs(S), {"logits": torch.zeros(2, 4)}, {})


def test_missing_teacher_is_an_error():
    with pytest.raises(ValueError, match="teacher"):
        KLDivLoss()(outs(S), None, {})


# ---- gradients and precision ------------------------------------------------------------

ALL_LOSSES = [
    (lambda: KLDivLoss(2.0), S, T_),
    (lambda: SoftCrossEntropyLoss(2.0), S, T_),
    (lambda: LogitMSELoss(), S, T_),
    (lambda: HardDistillationLoss(), S, T_),
    (lambda: GoldLoss("classification"), S, T_),
    (lambda: RegressionDistillLoss(), PRED, TEACHER_PRED),
]


@pytest.mark.parametrize("make,s,t", ALL_LOSSES)
def test_gradient_reaches_student_not_teacher(make, s, t):
    student, teacher = outs(s, grad=True), outs(t, grad=True)
    batch = {"labels": torch.tensor(GOLD)}
    make()(student, teacher, batch).backward()
    assert student["logits"].grad is not None and student["logits"].grad.abs().sum() > 0
    assert teacher["logits"].grad is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("make,s,t", ALL_LOSSES)
def test_half_precision_inputs_give_float32_loss(make, s, t, dtype):
    batch = {"labels": torch.tensor(GOLD)}
    low = make()(outs(s, dtype=dtype), outs(t, dtype=dtype), batch)
    full = make()(outs(s), outs(t), batch)
    assert low.dtype == torch.float32
    assert close(low, full, tol=2e-2)


def test_half_precision_regression_gold_is_float32():
    loss = GoldLoss("regression")({"logits": torch.tensor(PRED, dtype=torch.float16)}, None,
                                  {"labels": torch.tensor(TARGET, dtype=torch.float16)})
    assert loss.dtype == torch.float32 and close(loss, 0.5)


def test_objectives_have_names_and_citations():
    names = {KLDivLoss(): "kl", SoftCrossEntropyLoss(): "soft_ce", LogitMSELoss(): "mse",
             HardDistillationLoss(): "hard", GoldLoss(): "gold", RegressionDistillLoss(): "regression_mse"}
    for objective, name in names.items():
        assert objective.name == name
        # every distillation objective cites its paper; the gold loss is plain supervised training and cites none
        assert (objective.citation == "") == (name == "gold"), name
    assert "1503.02531" in KLDivLoss().citation and "Hinton" in SoftCrossEntropyLoss().citation
    assert "Caruana" in LogitMSELoss().citation and "Tang" in LogitMSELoss().citation
    assert "Touvron" in HardDistillationLoss().citation and "Caruana" in RegressionDistillLoss().citation
    for objective in names:
        for entry in objective.citation_entries:
            assert entry.startswith("@") and entry.rstrip().endswith("}")


def test_bad_temperature_is_an_error():
    with pytest.raises(ValueError):
        KLDivLoss(temperature=0.0)


# ---- composition ---------------------------------------------------------------------


def test_composite_total_is_weighted_sum_of_hand_values():
    objective = build_objectives(
        [ObjectiveSpec(name="kl", temperature=2.0, weight=0.3), ObjectiveSpec(name="gold", weight=0.7),
         ObjectiveSpec(name="mse", weight=0.1)], "classification")
    total, parts = objective(outs(S), outs(T_), {"labels": torch.tensor(GOLD)})
    hand_kl = 4.0 * mean([kl(softmax(t, 2.0), softmax(s, 2.0)) for s, t in zip(S, T_)])
    hand_gold = mean([-math.log(softmax(s)[y]) for s, y in zip(S, GOLD)])
    hand_mse = sum((a - b) ** 2 for sr, tr in zip(S, T_) for a, b in zip(sr, tr)) / 6
    assert set(parts) == {"kl", "gold", "mse"}
    assert all(isinstance(v, float) for v in parts.values())
    assert close(parts["kl"], hand_kl) and close(parts["gold"], hand_gold) and close(parts["mse"], hand_mse)
    assert close(total, 0.3 * hand_kl + 0.7 * hand_gold + 0.1 * hand_mse)
    assert total.dtype == torch.float32 and total.dim() == 0


def test_composite_gradient_reaches_student_not_teacher():
    objective = build_objectives(default_objectives("classification"), "classification")
    student, teacher = outs(S, grad=True), outs(T_, grad=True)
    total, _ = objective(student, teacher, {"labels": torch.tensor(GOLD)})
    total.backward()
    assert student["logits"].grad.abs().sum() > 0 and teacher["logits"].grad is None


def test_gold_only_needs_no_teacher():
    objective = build_objectives([ObjectiveSpec(name="gold")], "classification")
    assert objective.needs_teacher is False
    total, parts = objective(outs(S), None, {"labels": torch.tensor(GOLD)})
    assert close(total, parts["gold"])
    assert build_objectives([{"name": "kl"}], "classification").needs_teacher is True


def test_zero_weight_objective_is_left_out():
    objective = build_objectives([{"name": "kl", "weight": 0.0}, {"name": "gold"}], "classification")
    assert objective.names == ["gold"] and objective.needs_teacher is False and objective.citations() == []


def test_citations_are_those_used_each_once():
    objective = build_objectives([{"name": "kl"}, {"name": "soft_ce"}, {"name": "mse"}, {"name": "gold"}],
                                 "classification")
    cites = objective.citations()
    assert len(cites) == 3  # Hinton (kl and soft_ce), Ba & Caruana, Tang
    assert "Hinton" in cites[0] and "Caruana" in cites[1] and "Tang" in cites[2]


def test_composite_on_token_classification_and_regression():
    tok = build_objectives(default_objectives("token-classification"), "token-classification")
    total, parts = tok(outs(TOK_S), outs(TOK_T), token_batch())
    hand_kl = mean([4.0 * kl(softmax(TOK_T[b][i], 2.0), softmax(TOK_S[b][i], 2.0)) for b, i in LABELLED])
    hand_gold = mean([-math.log(softmax(TOK_S[b][i])[TOK_LABELS[b][i]]) for b, i in LABELLED])
    assert close(total, 0.5 * hand_kl + 0.5 * hand_gold)

    reg = build_objectives(default_objectives("regression"), "regression")
    total, parts = reg({"logits": torch.tensor(PRED).unsqueeze(1)}, {"logits": torch.tensor(TEACHER_PRED)},
                       {"labels": torch.tensor(TARGET)})
    assert parts == pytest.approx({"regression_mse": 0.5, "gold": 0.5})
    assert close(total, 0.5)


def test_default_objectives():
    for kind in ("classification", "token-classification"):
        specs = default_objectives(kind)
        assert [(s.name, s.weight, s.params) for s in specs] == [("kl", 0.5, {"temperature": 2.0}), ("gold", 0.5, {})]
    assert [(s.name, s.weight) for s in default_objectives("regression")] == [("regression_mse", 0.5), ("gold", 0.5)]
    with pytest.raises(KdexamError, match="regression"):
        default_objectives("regresion")


def test_temperature_defaults_and_spec_round_trip():
    assert build_objectives([ObjectiveSpec(name="kl")], "classification").objectives[0].temperature == 1.0
    assert build_objectives([{"name": "soft_ce", "temperature": 3}], "classification").objectives[0].temperature == 3.0
    assert not hasattr(build_objectives([{"name": "mse"}], "classification").objectives[0], "temperature")
    for spec in default_objectives("classification") + default_objectives("regression"):
        assert ObjectiveSpec.model_validate(spec.model_dump()) == spec


# ---- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,task", [("kl", "regression"), ("soft_ce", "regression"), ("mse", "regression"),
                                       ("hard", "regression"), ("regression_mse", "classification"),
                                       ("regression_mse", "token-classification")])
def test_objective_that_does_not_fit_the_task(name, task):
    with pytest.raises(KdexamError) as e:
        build_objectives([ObjectiveSpec(name=name)], task)
    msg = str(e.value)
    assert f"'{name}'" in msg and task in msg and "gold" in msg
    assert msg.count(". ") == 0 and msg.endswith(".")  # one sentence


@pytest.mark.parametrize("typo,closest", [("kll", "kl"), ("softce", "soft_ce"), ("gol", "gold"),
                                          ("regression-mse", "regression_mse"), ("hrad", "hard")])
def test_unknown_name_names_the_closest(typo, closest):
    with pytest.raises(KdexamError, match=f"did you mean '{closest}'"):
        build_objectives([{"name": typo}], "classification")
    with pytest.raises(KdexamError, match=f"did you mean '{closest}'"):
        build_objectives([ObjectiveSpec(name=typo)], "classification")


def test_temperature_on_an_objective_without_one():
    with pytest.raises(KdexamError) as e:
        build_objectives([ObjectiveSpec(name="mse", temperature=2.0)], "classification")
    assert str(e.value) == ("Objective 1 ('mse') has no parameter 'temperature'; it takes no parameters besides name "
                            "and weight.")
    with pytest.raises(KdexamError, match=r"Objective 2 \('gold'\) has no parameter 'temperature'"):
        build_objectives([{"name": "kl"}, {"name": "gold", "temperature": 1.0}], "classification")
    with pytest.raises(KdexamError, match="has no parameter 'temprature'; did you mean 'temperature'"):
        build_objectives([{"name": "kl", "temprature": 2.0}], "classification")


@pytest.mark.parametrize("spec,pattern", [
    ({"name": "kl", "weight": -0.5}, ">= 0"),
    ({"name": "kl", "temperature": 0}, "temperature > 0"),
    ({"name": "kl", "wieght": 1.0}, "no parameter 'wieght'; did you mean 'weight'"),
    ({"name": "soft_ce", "temperature": float("nan")}, "temperature > 0"),
    ({"name": "kl", "temperature": "hot"}, "parameter 'temperature' is invalid"),
])
def test_invalid_spec_fields(spec, pattern):
    with pytest.raises(KdexamError, match=pattern):
        build_objectives([spec], "classification")


def test_all_zero_weights_empty_list_duplicates_and_bad_task():
    with pytest.raises(KdexamError, match="weights are 0"):
        build_objectives([{"name": "kl", "weight": 0}, {"name": "gold", "weight": 0}], "classification")
    with pytest.raises(KdexamError, match="empty"):
        build_objectives([], "classification")
    with pytest.raises(KdexamError, match="listed 2 times"):
        build_objectives([{"name": "kl", "temperature": 2}, {"name": "kl", "temperature": 4}], "classification")
    with pytest.raises(KdexamError, match="did you mean 'token-classification'"):
        build_objectives([{"name": "gold"}], "token_classification")


def test_composite_without_teacher_when_needed_is_an_error():
    objective = build_objectives([{"name": "kl"}], "classification")
    with pytest.raises(ValueError, match="teacher"):
        objective(outs(S), None, {})


def test_composite_rejects_duplicate_names():
    with pytest.raises(ValueError, match="distinct"):
        CompositeObjective([KLDivLoss(1.0), KLDivLoss(2.0)], [1.0, 1.0])


# ---- the docstring examples run ---------------------------------------------------------


@pytest.mark.parametrize("module", ["kdexam.objectives.logits", "kdexam.objectives.composite",
                                    "kdexam.objectives.mapping", "kdexam.objectives.features",
                                    "kdexam.objectives.attention", "kdexam.objectives.relations"])
def test_docstring_examples(module):
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_tagging_logit_losses_skip_words_the_teacher_never_saw():
    """A word cut by the teacher's truncation has all-zero teacher logits (``stored_form``): it is no
    target (neither class 0 for the hard loss nor a uniform distribution for KL)."""
    import numpy as np
    import torch.nn.functional as F

    from kdexam.objectives import HardDistillationLoss, KLDivLoss
    from kdexam.tasks import Task
    from kdexam.teachers.teacher import stored_form, to_batch

    task = Task("token-classification", ["B-PER", "I-PER", "O"])
    teacher_row = {"word_ids": [None, 0, 1, None], "n_words": 4, "input_ids": [0, 1, 2, 3]}  # words 2, 3 cut
    stored = stored_form("logits", torch.tensor([[0, 0, 0], [0, 0, 9], [0, 0, 9], [0, 0, 0.0]]), teacher_row, task)
    batch = {"input_ids": torch.zeros(1, 6, dtype=torch.long), "index": torch.tensor([0]),
             "labels": torch.tensor([[-100, 2, 2, 2, 2, -100]]), "attention_mask": torch.ones(1, 6, dtype=torch.long)}
    teacher = to_batch({"logits": [stored]}, batch, task, [np.array([1, 2, 3, 4])])
    student = torch.zeros(1, 6, 3)
    student[0, 1:5, 2] = 9.0  # "O" everywhere, as the teacher says for the two words it saw
    assert HardDistillationLoss()({"logits": student}, teacher, batch).item() == pytest.approx(
        F.cross_entropy(torch.tensor([[0, 0, 9.0]] * 2), torch.tensor([2, 2])).item())
    assert KLDivLoss(1.0)({"logits": student}, teacher, batch).item() == pytest.approx(0.0, abs=1e-6)
    student[0, 3] = torch.tensor([9.0, 0, 0])  # a cut word moves: no loss changes
    assert KLDivLoss(1.0)({"logits": student}, teacher, batch).item() == pytest.approx(0.0, abs=1e-6)
