"""Pilot (issue 11's accuracy target): do skip-bigrams or negation scoping help a bag of tokens?

The static student with its bigram table is a linear model of its bag of WordPiece tokens and
bigrams, level with the TF-IDF bag of ``pilot_bag_of_units.py`` (0.816 on movie-sentiment).
Before building more features into the student, this asks the same bag model whether two more
help: skip-bigrams (tokens two apart, ``a _ b``) and negation scoping (Das & Chen 2001; Pang et
al. 2002: every token after a negation word, up to the next punctuation mark, also counted as
``NOT_token``); and, for two classes, NB-weighted binary features (Wang & Manning 2012) in place
of TF-IDF. TF-IDF (sublinear tf) and a logistic regression, C chosen on validation from
0.5–8, scored on test. Needs scikit-learn (a dev extra); seconds on one core.

    python bench/pilot_bag_extras.py --teacher runs/teacher-ms --data movie-sentiment \
        --out bench/results/pilot_bag_extras.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from pilot_bag_of_units import pilot_inputs, scored_bag

NEGATIONS = {"not", "no", "never", "nothing", "without", "n", "t", "isn", "doesn", "don", "didn", "wasn"}
"""Negation words as the teacher's WordPiece tokenizer cuts them ("doesn't" is doesn ' t)."""
SCOPE_ENDS = {".", ",", "!", "?", ";", "but"}


def units(tokens: list[str], extras: tuple[str, ...]) -> str:
    """The tokens, their bigrams, and the ``extras`` ("skip", "negation"), as one space-separated string."""
    out = list(tokens) + [f"{a}|{b}" for a, b in zip(tokens, tokens[1:])]
    if "skip" in extras:
        out += [f"{a}|_|{b}" for a, b in zip(tokens, tokens[2:])]
    if "negation" in extras:
        negated = False
        for t in tokens:
            negated = negated and t not in SCOPE_ENDS
            if negated:
                out.append(f"NOT_{t}")
            negated = negated or t in NEGATIONS
    return " ".join(out)


def nb_scored(split: dict, alpha: float = 1.0) -> dict:
    """NB-weighted features (Wang & Manning 2012, "Baselines and Bigrams"; the logistic-regression
    form): binary token and bigram counts scaled by the log-count ratio r = log((p/|p|₁)/(q/|q|₁)),
    p and q the counts (+ ``alpha``) in the two classes' training texts; C chosen on validation."""
    labels = sorted(set(split["train"][1]))
    vec = CountVectorizer(token_pattern=r"\S+", lowercase=False, binary=True)
    x = {s: (vec.fit_transform if s == "train" else vec.transform)(split[s][0]) for s in ("train", "validation", "test")}
    y = {s: (np.asarray(split[s][1]) == labels[-1]).astype(int) for s in x}
    p, q = (alpha + x["train"][y["train"] == c].sum(0) for c in (1, 0))
    r = np.asarray(np.log((p / p.sum()) / (q / q.sum()))).ravel()
    x = {s: m.multiply(r).tocsr() for s, m in x.items()}
    fits = {c: LogisticRegression(C=c, max_iter=3000).fit(x["train"], y["train"]) for c in (0.1, 0.25, 0.5, 1, 2, 4, 8)}
    best = max(fits, key=lambda c: fits[c].score(x["validation"], y["validation"]))
    return {"C": best, "features": x["train"].shape[1], "validation": round(fits[best].score(x["validation"], y["validation"]), 4),
            "test": round(fits[best].score(x["test"], y["test"]), 4)}


def main() -> None:
    a, data, rust = pilot_inputs(__doc__.split("\n")[0], "bench/results/pilot_bag_extras.json")
    split = {name: ([e.tokens[1:-1] for e in rust.encode_batch([x.text for x in rows])], [x.label for x in rows])
             for name, rows in (("train", data.train), ("validation", data.validation), ("test", data.test))}
    rows = []
    for extras in ((), ("skip",), ("negation",), ("skip", "negation")):
        vec = TfidfVectorizer(token_pattern=r"\S+", lowercase=False, sublinear_tf=True)
        scored = scored_bag(vec, {s: ([units(t, extras) for t in split[s][0]], split[s][1]) for s in split}, max_iter=3000)
        rows.append({"bag": "tokens+bigrams" + "".join(f"+{e}" for e in extras), **scored})
        print(rows[-1])
    if len(set(split["train"][1])) == 2:  # (the NB ratio is of two classes)
        rows.append({"bag": "tokens+bigrams, NB-weighted binary", **nb_scored({s: ([units(t, ()) for t in split[s][0]], split[s][1])
                                                                              for s in split})})
        print(rows[-1])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"pilot": "bag_extras", "data": a.data, "teacher": a.teacher, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
