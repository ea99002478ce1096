import math

import pytest

from kdexam.evaluation.metrics import classification_metrics, is_bio_scheme, regression_metrics, tagging_metrics


def test_classification_by_hand():
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    m = classification_metrics(gold, pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    # F1: a: P=1/2 R=1/2 -> 1/2; b: P=2/3 R=1 -> 4/5; c: 0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert m["per_class"]["b"]["recall"] == pytest.approx(1.0)
    assert m["per_class"]["c"]["support"] == 1


def test_tagging_token_metrics_without_bio():
    gold = [["DET", "NOUN"], ["ADJ"]]
    pred = [["DET", "ADJ"], ["ADJ"]]
    m = tagging_metrics(gold, pred)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert "span_f1" not in m
    # token macro-F1: ADJ P=1/2 R=1 -> 2/3; DET 1; NOUN 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_tagging_span_f1_with_bio():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "O"]]
    m = tagging_metrics(gold, pred)
    # one of two gold spans found, no false positive: P=1, R=1/2, F1=2/3
    assert m["span_precision"] == pytest.approx(1.0)
    assert m["span_recall"] == pytest.approx(0.5)
    assert m["span_f1"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(3 / 4)


def test_bio_detection():
    assert is_bio_scheme(["O", "B-PER", "I-PER"])
    assert not is_bio_scheme(["NN", "VB"])
    assert not is_bio_scheme(["O"])


def test_regression_by_hand():
    gold = [1.0, 2.0, 3.0, 4.0]
    pred = [1.5, 2.0, 2.5, 5.0]
    m = regression_metrics(gold, pred)
    assert m["mse"] == pytest.approx((0.25 + 0 + 0.25 + 1) / 4)
    assert m["spearman"] == pytest.approx(1.0)
    # Pearson by hand
    mg, mp = 2.5, 2.75
    cov = sum((g - mg) * (p - mp) for g, p in zip(gold, pred))
    r = cov / math.sqrt(sum((g - mg) ** 2 for g in gold) * sum((p - mp) ** 2 for p in pred))
    assert m["pearson"] == pytest.approx(r)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        tagging_metrics([["A", "B"]], [["A"]])


def test_macro_f1_leaves_out_classes_absent_from_gold_and_predictions():
    """A class neither in the split nor predicted is not scored 0 (scikit-learn's default): perfect
    predictions have macro-F1 1 whatever the head's label set."""
    assert classification_metrics(["a", "b"], ["a", "b"], ["a", "b", "c"])["macro_f1"] == pytest.approx(1.0)
    assert tagging_metrics([["B-PER", "O"]], [["B-PER", "O"]], ["B-LOC", "B-PER", "I-PER", "O"])["macro_f1"] == pytest.approx(1.0)
    # a class predicted but absent from gold still counts (its F1 is 0): a: P=1/2 R=1 -> 2/3; c: 0
    assert classification_metrics(["a", "a"], ["a", "c"], ["a", "b", "c"])["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_bilou_spans_are_scored_in_strict_bilou_mode():
    gold = [["B-PER", "L-PER", "O", "U-LOC"]]
    assert is_bio_scheme(["B-PER", "I-PER", "L-PER", "U-LOC", "O"])
    m = tagging_metrics(gold, [["B-PER", "L-PER", "O", "O"]])
    assert (m["span_precision"], m["span_recall"]) == pytest.approx((1.0, 0.5))
    # B-I is not a whole BILOU span (it needs its L-): the person is not found
    assert tagging_metrics(gold, [["B-PER", "I-PER", "O", "U-LOC"]], ["B-PER", "I-PER", "L-PER", "U-LOC", "O"])["span_recall"] == pytest.approx(0.5)


def test_a_diverged_regression_model_scores_nan_instead_of_crashing():
    m = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, float("nan")])
    assert all(math.isnan(v) for v in m.values())


def test_regression_correlations_are_undefined_on_constant_gold_and_zero_for_a_constant_prediction():
    one = regression_metrics([2.0], [1.5])
    assert math.isnan(one["pearson"]) and math.isnan(one["spearman"]) and one["mse"] == pytest.approx(0.25)
    flat = regression_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert math.isnan(flat["pearson"]) and math.isnan(flat["spearman"])
    const = regression_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert (const["pearson"], const["spearman"]) == (0.0, 0.0)


def test_undefined_metrics_are_written_as_json_null(tmp_path):
    """Python's json writes NaN as a bare ``NaN``, which strict parsers (JavaScript, jq, Go) reject;
    kdexam's files hold ``null`` there, nested or not, and ±inf alike."""
    import json

    from kdexam.paths import atomic_write_json, finite_or_null

    m = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, float("nan")])
    atomic_write_json(tmp_path / "m.json", {"metrics": m, "curve": (0.5, float("inf")), "n": 3, "ok": True})
    text = (tmp_path / "m.json").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"metrics": {"pearson": None, "spearman": None, "mse": None}, "curve": [0.5, None],
                                "n": 3, "ok": True}
    assert finite_or_null([[-float("inf"), 1.5], {"a": float("nan")}]) == [[None, 1.5], {"a": None}]
