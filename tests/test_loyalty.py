import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from kdexam.evaluation.loyalty import classification_loyalty, js_distance, regression_loyalty


def test_js_distance_by_hand_and_scipy():
    p, q = np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])
    # m = (0.75, 0.25); KL(p||m) = .5 log2(.5/.75) + .5 log2(.5/.25); KL(q||m) = log2(1/.75)
    kl_p = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(2.0)
    kl_q = math.log2(1 / 0.75)
    assert js_distance(p, q)[0] == pytest.approx(math.sqrt(0.5 * kl_p + 0.5 * kl_q))
    rng = np.random.default_rng(0)
    a, b = rng.dirichlet(np.ones(4), 5), rng.dirichlet(np.ones(4), 5)
    np.testing.assert_allclose(js_distance(a, b), [jensenshannon(x, y, base=2) for x, y in zip(a, b)], atol=1e-12)


def test_classification_loyalty():
    t = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    s = np.log(np.array([[0.9, 0.1], [0.7, 0.3], [0.6, 0.4]]))
    m = classification_loyalty(t, s)
    assert m["label"] == pytest.approx(2 / 3)
    d = jensenshannon([0.2, 0.8], [0.7, 0.3], base=2)
    assert m["probability"] == pytest.approx((1 + (1 - d) + 1) / 3)


def test_regression_loyalty_by_hand():
    t, s = np.array([0.0, 1.0, 2.0, 4.0]), np.array([0.5, 1.0, 1.0, 4.0])
    m = regression_loyalty(t, s)
    assert m["regression"] == pytest.approx(1 - (0.5 + 0 + 1 + 0) / 4 / 4)
    assert m["pearson"] == pytest.approx(np.corrcoef(t, s)[0, 1])


def _one_sentence_cut_after_two_words():
    """4 words; the student's encoding holds [CLS] w0 w1 [SEP], and so does the teacher's: words
    2 and 3 are cut by truncation (their teacher rows are zeros, as ``stored_form`` keeps them)."""
    from types import SimpleNamespace

    from kdexam.tasks import Task

    task = Task("token-classification", ["B-PER", "I-PER", "O"])
    features = SimpleNamespace(rows=[{"word_ids": [-1, 0, 1, -1], "n_words": 4, "input_ids": [0, 1, 2, 3]}])
    student = np.zeros((4, 3), np.float32)
    student[1], student[2] = [5, 0, 0], [0, 0, 5]
    teacher = np.zeros((4, 3), np.float32)
    teacher[0], teacher[1] = [5, 0, 0], [0, 0, 5]
    return task, features, student, teacher


def test_words_cut_by_truncation_read_o_for_the_teacher_and_leave_loyalty_out():
    from kdexam.evaluation.loyalty import compare, teacher_predictions
    from kdexam.evaluation.predict import decode

    task, features, student, teacher = _one_sentence_cut_after_two_words()
    gold = [["B-PER", "O", "O", "O"]]
    assert teacher_predictions(task, [teacher]) == [["B-PER", "O", "O", "O"]]  # not B-PER (label 0) for the cut words
    preds = decode(task, [student], features)
    t_metrics, s_metrics, loyal = compare(task, gold, [teacher], [student], preds, features)
    assert t_metrics["span_f1"] == s_metrics["span_f1"] == pytest.approx(1.0)
    assert loyal["label"] == pytest.approx(1.0) and loyal["probability"] == pytest.approx(1.0)
    crf = {"transitions": np.zeros((3, 3)), "start": np.zeros(3), "end": np.zeros(3)}
    _, _, loyal = compare(task, gold, [teacher], [student], decode(task, [student], features, crf), features, viterbi=True)
    assert loyal["label"] == pytest.approx(1.0)  # the two words both saw agree
    student[2] = [5, 0, 0]  # now the second word disagrees: one of the two words both saw
    _, _, loyal = compare(task, gold, [teacher], [student], decode(task, [student], features), features)
    assert loyal["label"] == pytest.approx(0.5)


def test_regression_loyalty_is_undefined_where_the_teacher_has_no_range():
    """An audit (2026-12-04): one example (or a collapsed teacher) gave loyalty 0 or 1 and r 0.0
    beside the metrics' NaN; a non-finite prediction gave r 0.0."""
    for t, s in (([2.0], [2.01]), ([1.0, 1.0], [1.0, 1.0]), ([0.0, 1.0, 2.0], [0.0, float("nan"), 2.0]), ([], [])):
        m = regression_loyalty(np.array(t), np.array(s))
        assert math.isnan(m["regression"]) and math.isnan(m["pearson"]), (t, s)
    m = regression_loyalty(np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 1.0]))  # a constant student: r 0, as the metrics
    assert m == {"regression": pytest.approx(1 - (1 + 0 + 1) / 3 / 2), "pearson": 0.0}
