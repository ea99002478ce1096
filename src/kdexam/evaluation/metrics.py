"""Task metrics, computed with scikit-learn, scipy and seqeval.

- Classification: accuracy; macro-F1 (unweighted mean of per-class F1,
  F1_c = 2·P_c·R_c / (P_c + R_c), over the classes that occur in the gold labels or the
  predictions, as scikit-learn's default: a class absent from both is not scored 0); a
  per-class precision/recall/F1/support report.
- Tagging: when the tags follow a BIO/BIOES scheme, entity-span precision/recall/F1
  as in CoNLL-2003 (seqeval, Ramshaw & Marcus 1995 chunking; BILOU tags, with ``L-``/``U-``,
  in seqeval's strict BILOU mode); always token accuracy and token macro-F1 over words.
- Regression: Pearson's r, Spearman's ρ and mean squared error (all NaN when a prediction is
  not finite: a diverged model is reported, not a crash).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
# scipy, scikit-learn and seqeval are imported where used: a serving process (Predictor)
# imports kdexam.tasks but never computes a metric, and they cost ~190 MB of memory.

_BIO = re.compile(r"^(O|[BIESLU]-.+)$")


def classification_metrics(gold: Sequence, pred: Sequence, labels: Sequence | None = None) -> dict:
    """Accuracy, macro-F1 over ``labels`` and a per-class report."""
    from sklearn.metrics import accuracy_score, classification_report, f1_score

    labels = list(labels) if labels is not None else sorted(set(gold) | set(pred))
    report = classification_report(gold, pred, labels=labels, output_dict=True, zero_division=0)
    per_class = {str(k): {m: float(v) for m, v in report[k].items()} for k in map(str, labels) if k in report}
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=present(labels, gold, pred), average="macro", zero_division=0)),
        "per_class": per_class,
    }


def present(labels: Sequence, gold: Sequence, pred: Sequence) -> list:
    """The ``labels`` that occur in ``gold`` or ``pred`` (all of them when none does)."""
    seen = set(gold) | set(pred)
    return [label for label in labels if label in seen] or list(labels)


def is_bio_scheme(tags: Sequence[str]) -> bool:
    """True when every tag is ``O`` or ``B-X``/``I-X`` (or E-/S-, or BILOU's L-/U-) and some tag is not ``O``."""
    tags = set(tags)
    return bool(tags) and tags != {"O"} and all(_BIO.match(t) for t in tags)


def tagging_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], labels: Sequence[str] | None = None) -> dict:
    """Word-level tagging metrics over sentences of tags."""
    from sklearn.metrics import accuracy_score, f1_score

    if any(len(g) != len(p) for g, p in zip(gold, pred)) or len(gold) != len(pred):
        raise ValueError("gold and predicted tag sequences must have the same lengths")
    flat_gold = [t for s in gold for t in s]
    flat_pred = [t for s in pred for t in s]
    labels = list(labels) if labels is not None else sorted(set(flat_gold))
    out = {
        "accuracy": float(accuracy_score(flat_gold, flat_pred)),
        "macro_f1": float(f1_score(flat_gold, flat_pred, labels=present(labels, flat_gold, flat_pred), average="macro",
                                   zero_division=0)),
    }
    if is_bio_scheme(labels):
        from seqeval.metrics import f1_score as span_f1, precision_score, recall_score

        gold_l, pred_l = [list(s) for s in gold], [list(s) for s in pred]
        mode = {}
        if any(t[:2] in ("L-", "U-") for t in labels):  # BILOU: seqeval's default (conlleval) mode reads B/I/E/S only
            from seqeval.scheme import BILOU

            mode = {"mode": "strict", "scheme": BILOU}
        out["span_f1"] = float(span_f1(gold_l, pred_l, zero_division=0, **mode))
        out["span_precision"] = float(precision_score(gold_l, pred_l, zero_division=0, **mode))
        out["span_recall"] = float(recall_score(gold_l, pred_l, zero_division=0, **mode))
    return out


def regression_metrics(gold: Sequence[float], pred: Sequence[float]) -> dict:
    """Pearson's r, Spearman's ρ and MSE. A constant prediction has correlation 0 (it tells the
    examples apart no better than chance); with constant gold targets (or one example) the
    correlations are undefined and reported as NaN."""
    from scipy import stats
    from sklearn.metrics import mean_squared_error

    g, p = np.asarray(gold, dtype=float), np.asarray(pred, dtype=float)
    if not np.isfinite(p).all():
        return {"pearson": float("nan"), "spearman": float("nan"), "mse": float("nan")}
    if g.size < 2 or np.ptp(g) == 0:
        nan = float("nan")
        return {"pearson": nan, "spearman": nan, "mse": float(mean_squared_error(g, p)) if g.size else nan}
    constant = np.ptp(p) == 0
    return {
        "pearson": 0.0 if constant else float(stats.pearsonr(g, p)[0]),
        "spearman": 0.0 if constant else float(stats.spearmanr(g, p)[0]),
        "mse": float(mean_squared_error(g, p)),
    }
