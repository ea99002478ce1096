"""Pilot (issue 11's accuracy target): does a bag of whole words beat a bag of WordPiece tokens?

model2vec can add whole words to a static model's vocabulary. Before building that for kdexam's
static student, this asks the question with the simplest bag model there is: TF-IDF features
(sublinear tf) and a logistic regression, its C chosen on the validation split from 0.5–8, scored
on test, for three kinds of unit — the teacher tokenizer's WordPiece tokens (what the static
student averages), the whole words its pre-tokenizer cuts (lower-cased as the teacher's
normaliser does), and both — each as unigrams and as unigrams plus bigrams. Needs scikit-learn
(a dev extra); seconds on one core.

    python bench/pilot_bag_of_units.py --teacher runs/teacher-ms --data movie-sentiment \
        --out bench/results/pilot_bag_of_units.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from kdexam.config.runs import DataConfig
from kdexam.data.splits import load_data
from kdexam.teachers.loader import load_tokenizer


def scored_bag(vec, split: dict, max_iter: int = 2000) -> dict:
    """TF-IDF features of ``split`` (``{name: (documents, labels)}``, fitted on train) and a logistic
    regression, its C chosen on validation from 0.5–8: ``C``, ``features``, validation and test accuracy."""
    x = {s: (vec.fit_transform if s == "train" else vec.transform)(split[s][0]) for s in ("train", "validation", "test")}
    fits = {c: LogisticRegression(C=c, max_iter=max_iter).fit(x["train"], split["train"][1]) for c in (0.5, 1, 2, 4, 8)}
    best = max(fits, key=lambda c: fits[c].score(x["validation"], split["validation"][1]))
    return {"C": best, "features": x["train"].shape[1], "validation": round(fits[best].score(x["validation"], split["validation"][1]), 4),
            "test": round(fits[best].score(x["test"], split["test"][1]), 4)}


def pilot_inputs(description: str, out: str):
    """A bag pilot's command line (``--teacher``, ``--data``, ``--out``), its data and the teacher's
    Rust tokenizer: ``(args, data, tokenizer)``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--teacher", required=True, help="its tokenizer cuts the units")
    ap.add_argument("--data", default="movie-sentiment")
    ap.add_argument("--out", default=out)
    a = ap.parse_args()
    return a, load_data(DataConfig(name=a.data)), load_tokenizer(a.teacher).backend_tokenizer


def main() -> None:
    a, data, rust = pilot_inputs(__doc__.split("\n")[0], "bench/results/pilot_bag_of_units.json")

    def wordpieces(texts):
        return [" ".join(e.tokens[1:-1]) for e in rust.encode_batch(texts)]

    def words(texts):
        return [" ".join(w for w, _ in rust.pre_tokenizer.pre_tokenize_str(rust.normalizer.normalize_str(t))) for t in texts]

    units = {"wordpiece": wordpieces, "word": words,
             "word+wordpiece": lambda texts: [f"{a} {b}" for a, b in zip(wordpieces(texts), words(texts))]}
    split = {name: ([e.text for e in rows], [e.label for e in rows])
             for name, rows in (("train", data.train), ("validation", data.validation), ("test", data.test))}
    rows = []
    for unit, cut in units.items():
        for n in (1, 2):
            vec = TfidfVectorizer(token_pattern=r"\S+", ngram_range=(1, n), lowercase=False, sublinear_tf=True)
            rows.append({"unit": unit, "ngrams": f"1-{n}", **scored_bag(vec, {s: (cut(split[s][0]), split[s][1]) for s in split})})
            print(rows[-1])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"pilot": "bag_of_units", "data": a.data, "teacher": a.teacher, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
