"""Loyalty: how faithfully a student reproduces its teacher, beside how well it does the task.

- Label loyalty: the share of examples (tokens, for tagging) where the student's
  argmax equals the teacher's (Xu et al. 2021, "Beyond Preserved Accuracy:
  Evaluating Loyalty and Robustness of BERT Compression").
- Probability loyalty: the mean over examples of 1 − D_JS(p_T, p_S), where D_JS is
  the Jensen–Shannon *distance* in base 2, the square root of the JS divergence
  JS(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = ½ (p + q); it lies in [0, 1]
  (same source; the square root is taken once).
- Regression loyalty: 1 − mean|ŷ_T − ŷ_S| / (max ŷ_T − min ŷ_T) over the split, the
  mean absolute disagreement relative to the teacher's range (after Avram et al.
  2022, "Distilling the Knowledge of Romanian BERTs Using Multiple Teachers"), with
  Pearson's r between teacher and student predictions beside it.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import softmax


XU_2021 = r"""@inproceedings{xu-etal-2021-beyond,
  title={Beyond Preserved Accuracy: Evaluating Loyalty and Robustness of {BERT} Compression},
  author={Xu, Canwen and Zhou, Wangchunshu and Ge, Tao and Xu, Ke and McAuley, Julian and Wei, Furu},
  booktitle={Proceedings of the 2021 Conference on Empirical Methods in Natural Language Processing},
  pages={10653--10659},
  year={2021},
  doi={10.18653/v1/2021.emnlp-main.832},
}"""
AVRAM_2022 = """@inproceedings{avram2022distilling,
  title={Distilling the Knowledge of {R}omanian {BERT}s Using Multiple Teachers},
  author={Avram, Andrei-Marius and Catrina, Darius and Cercel, Dumitru-Clementin and Dascalu, Mihai and Rebedea, Traian and Pais, Vasile and Tufis, Dan},
  booktitle={Proceedings of the Thirteenth Language Resources and Evaluation Conference},
  pages={374--384},
  year={2022}
}"""


def citations(task_kind: str) -> list[str]:
    """BibTeX of the loyalty figures a run of ``task_kind`` reports."""
    return [AVRAM_2022] if task_kind == "regression" else [XU_2021]


def js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise Jensen–Shannon distance (base 2) between probability vectors."""
    m = 0.5 * (p + q)

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * (np.log2(a) - np.log2(b)), 0.0)
        return terms.sum(-1)

    return np.sqrt(np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, 1.0))


def classification_loyalty(teacher_logits: np.ndarray, student_logits: np.ndarray) -> dict:
    """Label and probability loyalty from [N, C] logits (tokens flattened for tagging)."""
    p_t, p_s = softmax(teacher_logits.astype(np.float64), -1), softmax(student_logits.astype(np.float64), -1)
    return {
        "label": float((teacher_logits.argmax(-1) == student_logits.argmax(-1)).mean()),
        "probability": float((1.0 - js_distance(p_t, p_s)).mean()),
    }


def regression_loyalty(teacher_pred: np.ndarray, student_pred: np.ndarray) -> dict:
    """Regression loyalty and Pearson's r between teacher and student predictions. Both are NaN
    (``null`` in metrics.json) where undefined: the teacher's predictions have no range (one
    example, or a collapsed teacher), or a prediction is not finite; r is 0 for a constant student,
    as :func:`kdexam.evaluation.metrics.regression_metrics` scores a constant prediction."""
    t, s = np.asarray(teacher_pred, float).reshape(-1), np.asarray(student_pred, float).reshape(-1)
    if t.size == 0 or not (np.isfinite(t).all() and np.isfinite(s).all()) or np.ptp(t) == 0:
        return {"regression": float("nan"), "pearson": float("nan")}
    loyalty = 1.0 - np.abs(t - s).mean() / np.ptp(t)
    pearson = float(stats.pearsonr(t, s)[0]) if np.ptp(s) > 0 else 0.0
    return {"regression": float(loyalty), "pearson": pearson}


# ---- a student against its teacher on one split ------------------------------------------------


def teacher_predictions(task, teacher_logits: list[np.ndarray]) -> list:
    """Predictions from the teacher's stored logits ([C] per example; [words, C] for tagging)."""
    labels = task.labels or []
    if task.kind == "regression":
        return [float(l.reshape(-1)[0]) for l in teacher_logits]
    if task.kind == "classification":
        return [labels[int(l.argmax())] for l in teacher_logits]
    fill = labels.index("O") if "O" in labels else 0  # words cut by truncation (all-zero rows), as ``decode`` fills them
    return [[labels[j] if r.any() else labels[fill] for j, r in zip(l.argmax(-1), l)] for l in teacher_logits]


def student_word_logits(task, logits: list[np.ndarray], features) -> np.ndarray:
    """The student's logits to compare with the teacher's: [N, C], or [Σ words, C] for tagging
    (each word's first subword; words cut by truncation get zeros, as the teacher's)."""
    if task.kind != "token-classification":
        return np.stack(logits)
    from kdexam.data.encode import first_subwords

    rows = []
    for l, row in zip(logits, features.rows):
        words = np.zeros((row["n_words"], l.shape[-1]), dtype=np.float32)
        for w, pos in enumerate(first_subwords(row["word_ids"], row["n_words"])):
            if pos >= 0:
                words[w] = l[pos]
        rows.append(words)
    return np.concatenate(rows)


def compare(task, gold: list, teacher_logits: list[np.ndarray], student_logits: list[np.ndarray], student_preds: list,
            features, viterbi: bool = False) -> tuple[dict, dict, dict]:
    """Teacher metrics, student metrics and the student's loyalty on one split.

    With ``viterbi`` (a CRF tagger) label loyalty compares the student's decoded tags, not
    the argmax of its emissions. Tagging loyalty counts the words both models saw: a word cut by
    either side's truncation is filled with ``O`` for the metrics, and has no probabilities to compare."""
    t_preds = teacher_predictions(task, teacher_logits)
    t_metrics, s_metrics = task.metrics(gold, t_preds), task.metrics(gold, student_preds)
    t = np.concatenate(teacher_logits) if task.kind == "token-classification" else np.stack(teacher_logits)
    s = student_word_logits(task, student_logits, features)
    both = np.ones(len(t), dtype=bool)
    if task.kind == "token-classification":  # loyalty over the words both models saw (a cut word's row is all zeros)
        both = t.any(-1) & s.any(-1)
        t, s = t[both], s[both]
    loyal = regression_loyalty(t.reshape(-1), s.reshape(-1)) if task.kind == "regression" else classification_loyalty(t, s)
    if viterbi:
        pairs = [a == b for sp, tp in zip(student_preds, t_preds) for a, b in zip(sp, tp)]
        loyal["label"] = float(np.mean(np.asarray(pairs)[both]))
    return t_metrics, s_metrics, loyal
