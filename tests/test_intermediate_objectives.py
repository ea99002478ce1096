"""Intermediate (layer) objectives, layer mappings, matches and the registry.

Expected values are computed by hand with explicit loops over plain Python floats
(``math``), from the formulas in the docstrings, never by calling the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kdexam.config import MatchSpec, ObjectiveSpec
from kdexam.errors import KdexamError
from kdexam.objectives import (
    OBJECTIVES,
    AttentionKLLoss,
    AttentionMSELoss,
    CompositeObjective,
    EmbeddingMSELoss,
    HiddenCosineLoss,
    HiddenMSELoss,
    ModelShape,
    PKDLoss,
    RelationsLoss,
    ValueRelationLoss,
    build_objectives,
    general_objectives,
    layer_pairs,
)
from kdexam.tasks import TASK_KINDS

pytestmark = pytest.mark.usefixtures("one_thread")

INTERMEDIATE = ["hidden_mse", "hidden_cosine", "embedding_mse", "attention_kl", "attention_mse", "value_relation",
                "relations", "pkd"]
LOGIT = ["kl", "soft_ce", "mse", "hard", "regression_mse"]
TEACHER = ModelShape(num_layers=4, hidden_size=4, num_heads=2)
SAME = ModelShape(num_layers=2, hidden_size=4, num_heads=2)  # the teacher's width and heads
NARROW = ModelShape(num_layers=2, hidden_size=2, num_heads=2)  # other width, same heads

# ---- hand arithmetic on plain lists ----------------------------------------------------


def rand(*shape, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def close(a, b, tol: float = 1e-5) -> bool:
    a, b = (x.detach() if isinstance(x, torch.Tensor) else x for x in (a, b))
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


def dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


def norm(a) -> float:
    return math.sqrt(dot(a, a))


def softmax(row: list[float]) -> list[float]:
    m = max(row)
    exps = [math.exp(v - m) for v in row]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def linear(W: nn.Linear, x: list[float]) -> list[float]:
    w, b = W.weight.tolist(), W.bias.tolist()
    return [dot(row, x) + bias for row, bias in zip(w, b)]


def head(vec: list[float], a: int, heads: int) -> list[float]:
    d = len(vec) // heads
    return vec[a * d:(a + 1) * d]


def real_positions(mask) -> list[tuple[int, int]]:
    return [(b, i) for b, row in enumerate(mask) for i, m in enumerate(row) if m]


MASK = [[1, 1, 1], [1, 1, 0]]  # B = 2, L = 3; position (1, 2) is padding
REAL = real_positions(MASK)


def batch(mask=MASK) -> dict:
    return {"attention_mask": torch.tensor(mask)}


# ---- padding invariance: garbage in appended padded positions changes nothing --------------


def with_garbage(x: torch.Tensor, dims: tuple[int, ...], extra: int = 2, seed: int = 99) -> torch.Tensor:
    """``x`` with ``extra`` positions appended along each of ``dims``, filled with large garbage."""
    for d in dims:
        shape = list(x.shape)
        shape[d] = extra
        x = torch.cat([x, 50.0 * rand(*shape, seed=seed + d)], dim=d)
    return x


def padded(outputs: dict, extra: int = 2) -> dict:
    out = {}
    for k, v in outputs.items():
        if k.startswith("attention."):
            out[k] = with_garbage(v, (2, 3), extra).abs()
        elif k.startswith("cls."):
            out[k] = v
        else:
            out[k] = with_garbage(v, (1,), extra)
    return out


def padded_batch(mask=MASK, extra: int = 2) -> dict:
    return {"attention_mask": torch.tensor([row + [0] * extra for row in mask])}


# ---- hidden states --------------------------------------------------------------------------


def hidden_pair(seed: int, hs: int = 4, ht: int = 4):
    return rand(2, 3, hs, seed=seed), rand(2, 3, ht, seed=seed + 1)


def hand_hidden_mse(s, t, W=None) -> float:
    total, n = 0.0, 0
    for b, i in REAL:
        x = s[b, i].tolist()
        y = linear(W, x) if W is not None else x
        total += sum((a - c) ** 2 for a, c in zip(y, t[b, i].tolist()))
        n += 1
    return total / (n * t.shape[-1])


def hand_hidden_cosine(s, t, W=None) -> float:
    values = []
    for b, i in REAL:
        x = s[b, i].tolist()
        y = linear(W, x) if W is not None else x
        ty = t[b, i].tolist()
        values.append(1 - dot(y, ty) / (norm(y) * norm(ty)))
    return sum(values) / len(values)


def test_hidden_mse_by_hand_mean_over_pairs():
    s1, t2 = hidden_pair(1)
    s2, t4 = hidden_pair(3)
    loss = HiddenMSELoss([(2, 1), (4, 2)], teacher_width=4, student_width=4)
    got = loss({"hidden.1": s1, "hidden.2": s2}, {"hidden.2": t2, "hidden.4": t4}, batch())
    assert got.dtype == torch.float32 and got.dim() == 0
    assert close(got, (hand_hidden_mse(s1, t2) + hand_hidden_mse(s2, t4)) / 2)
    assert len(list(loss.parameters())) == 0  # equal widths, auto: no projection


def test_hidden_mse_with_projection_by_hand():
    s, t = hidden_pair(5, hs=2, ht=4)
    loss = HiddenMSELoss([(2, 1)], teacher_width=4, student_width=2)
    W = loss.projections["t2_s1"]
    assert isinstance(W, nn.Linear) and W.in_features == 2 and W.out_features == 4
    assert close(loss({"hidden.1": s}, {"hidden.2": t}, batch()), hand_hidden_mse(s, t, W))


def test_hidden_cosine_by_hand_with_and_without_projection():
    s, t = hidden_pair(7)
    loss = HiddenCosineLoss([(3, 2)], teacher_width=4, student_width=4)
    assert close(loss({"hidden.2": s}, {"hidden.3": t}, batch()), hand_hidden_cosine(s, t))
    s, t = hidden_pair(9, hs=2, ht=4)
    loss = HiddenCosineLoss([(3, 2)], teacher_width=4, student_width=2)
    assert close(loss({"hidden.2": s}, {"hidden.3": t}, batch()), hand_hidden_cosine(s, t, loss.projections["t3_s2"]))


def test_embedding_mse_is_the_embedding_pair():
    s, t = hidden_pair(11, hs=2, ht=4)
    objective = build_objectives([{"name": "embedding_mse"}], "classification", TEACHER, NARROW)
    loss = objective.objectives[0]
    assert isinstance(loss, EmbeddingMSELoss) and loss.pairs == [(0, 0)]
    assert objective.teacher_requires == {"hidden.0"} and objective.student_requires == {"hidden.0"}
    total, parts = objective({"hidden.0": s}, {"hidden.0": t}, batch())
    assert close(parts["embedding_mse"], hand_hidden_mse(s, t, loss.projections["t0_s0"]))


def test_pkd_by_hand():
    cs1, ct2 = rand(3, 4, seed=13), rand(3, 4, seed=14)
    cs2, ct4 = rand(3, 4, seed=15), rand(3, 4, seed=16)

    def hand(cs, ct) -> float:
        total = 0.0
        for b in range(cs.shape[0]):
            x, y = cs[b].tolist(), ct[b].tolist()
            total += sum((a / norm(x) - c / norm(y)) ** 2 for a, c in zip(x, y))
        return total / cs.shape[0]

    loss = PKDLoss([(2, 1), (4, 2)], teacher_width=4, student_width=4)
    got = loss({"cls.1": cs1, "cls.2": cs2}, {"cls.2": ct2, "cls.4": ct4}, {})
    assert close(got, (hand(cs1, ct2) + hand(cs2, ct4)) / 2)
    # scale-free on both sides
    assert close(loss({"cls.1": 3 * cs1, "cls.2": cs2}, {"cls.2": 0.1 * ct2, "cls.4": ct4}, {}), got)


# ---- attention -----------------------------------------------------------------------------------


def attention_probs(seed: int, mask=MASK, heads: int = 2) -> torch.Tensor:
    """[B, heads, L, L] softmax probabilities with padded keys at 0, as a model gives them."""
    scores = rand(len(mask), heads, len(mask[0]), len(mask[0]), seed=seed)
    keys = torch.tensor(mask).bool()[:, None, None, :]
    return scores.masked_fill(~keys, float("-inf")).softmax(-1)


def hand_attention_kl(a_s, a_t, mask=MASK) -> float:
    heads = a_s.shape[1]
    total, rows = 0.0, 0
    for b, i in real_positions(mask):
        rows += 1
        keys = [j for j, m in enumerate(mask[b]) if m]
        for a in range(heads):
            total += kl([a_t[b, a, i, j].item() for j in keys], [a_s[b, a, i, j].item() for j in keys])
    return total / (heads * rows)


def test_attention_kl_by_hand():
    a_s, a_t = attention_probs(21), attention_probs(22)
    got = AttentionKLLoss([(4, 2)], heads=2)({"attention.2": a_s}, {"attention.4": a_t}, batch())
    assert close(got, hand_attention_kl(a_s, a_t))
    assert close(AttentionKLLoss([(4, 2)])({"attention.2": a_t}, {"attention.4": a_t}, batch()), 0.0)


def hand_scores(q, k, b, a, i, j, heads) -> float:
    qi, kj = head(q[b, i].tolist(), a, heads), head(k[b, j].tolist(), a, heads)
    return dot(qi, kj) / math.sqrt(len(qi))


def test_attention_mse_by_hand_different_widths():
    qs, ks = rand(2, 3, 2, seed=31), rand(2, 3, 2, seed=32)  # student width 2, 2 heads of 1
    qt, kt = rand(2, 3, 4, seed=33), rand(2, 3, 4, seed=34)  # teacher width 4, 2 heads of 2
    total, count = 0.0, 0
    for b in range(2):
        real = [i for i, m in enumerate(MASK[b]) if m]
        for a in range(2):
            for i in real:
                for j in real:
                    total += (hand_scores(qs, ks, b, a, i, j, 2) - hand_scores(qt, kt, b, a, i, j, 2)) ** 2
                    count += 1
    loss = AttentionMSELoss([(3, 1)], heads=2)
    got = loss({"query.1": qs, "key.1": ks}, {"query.3": qt, "key.3": kt}, batch())
    assert count == 2 * (9 + 4)
    assert close(got, total / count)


def hand_relation_kl(xs, ys, xt, yt, heads: int, mask=MASK) -> float:
    """Mean over heads and real rows of KL(softmax(x_t y_tᵀ/√d) ‖ softmax(x_s y_sᵀ/√d)) over real keys."""
    total, rows = 0.0, 0
    for b, i in real_positions(mask):
        rows += 1
        keys = [j for j, m in enumerate(mask[b]) if m]
        for a in range(heads):
            p_t = softmax([hand_scores(xt, yt, b, a, i, j, heads) for j in keys])
            p_s = softmax([hand_scores(xs, ys, b, a, i, j, heads) for j in keys])
            total += kl(p_t, p_s)
    return total / (heads * rows)


def test_value_relation_by_hand():
    vs, vt = rand(2, 3, 2, seed=41), rand(2, 3, 4, seed=42)
    got = ValueRelationLoss([(4, 2)], heads=2)({"value.2": vs}, {"value.4": vt}, batch())
    assert close(got, hand_relation_kl(vs, vs, vt, vt, 2))
    assert close(ValueRelationLoss([(4, 2)], heads=2)({"value.2": vt}, {"value.4": vt}, batch()), 0.0)


def test_relations_by_hand_with_different_widths_and_heads():
    student = {f"{k}.2": rand(2, 3, 6, seed=50 + n) for n, k in enumerate(("query", "key", "value"))}
    teacher = {f"{k}.4": rand(2, 3, 4, seed=60 + n) for n, k in enumerate(("query", "key", "value"))}
    loss = RelationsLoss([(4, 2)], relations=["qq", "vv", "qk"], relation_heads=2)
    s = lambda k: student[f"{k}.2"]  # noqa: E731
    t = lambda k: teacher[f"{k}.4"]  # noqa: E731
    expected = (hand_relation_kl(s("query"), s("query"), t("query"), t("query"), 2)
                + hand_relation_kl(s("value"), s("value"), t("value"), t("value"), 2)
                + hand_relation_kl(s("query"), s("key"), t("query"), t("key"), 2)) / 3
    assert close(loss(student, teacher, batch()), expected)
    assert loss.requires == ({"query.4", "key.4", "value.4"}, {"query.2", "key.2", "value.2"})


def test_value_relation_equals_relations_vv_with_the_model_heads():
    vs, vt = rand(2, 3, 4, seed=71), rand(2, 3, 4, seed=72)
    a = ValueRelationLoss([(4, 2)], heads=2)({"value.2": vs}, {"value.4": vt}, batch())
    b = RelationsLoss([(4, 2)], relations=["vv"], relation_heads=2)({"value.2": vs}, {"value.4": vt}, batch())
    assert close(a, b)


# ---- every objective: padding, precision, gradients ------------------------------------------------


def example(name: str):
    """(objective, student outputs, teacher outputs) for ``name``, teacher 4x4 with 2 heads, student 2 layers."""
    shapes = {"embedding_mse": NARROW, "hidden_mse": NARROW, "hidden_cosine": NARROW, "pkd": NARROW}
    student_shape = shapes.get(name, SAME)
    params = {"relations": {"relations": ["qq", "kk", "vv", "qk"]}}.get(name, {})
    objective = build_objectives([{"name": name, **params}], "classification", TEACHER, student_shape).objectives[0]
    teacher_keys, student_keys = objective.requires
    sides = []
    for keys, shape, seed in ((student_keys, student_shape, 100), (teacher_keys, TEACHER, 200)):
        out = {}
        for n, key in enumerate(sorted(keys)):
            if key.startswith("attention."):
                out[key] = attention_probs(seed + n)
            elif key.startswith("cls."):
                out[key] = rand(2, shape.hidden_size, seed=seed + n)
            else:
                out[key] = rand(2, 3, shape.hidden_size, seed=seed + n)
        sides.append(out)
    return objective, sides[0], sides[1]


@pytest.mark.parametrize("name", INTERMEDIATE)
def test_padding_does_not_change_the_loss(name):
    objective, student, teacher = example(name)
    base = objective(student, teacher, batch()).item()
    assert math.isfinite(base) and base > 0
    got = objective(padded(student), padded(teacher), padded_batch())
    assert close(got, base, tol=1e-5)
    # and a change at a real position does change it (pkd reads [CLS] only)
    changed = {k: v.clone() for k, v in student.items()}
    key = sorted(changed)[0]
    changed[key][0, 0] = changed[key][0, 0] * -2 + 1 if not key.startswith("attention.") else changed[key][0, 0].flip(-1)
    assert not close(objective(changed, teacher, batch()), base)


@pytest.mark.parametrize("name", [n for n in INTERMEDIATE if n != "pkd"])
def test_padded_positions_get_no_gradient(name):
    objective, student, teacher = example(name)
    student = {k: padded({k: v})[k].requires_grad_(True) for k, v in student.items()}
    objective(student, padded(teacher), padded_batch()).backward()
    for key, value in student.items():
        grad = value.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
        if key.startswith("attention."):  # [B, heads, L, L]: padded query rows and padded keys
            padding = [grad[:, :, 3:], grad[:, :, :, 3:], grad[1, :, 2], grad[1, :, :, 2]]
        else:  # [B, L, H]
            padding = [grad[:, 3:], grad[1, 2]]
        assert all(g.abs().sum() == 0 for g in padding)


@pytest.mark.parametrize("name", INTERMEDIATE)
def test_float16_teacher_gives_float32_loss_and_no_teacher_gradient(name):
    objective, student, teacher = example(name)
    full = objective(student, teacher, batch())
    half_teacher = {k: v.half().requires_grad_(True) for k, v in teacher.items()}
    student = {k: v.clone().requires_grad_(True) for k, v in student.items()}
    low = objective(student, half_teacher, batch())
    assert low.dtype == torch.float32
    assert close(low, full, tol=2e-2)
    low.backward()
    assert all(v.grad is None for v in half_teacher.values())
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in student.values())


# ---- layer mappings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule,T,S,expected", [
    ("uniform", 12, 4, [(3, 1), (6, 2), (9, 3), (12, 4)]),
    ("uniform", 12, 5, [(2, 1), (4, 2), (6, 3), (8, 4), (10, 5)]),
    ("uniform", 6, 6, [(i, i) for i in range(1, 7)]),
    ("skip", 12, 6, [(2, 1), (4, 2), (6, 3), (8, 4), (10, 5)]),
    ("skip", 12, 3, [(4, 1), (8, 2)]),
    ("first", 12, 3, [(1, 1), (2, 2), (3, 3)]),
    ("last", 12, 3, [(10, 1), (11, 2), (12, 3)]),
    ("final", 12, 3, [(12, 3)]),
    ("final", 2, 4, [(2, 4)]),
    ([[6, 2], [3, 1], [0, 0]], 12, 4, [(6, 2), (3, 1), (0, 0)]),
])
def test_layer_pairs(rule, T, S, expected):
    assert layer_pairs(rule, T, S) == expected


def test_uniform_is_tinyberts_zero_based_rule():
    for T, S in [(12, 4), (12, 6), (24, 6), (12, 5), (6, 3)]:
        zero_based = [(i + 1) * (T // S) - 1 for i in range(S)]
        assert [t - 1 for t, _ in layer_pairs("uniform", T, S)] == zero_based


def test_embeddings_prepends_the_embedding_pair():
    assert layer_pairs("uniform", 4, 2, embeddings=True) == [(0, 0), (2, 1), (4, 2)]
    assert layer_pairs([[0, 0], [4, 2]], 4, 2, embeddings=True) == [(0, 0), (4, 2)]


@pytest.mark.parametrize("rule,T,S,pattern", [
    ("unifrom", 12, 4, "did you mean 'uniform'"),
    ("lst", 12, 4, "did you mean 'last'"),
    ("uniform", 4, 6, "student has 6 layers and the teacher only 4"),
    ("last", 4, 6, "student has 6 layers"),
    ("first", 4, 6, "student has 6 layers"),
    ("skip", 4, 6, "student has 6 layers"),
    ("skip", 12, 1, "one-layer student"),
    ([[13, 1]], 12, 4, "teacher layer 13"),
    ([[12, 5]], 12, 4, "student layer 5"),
    ([[-1, 1]], 12, 4, "teacher layer -1"),
    ([[6, 2], [6, 2]], 12, 4, "listed twice"),
    ([[6]], 12, 4, "two integers"),
    ([], 12, 4, "empty"),
    (3, 12, 4, "rule"),
])
def test_layer_pairs_errors(rule, T, S, pattern):
    with pytest.raises(KdexamError, match=pattern) as e:
        layer_pairs(rule, T, S)
    assert str(e.value).count(". ") == 0 and str(e.value).endswith(".")


@pytest.mark.parametrize("name,default", [("hidden_mse", "uniform"), ("hidden_cosine", "uniform"),
                                          ("attention_mse", "uniform"), ("attention_kl", "final"),
                                          ("value_relation", "final"), ("relations", "final"), ("pkd", "skip")])
def test_default_layers_per_objective(name, default):
    teacher, student = ModelShape(12, 8, 2), ModelShape(3, 8, 2)
    objective = build_objectives([{"name": name}], "classification", teacher, student).objectives[0]
    assert objective.pairs == layer_pairs(default, 12, 3)


# ---- requires ------------------------------------------------------------------------------------------


def test_requires_sets_for_a_mapping():
    teacher, student = ModelShape(12, 8, 2), ModelShape(4, 4, 2)
    composite = build_objectives([
        {"name": "kl"}, {"name": "gold"},
        {"name": "hidden_mse", "layers": "uniform", "embeddings": True},
        {"name": "attention_mse", "layers": [[12, 4]]},
        {"name": "relations", "relations": ["qq", "vv"], "layers": "last", "relation_heads": 2},
        {"name": "pkd", "layers": "skip"},
    ], "classification", teacher, student)
    assert composite.teacher_requires == (
        {"logits", "hidden.0", "hidden.3", "hidden.6", "hidden.9", "hidden.12", "query.12", "key.12"}
        | {f"{k}.{t}" for k in ("query", "value") for t in (9, 10, 11, 12)} | {"cls.3", "cls.6", "cls.9"})
    assert composite.student_requires == (
        {"logits", "hidden.0", "hidden.1", "hidden.2", "hidden.3", "hidden.4", "query.4", "key.4"}
        | {f"{k}.{s}" for k in ("query", "value") for s in (1, 2, 3, 4)} | {"cls.1", "cls.2", "cls.3"})
    gold = build_objectives([{"name": "gold"}], "classification")
    assert gold.teacher_requires == set() and gold.student_requires == {"logits"}


# ---- projections -------------------------------------------------------------------------------------


def test_projection_only_when_widths_differ_and_it_learns():
    same = build_objectives([{"name": "hidden_mse"}], "classification", TEACHER, SAME)
    assert list(same.parameters()) == []
    linear_anyway = build_objectives([{"name": "hidden_mse", "projection": "linear"}], "classification", TEACHER, SAME)
    assert len(linear_anyway.objectives[0].projections) == 2

    composite = build_objectives([{"name": "hidden_mse"}, {"name": "gold"}], "classification", TEACHER, NARROW)
    projections = composite.objectives[0].projections
    assert sorted(projections) == ["t2_s1", "t4_s2"]
    assert all(p.in_features == 2 and p.out_features == 4 for p in projections.values())
    params = list(composite.parameters())
    assert len(params) == 4  # weight and bias of two projections: nothing else
    assert {id(p) for p in params} == {id(p) for m in projections.values() for p in m.parameters()}

    student_model = nn.Sequential(nn.Embedding(10, 2), nn.Linear(2, 3))  # stands in for a student
    assert not {id(p) for p in params} & {id(p) for p in student_model.parameters()}
    emb = student_model[0](torch.tensor([[1, 2, 3], [4, 5, 0]]))
    student = {"logits": student_model[1](emb[:, 0]), "hidden.1": emb, "hidden.2": emb * 2}
    teacher = {"hidden.2": rand(2, 3, 4, seed=1), "hidden.4": rand(2, 3, 4, seed=2)}
    total, parts = composite(student, teacher, {**batch(), "labels": torch.tensor([0, 2])})
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    assert student_model[0].weight.grad.abs().sum() > 0


def test_projection_none_with_different_widths_is_an_error():
    with pytest.raises(KdexamError, match=r"Objective 1 \('hidden_mse'\).*projection to auto or linear"):
        build_objectives([{"name": "hidden_mse", "projection": "none"}], "classification", TEACHER, NARROW)
    ok = build_objectives([{"name": "hidden_mse", "projection": "none"}], "classification", TEACHER, SAME)
    assert list(ok.parameters()) == []
    with pytest.raises(KdexamError, match="parameter 'projection' is invalid"):
        build_objectives([{"name": "pkd", "projection": "mlp"}], "classification", TEACHER, SAME)


# ---- build_objectives errors -------------------------------------------------------------------------


def test_parameter_typo_names_the_closest_key():
    with pytest.raises(KdexamError) as e:
        build_objectives([{"name": "kl"}, {"name": "hidden_mse", "layer": "uniform"}], "classification", TEACHER, SAME)
    assert str(e.value) == "Objective 2 ('hidden_mse') has no parameter 'layer'; did you mean 'layers'?"
    with pytest.raises(KdexamError, match="has no parameter 'relation_head'; did you mean 'relation_heads'"):
        build_objectives([{"name": "relations", "relation_head": 2}], "general", TEACHER, SAME)
    with pytest.raises(KdexamError, match="has no parameter 'embeddings'; its parameters are layers"):
        build_objectives([{"name": "attention_kl", "embeddings": True}], "general", TEACHER, SAME)


def test_parameter_values_are_checked():
    with pytest.raises(KdexamError, match=r"Objective 1 \('hidden_mse'\) parameter 'layers' is invalid: unknown layer "
                                          r"rule 'unifrom' \(did you mean 'uniform'\?\)"):
        build_objectives([{"name": "hidden_mse", "layers": "unifrom", "weight": 0}, {"name": "gold"}], "classification")
    with pytest.raises(KdexamError, match="parameter 'layers' is invalid: give a rule"):
        build_objectives([{"name": "hidden_mse", "layers": [[1, "x"]]}], "classification", TEACHER, SAME)
    with pytest.raises(KdexamError, match="parameter 'relations' is invalid"):
        build_objectives([{"name": "relations", "relations": ["qq", "qq"]}], "general", TEACHER, SAME)
    with pytest.raises(KdexamError, match="parameter 'relations' is invalid"):
        build_objectives([{"name": "relations", "relations": ["kq"]}], "general", TEACHER, SAME)
    # true/false where a number is meant: pydantic read true as 1 (T = 1, student layer 1) without a word
    with pytest.raises(KdexamError, match="parameter 'temperature' is invalid: it takes a number or a name, not true/false"):
        build_objectives([{"name": "kl", "temperature": True}], "classification")
    with pytest.raises(KdexamError, match="parameter 'layers' is invalid"):
        build_objectives([{"name": "hidden_mse", "layers": [[4, True]]}], "classification", TEACHER, SAME)
    assert build_objectives([{"name": "hidden_mse", "embeddings": True}], "classification", TEACHER, SAME).names  # a switch
    for bad in ({"name": "kl", "weight": True}, ):
        with pytest.raises(ValueError, match="weight is a number, not true"):
            ObjectiveSpec.model_validate(bad)
    with pytest.raises(ValueError, match="a number is needed, not true"):
        MatchSpec.model_validate({"teacher_layer": True, "student_layer": 1})


def test_layer_mapping_errors_name_the_objective():
    with pytest.raises(KdexamError, match=r"Objective 1 \('hidden_mse'\): layer pair \[9, 1\] names teacher layer 9"):
        build_objectives([{"name": "hidden_mse", "layers": [[9, 1]]}], "classification", TEACHER, SAME)
    with pytest.raises(KdexamError, match=r"Objective 1 \('pkd'\): layer rule 'skip'.*one-layer"):
        build_objectives([{"name": "pkd"}], "classification", TEACHER, ModelShape(1, 4, 2))
    with pytest.raises(KdexamError, match="cannot read layer 0"):
        build_objectives([{"name": "attention_kl", "layers": [[0, 0]]}], "classification", TEACHER, SAME)


@pytest.mark.parametrize("name", INTERMEDIATE)
def test_intermediate_objectives_need_a_transformer_student(name):
    for student in (None, ModelShape()):
        with pytest.raises(KdexamError) as e:
            build_objectives([{"name": "gold"}, {"name": name}], "classification", TEACHER, student)
        msg = str(e.value)
        assert f"Objective 2 ('{name}')" in msg and "bert-mini or teacher-layers:K" in msg
    with pytest.raises(KdexamError, match="teacher"):
        build_objectives([{"name": name}], "classification", None, SAME)
    # left out at weight 0: then a BiLSTM student is fine
    assert build_objectives([{"name": name, "weight": 0}, {"name": "gold"}], "classification").names == ["gold"]


@pytest.mark.parametrize("name", ["attention_kl", "attention_mse", "value_relation"])
def test_head_count_mismatch_suggests_relations(name):
    with pytest.raises(KdexamError) as e:
        build_objectives([{"name": name}], "classification", ModelShape(4, 8, 4), ModelShape(2, 8, 2))
    msg = str(e.value)
    assert "teacher has 4 heads and the student 2" in msg and "use relations" in msg
    assert msg.count(". ") == 0 and msg.endswith(".")


def test_relation_heads_default_and_errors():
    built = build_objectives([{"name": "relations"}], "general", ModelShape(12, 768, 12), ModelShape(6, 384, 6))
    assert built.objectives[0].relation_heads == 12
    with pytest.raises(KdexamError, match="set relation_heads to 8"):
        build_objectives([{"name": "relations"}], "general", ModelShape(12, 768, 12), ModelShape(4, 256, 4))
    with pytest.raises(KdexamError, match="relation_heads 5, which does not divide both widths.*set it to 8"):
        build_objectives([{"name": "relations", "relation_heads": 5}], "general", ModelShape(12, 768, 12),
                         ModelShape(4, 256, 4))


@pytest.mark.parametrize("name", LOGIT + ["gold"])
def test_logit_objectives_do_not_serve_general(name):
    with pytest.raises(KdexamError) as e:
        build_objectives([{"name": name}], "general", TEACHER, SAME)
    msg = str(e.value)
    assert f"Objective '{name}' does not fit general" in msg
    assert sorted(msg.split("choose from: ")[1].rstrip(".").split(", ")) == sorted(INTERMEDIATE)


def test_task_kinds_declared():
    for name in INTERMEDIATE:
        assert set(OBJECTIVES[name].task_kinds) == {*TASK_KINDS, "general"}
    for name in LOGIT + ["gold"]:
        assert "general" not in OBJECTIVES[name].task_kinds
    with pytest.raises(KdexamError, match="did you mean 'general'"):
        build_objectives([{"name": "hidden_mse"}], "generl", TEACHER, SAME)


@pytest.mark.parametrize("kind", [*TASK_KINDS, "general"])
def test_intermediate_objectives_serve_every_task_kind(kind):
    composite = build_objectives([{"name": n} for n in INTERMEDIATE], kind, TEACHER, SAME)
    assert composite.names == INTERMEDIATE


# ---- declarative matches -----------------------------------------------------------------------------


def test_matches_compile_and_group_with_per_pair_weights():
    matches = [MatchSpec(teacher_layer=2, student_layer=1, feature="hidden", loss="mse", weight=1.0),
               {"teacher_layer": 4, "student_layer": 2, "feature": "hidden", "loss": "mse", "weight": 3.0},
               {"teacher_layer": 4, "student_layer": 2, "feature": "attention", "loss": "kl", "weight": 0.5},
               {"teacher_layer": 1, "student_layer": 1, "feature": "hidden", "loss": "cosine", "weight": 0.0}]
    composite = build_objectives([{"name": "hidden_mse", "weight": 2.0}], "classification", TEACHER, NARROW,
                                 matches=matches)
    assert composite.names == ["hidden_mse", "match:hidden_mse", "match:attention_kl"]
    assert composite.weights == [2.0, 4.0, 0.5]
    group = composite.objectives[1]
    assert isinstance(group, HiddenMSELoss) and group.pairs == [(2, 1), (4, 2)]
    assert sorted(group.projections) == ["t2_s1", "t4_s2"]
    assert composite.teacher_requires == {"hidden.2", "hidden.4", "attention.4"}

    s1, s2 = rand(2, 3, 2, seed=1), rand(2, 3, 2, seed=2)
    t2, t4 = rand(2, 3, 4, seed=3), rand(2, 3, 4, seed=4)
    a_s, a_t = attention_probs(5), attention_probs(6)
    student = {"hidden.1": s1, "hidden.2": s2, "attention.2": a_s}
    teacher = {"hidden.2": t2, "hidden.4": t4, "attention.4": a_t}
    total, parts = composite(student, teacher, batch())
    m1 = hand_hidden_mse(s1, t2, group.projections["t2_s1"])
    m2 = hand_hidden_mse(s2, t4, group.projections["t4_s2"])
    listed = composite.objectives[0]
    l1 = hand_hidden_mse(s1, t2, listed.projections["t2_s1"])
    l2 = hand_hidden_mse(s2, t4, listed.projections["t4_s2"])
    att = hand_attention_kl(a_s, a_t)
    assert close(parts["match:hidden_mse"], (1.0 * m1 + 3.0 * m2) / 4.0)
    assert close(parts["hidden_mse"], (l1 + l2) / 2)
    assert close(total, 2.0 * (l1 + l2) / 2 + 1.0 * m1 + 3.0 * m2 + 0.5 * att)  # each match weighs its own pair


@pytest.mark.parametrize("feature,loss,name", [("hidden", "mse", "hidden_mse"), ("hidden", "cosine", "hidden_cosine"),
                                               ("cls", "mse", "pkd"), ("attention", "kl", "attention_kl"),
                                               ("attention_scores", "mse", "attention_mse"),
                                               ("value_relation", "kl", "value_relation"),
                                               ("relations", "kl", "relations")])
def test_each_match_compiles_to_its_objective(feature, loss, name):
    composite = build_objectives([], "general", TEACHER, SAME, matches=[
        {"teacher_layer": 4, "student_layer": 2, "feature": feature, "loss": loss}])
    assert composite.names == [f"match:{name}"]
    assert type(composite.objectives[0]) is OBJECTIVES[name]
    assert composite.objectives[0].pairs == [(4, 2)]


def test_a_relations_match_between_widths_the_teachers_heads_do_not_divide():
    """MiniLM-L6 (12 heads of 384) against bert-mini's width 256: a ``relations`` match (it names no
    parameters) was refused with 'set relation_heads to 8', which a match cannot set."""
    teacher, student = ModelShape(num_layers=6, hidden_size=384, num_heads=12), ModelShape(num_layers=4, hidden_size=256, num_heads=4)
    match = [{"teacher_layer": 6, "student_layer": 4, "feature": "relations", "loss": "kl"}]
    assert build_objectives([], "general", teacher, student, matches=match).objectives[0].relation_heads == 8
    assert build_objectives([], "general", teacher, teacher, matches=match).objectives[0].relation_heads == 12  # its own


def test_match_errors():
    def build(*matches):
        return build_objectives([{"name": "gold"}], "classification", TEACHER, SAME, matches=list(matches))

    with pytest.raises(KdexamError, match="Match 1 compares 'hidden' with loss 'kl', but hidden takes mse or cosine"):
        build({"teacher_layer": 2, "student_layer": 1, "feature": "hidden", "loss": "kl"})
    with pytest.raises(KdexamError, match="attention takes kl"):
        build({"teacher_layer": 2, "student_layer": 1, "feature": "attention", "loss": "mse"})
    with pytest.raises(KdexamError, match="Match 1 reads teacher 'b'.*one teacher"):
        build({"teacher_layer": 2, "student_layer": 1, "teacher": "b"})
    with pytest.raises(KdexamError, match="Match 2 repeats the pair"):
        build({"teacher_layer": 2, "student_layer": 1}, {"teacher_layer": 2, "student_layer": 1, "weight": 2})
    with pytest.raises(KdexamError, match="Match 1 has no key 'layer'; did you mean"):
        build({"layer": 2, "teacher_layer": 2, "student_layer": 1})
    with pytest.raises(KdexamError, match="Match 1 field 'feature' is invalid"):
        build({"teacher_layer": 2, "student_layer": 1, "feature": "hiden"})
    with pytest.raises(KdexamError, match="remove 'projection'"):
        build({"teacher_layer": 2, "student_layer": 1, "feature": "attention", "loss": "kl", "projection": "linear"})
    with pytest.raises(KdexamError, match="Match group 'match:hidden_mse': layer pair \\[9, 1\\] names teacher layer 9"):
        build({"teacher_layer": 9, "student_layer": 1})
    with pytest.raises(KdexamError, match="Match group 'match:attention_kl' compares attention head by head"):
        build_objectives([], "general", ModelShape(4, 8, 4), ModelShape(2, 8, 2),
                         matches=[{"teacher_layer": 4, "student_layer": 2, "feature": "attention", "loss": "kl"}])
    with pytest.raises(KdexamError, match="bert-mini or teacher-layers:K"):
        build_objectives([{"name": "gold"}], "classification", TEACHER, ModelShape(),
                         matches=[{"teacher_layer": 4, "student_layer": 2}])
    with pytest.raises(KdexamError, match="weights are 0"):
        build_objectives([{"name": "gold", "weight": 0}], "classification", TEACHER, SAME,
                         matches=[{"teacher_layer": 4, "student_layer": 2, "weight": 0}])
    with pytest.raises(KdexamError, match="empty"):
        build_objectives([], "classification", TEACHER, SAME, matches=[])


# ---- general distillation defaults -------------------------------------------------------------------------


def test_general_objectives_with_equal_heads_is_minilm():
    teacher, student = ModelShape(12, 768, 12), ModelShape(6, 384, 12)
    specs = general_objectives(teacher, student)
    assert [(s.name, s.weight, s.params) for s in specs] == [("attention_kl", 1.0, {"layers": "final"}),
                                                            ("value_relation", 1.0, {"layers": "final"})]
    composite = build_objectives(specs, "general", teacher, student)
    assert composite.teacher_requires == {"attention.12", "value.12"}
    assert composite.student_requires == {"attention.6", "value.6"}
    assert list(composite.parameters()) == []


@pytest.mark.parametrize("teacher,student,heads", [(ModelShape(12, 768, 12), ModelShape(6, 384, 6), 12),
                                                   (ModelShape(12, 768, 12), ModelShape(4, 256, 4), 8),
                                                   (ModelShape(24, 1024, 16), ModelShape(6, 384, 12), 16)])
def test_general_objectives_with_different_heads_is_minilmv2(teacher, student, heads):
    specs = general_objectives(teacher, student)
    assert [s.name for s in specs] == ["relations"]
    assert specs[0].params == {"layers": "final", "relations": ["qq", "kk", "vv"], "relation_heads": heads}
    assert teacher.hidden_size % heads == 0 and student.hidden_size % heads == 0
    composite = build_objectives(specs, "general", teacher, student)
    assert composite.objectives[0].relation_heads == heads
    assert composite.teacher_requires == {f"{k}.{teacher.num_layers}" for k in ("query", "key", "value")}


def test_general_objectives_need_transformers():
    with pytest.raises(KdexamError, match="bert-mini or teacher-layers:K"):
        general_objectives(TEACHER, ModelShape())


def test_general_run_of_the_defaults_computes():
    teacher, student = ModelShape(2, 4, 2), ModelShape(1, 2, 1)  # different heads: relations, 2 relation heads
    composite = build_objectives(general_objectives(teacher, student), "general", teacher, student)
    s = {f"{k}.1": rand(2, 3, 2, seed=n) for n, k in enumerate(("query", "key", "value"))}
    t = {f"{k}.2": rand(2, 3, 4, seed=10 + n) for n, k in enumerate(("query", "key", "value"))}
    total, parts = composite(s, t, batch())
    hand = sum(hand_relation_kl(s[f"{k}.1"], s[f"{k}.1"], t[f"{k}.2"], t[f"{k}.2"], 2)
               for k in ("query", "key", "value")) / 3
    assert composite.objectives[0].relation_heads == 2 and close(total, hand) and close(parts["relations"], hand)


# ---- citations -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,needle", [("hidden_mse", "1909.10351"), ("embedding_mse", "1909.10351"),
                                         ("attention_mse", "1909.10351"), ("hidden_cosine", "1910.01108"),
                                         ("attention_kl", "2002.10957"), ("value_relation", "2002.10957"),
                                         ("relations", "2012.15828"), ("pkd", "1908.09355")])
def test_citations(name, needle):
    cls = OBJECTIVES[name]
    assert cls.citation_entries and needle in "".join(cls.citation_entries)
    for entry in cls.citation_entries:
        assert entry.startswith("@") and entry.rstrip().endswith("}")
    composite = build_objectives([{"name": name}, {"name": "kl"}], "classification", TEACHER, SAME)
    cites = composite.citations()
    assert any(needle in c for c in cites) and any("1503.02531" in c for c in cites)


def test_composite_is_a_module_of_objectives():
    composite = build_objectives([{"name": "hidden_mse"}], "classification", TEACHER, NARROW)
    assert isinstance(composite, CompositeObjective) and composite.needs_teacher
    names = dict(composite.named_parameters())
    assert set(names) == {"objectives.0.projections.t2_s1.weight", "objectives.0.projections.t2_s1.bias",
                          "objectives.0.projections.t4_s2.weight", "objectives.0.projections.t4_s2.bias"}
    # a checkpoint of the projections round-trips through the state dict
    other = build_objectives([{"name": "hidden_mse"}], "classification", TEACHER, NARROW)
    other.load_state_dict(composite.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(other.parameters(), composite.parameters()))


def test_spec_objects_and_dicts_are_equivalent():
    a = build_objectives([ObjectiveSpec(name="hidden_mse", layers="last", embeddings=True)], "regression", TEACHER, SAME)
    b = build_objectives([{"name": "hidden_mse", "layers": "last", "embeddings": True}], "regression", TEACHER, SAME)
    assert a.objectives[0].pairs == b.objectives[0].pairs == [(0, 0), (3, 1), (4, 2)]


def test_losses_and_projections_run_in_float32_under_autocast():
    objective = build_objectives([{"name": "hidden_mse"}, {"name": "relations", "relation_heads": 2}],
                                 "classification", TEACHER, NARROW)
    student = {f"{k}.{s}": rand(2, 3, 2, seed=s * 10 + n)
               for s in (1, 2) for n, k in enumerate(("hidden", "query", "key", "value"))}
    teacher = {f"{k}.{t}": rand(2, 3, 4, seed=t * 10 + n + 100)
               for t in (2, 4) for n, k in enumerate(("hidden", "query", "key", "value"))}
    full, _ = objective(student, teacher, batch())
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mixed, _ = objective(student, teacher, batch())
    assert mixed.dtype == torch.float32 and close(mixed, full, tol=1e-6)
