"""Pilot (issue 11's accuracy target): how far does a regularised bag of WordPiece n-grams go,
on gold labels and on the teacher's soft labels over a transfer set?

The static student is a linear model of its bag of tokens (its head folds into a per-token logit
table). Hashed bigram vectors trained by Adam beside it overfit (docs/benchmarks.md). This asks
what the same kind of model reaches when it is L2-regularised as a logistic regression is: TF-IDF
features (sublinear tf) of the teacher tokenizer's WordPiece n-grams, a logistic regression with
C chosen on validation, scored on test, trained

- on the gold labels of the train split (``gold``);
- on the teacher's probabilities over the train split (``teacher``: every text twice, weighted
  p and 1 − p, the cross-entropy against the soft target), and
- the same plus the teacher's probabilities over unlabelled text (``teacher+unlabelled``);
- and ``gold+teacher``: the gold rows and the teacher rows of the train split, half weight each
  (the default KD objective's mix), plus the unlabelled rows.

Binary tasks only. Needs scikit-learn (a dev extra); the teacher's forward over the unlabelled
text is the slow part (about a minute on two cores for 12,679 snippets; cached by kdexam).

    python bench/pilot_ngram_transfer.py --teacher runs/teacher-ms --data movie-sentiment \
        --unlabelled sentiment-snippets --out bench/results/pilot_ngram_transfer.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.sparse import vstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from kdexam.config.runs import DataConfig
from kdexam.data.splits import load_data, load_texts
from kdexam.teachers.teacher import Teacher

C_GRID = (1, 2, 4, 8, 16, 32, 64)


def probabilities(teacher: Teacher, examples) -> np.ndarray:
    out = teacher.outputs(examples, ["logits"])
    logits = np.stack([out.example(i) for i in range(len(examples))]).astype(np.float64)
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--data", default="movie-sentiment")
    ap.add_argument("--unlabelled", default="sentiment-snippets")
    ap.add_argument("--max-n", type=int, default=3, help="largest n-gram order tried")
    ap.add_argument("--out", default="bench/results/pilot_ngram_transfer.json")
    a = ap.parse_args()
    data = load_data(DataConfig(name=a.data))
    teacher = Teacher(a.teacher)
    rust = teacher.tokenizer.backend_tokenizer
    extra = load_texts(DataConfig(name=a.unlabelled))[0]
    known = {e.text for e in data.validation + data.test}
    extra = [e for e in extra if e.text not in known]

    def pieces(examples):
        return [" ".join(e.tokens[1:-1]) for e in rust.encode_batch([x.text for x in examples])]

    p_train, p_extra = probabilities(teacher, data.train), probabilities(teacher, extra)
    y = {s: np.array([e.label for e in getattr(data, s)]) for s in ("train", "validation", "test")}
    labels = sorted(set(y["train"]))
    y = {s: np.searchsorted(labels, v) for s, v in y.items()}
    print(f"teacher test accuracy {np.mean(probabilities(teacher, data.test).argmax(1) == y['test']):.4f}; "
          f"{len(extra)} unlabelled texts")
    rows = []
    for n in range(1, a.max_n + 1):
        vec = TfidfVectorizer(token_pattern=r"\S+", ngram_range=(1, n), lowercase=False, sublinear_tf=True)
        vec.fit(pieces(data.train) + pieces(extra))
        x = {s: vec.transform(pieces(getattr(data, s))) for s in ("train", "validation", "test")}
        x_extra = vec.transform(pieces(extra))
        ones = np.ones(len(y["train"]))

        def soft(xs, ps, w=1.0):  # each text once per class, weighted by its probability
            return vstack([xs, xs]), np.r_[np.zeros(xs.shape[0]), np.ones(xs.shape[0])], w * np.r_[ps[:, 0], ps[:, 1]]

        sets = {"gold": (x["train"], y["train"], ones)}
        xs, ys, ws = soft(x["train"], p_train)
        sets["teacher"] = (xs, ys, ws)
        xe, ye, we = soft(x_extra, p_extra)
        sets["teacher+unlabelled"] = (vstack([xs, xe]), np.r_[ys, ye], np.r_[ws, we])
        xh, yh, wh = soft(x["train"], p_train, 0.5)
        sets["gold+teacher+unlabelled"] = (vstack([x["train"], xh, xe]), np.r_[y["train"], yh, ye], np.r_[0.5 * ones, wh, we])
        for name, (xt, yt, wt) in sets.items():
            fits = {c: LogisticRegression(C=c, max_iter=3000).fit(xt, yt, sample_weight=wt) for c in C_GRID}
            best = max(fits, key=lambda c: fits[c].score(x["validation"], y["validation"]))
            rows.append({"ngrams": f"1-{n}", "targets": name, "C": best, "features": x["train"].shape[1],
                         "validation": round(fits[best].score(x["validation"], y["validation"]), 4),
                         "test": round(fits[best].score(x["test"], y["test"]), 4)})
            print(rows[-1], flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"pilot": "ngram_transfer", "data": a.data, "teacher": a.teacher,
                                       "unlabelled": a.unlabelled, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
