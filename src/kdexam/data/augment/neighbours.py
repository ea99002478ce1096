"""Nearest-neighbour replacement: words swapped for their neighbours in an embedding space."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from kdexam.data.augment.base import (
    Selection,
    Tags,
    Words,
    WordSubstitution,
    check_probability,
    match_case,
)
from kdexam.data.augment.vocab import lookup, lowercases, whole_words
from kdexam.errors import KdexamError

SCORES_PER_CHUNK = 1 << 24
"""Similarity scores computed at once (64 MiB of float32): the query chunk is this over the vocabulary size."""


class EmbeddingSpace:
    """Unit-normalised vectors of candidate words, with memoised k-nearest-neighbour lists."""

    def __init__(self, words: list[str], vectors: np.ndarray, lower: bool, source: str) -> None:
        if not words:
            raise KdexamError(f"{source} holds no alphabetic word; give word vectors with words in them.")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.matrix = vectors / np.maximum(norms, 1e-12)
        self.lower = lower
        self.source = source
        self._neighbours: dict[str, list[str]] = {}

    def key(self, word: str) -> str | None:
        return lookup(word, self.index, self.lower)

    def neighbours(self, keys: list[str], k: int) -> dict[str, list[str]]:
        """The ``k`` nearest entries to each key (cosine similarity, ties by vocabulary order),
        leaving out the key itself and its other casings; computed once per key."""
        todo = sorted({key for key in keys if key not in self._neighbours})
        if todo:
            size = len(self.words)
            take = min(size, k + 1 + 4)  # room for the key itself and a few casings of it
            rows = np.array([self.index[key] for key in todo])
            chunk = max(1, SCORES_PER_CHUNK // size)
            for start in range(0, len(todo), chunk):
                ids = rows[start:start + chunk]
                scores = self.matrix[ids] @ self.matrix.T
                scores[np.arange(len(ids)), ids] = -np.inf
                if take < size:
                    top = np.argpartition(scores, size - take, axis=1)[:, size - take:]
                else:
                    top = np.broadcast_to(np.arange(size), (len(ids), size))
                for r, key in enumerate(todo[start:start + chunk]):
                    cand = top[r]
                    # ranked by scores of this key alone, in float64: the chunk's product differs in the last bit
                    # with the chunk's make-up, which reordered near ties (a copy then depended on the other examples)
                    exact = self.matrix[cand].astype(np.float64) @ self.matrix[ids[r]].astype(np.float64)
                    order = cand[np.lexsort((cand, -exact))]
                    low = key.lower()
                    near = [self.words[j] for j in order if j != ids[r] and self.words[j].lower() != low]
                    self._neighbours[key] = near[:k]
        return {key: self._neighbours[key] for key in keys}


def read_vectors_file(path: str) -> EmbeddingSpace:
    """A word2vec / GloVe text file: ``word v1 … vd`` per line, an optional ``count dim`` first
    line; only alphabetic words are kept (the first occurrence of a repeated word)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise KdexamError(f"Word-vectors file '{p}' does not exist; give a word2vec/GloVe text file "
                          "('word v1 v2 …' per line) to --augment-vectors.")
    words: list[str] = []
    values: list[str] = []
    seen: set[str] = set()
    dim = None
    with p.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            parts = line.rstrip().split(" ")
            if parts == [""]:
                continue
            if number == 1 and len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                dim = int(parts[1])
                continue
            if dim is None:
                dim = len(parts) - 1
                if dim < 1:
                    raise KdexamError(f"Word-vectors file '{p}' line {number} has a word but no vector; "
                                      "give a word2vec/GloVe text file ('word v1 v2 …' per line).")
            if len(parts) < dim + 1:
                raise KdexamError(f"Word-vectors file '{p}' line {number} has {len(parts) - 1} values where "
                                  f"earlier lines have {dim}; fix or remove that line.")
            word = " ".join(parts[:-dim])  # a few GloVe releases have words with spaces
            if word.isalpha() and word not in seen:
                seen.add(word)
                words.append(word)
                values.append(" ".join(parts[-dim:]))
    if not words:
        raise KdexamError(f"Word-vectors file '{p}' holds no alphabetic word; give a word2vec/GloVe text file.")
    try:
        matrix = np.array(" ".join(values).split(), dtype=np.float32).reshape(len(words), dim)
    except ValueError:
        raise KdexamError(f"Word-vectors file '{p}' has a value that is not a number; "
                          "give a word2vec/GloVe text file ('word v1 v2 …' per line).") from None
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if bad.size:  # (nan and inf parse as numbers, and would make every neighbour distance NaN)
        raise KdexamError(f"Word-vectors file '{p}' gives the word '{words[bad[0]]}' a value that is not finite (nan or "
                          "inf); fix or remove that line.")
    return EmbeddingSpace(words, matrix, lower=False, source=f"Word-vectors file '{p}'")


def read_word_embeddings(teacher_dir: Path) -> np.ndarray:
    """The input word-embedding matrix (``…word_embeddings.weight``) of a safetensors checkpoint
    (``model.safetensors``, or the shard that ``model.safetensors.index.json`` names)."""
    from safetensors import safe_open

    single = teacher_dir / "model.safetensors"
    index = teacher_dir / "model.safetensors.index.json"
    if single.is_file():
        path = single
    elif index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        names = sorted((k for k in weight_map if k.endswith("word_embeddings.weight")), key=len)
        path = teacher_dir / weight_map[names[0]] if names else None
    else:
        raise KdexamError(f"Teacher directory '{teacher_dir}' has no model.safetensors; pass a directory "
                          "written by 'kdexam teacher', or word vectors with --augment-vectors.")
    for framework in ("numpy", "pt") if path is not None else ():  # numpy cannot hold bfloat16; torch can
        try:
            with safe_open(str(path), framework=framework) as f:
                tensor_names = f.keys()  # a safetensors handle, not a dict
                keys = sorted((k for k in tensor_names if k.endswith("word_embeddings.weight")), key=len)
                if not keys:
                    break
                tensor = f.get_tensor(keys[0])
                return tensor if framework == "numpy" else tensor.float().numpy()
        except TypeError:
            continue
    raise KdexamError(f"Teacher checkpoint in '{teacher_dir}' has no word-embedding matrix "
                      "('…word_embeddings.weight'); give word vectors with --augment-vectors.")


def read_teacher_space(teacher_dir: str) -> EmbeddingSpace:
    """The teacher's input embeddings of its whole-word vocabulary entries."""
    d = Path(teacher_dir).expanduser()
    if not d.is_dir():
        raise KdexamError(f"Teacher directory '{d}' does not exist; pass a directory written by 'kdexam teacher'.")
    matrix = read_word_embeddings(d)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    except (OSError, ValueError) as e:
        raise KdexamError(f"Could not load the tokenizer of teacher '{d}' ({str(e).splitlines()[0]}); "
                          "pass a directory written by 'kdexam teacher'.") from None
    vocab = {w: i for w, i in whole_words(tokenizer).items() if i < matrix.shape[0]}
    return EmbeddingSpace(list(vocab), matrix[list(vocab.values())], lower=lowercases(tokenizer),
                          source=f"Teacher '{d}'")


class NeighboursAugmenter(WordSubstitution):
    """Each word, with probability ``p``, is replaced by one of its ``k`` nearest neighbours.

    Procedure: words are compared by cosine similarity of their vectors; a word drawn for
    replacement (see :class:`~kdexam.data.augment.base.WordSubstitution`: at least one
    replaceable word per copy) gets one of its ``k`` nearest other words, chosen uniformly.
    Only words of the embedding space can be replaced; the others stay as they are. The
    replacement takes the original's simple casing (Capitalised, ALL CAPS). Word count
    and tags are kept.

    The embedding space is, in order:

    - ``vectors_file``: a word2vec / GloVe text file (``word v1 … vd`` per line, an optional
      ``count dim`` first line); its alphabetic words are the vocabulary; a word is looked
      up as written, then lower-cased;
    - otherwise the teacher's own input embeddings: the ``…word_embeddings.weight`` matrix
      of ``teacher_dir/model.safetensors`` over the whole-word entries of the teacher's
      tokenizer (alphabetic, no ``##`` pieces, no special tokens); a word can be replaced
      when it is one such entry (lower-cased when the tokenizer lower-cases).

    Neighbours are computed lazily for the distinct words drawn for replacement, with one
    normalised matrix product per chunk of words (numpy), and memoised on the augmenter.

    Jiao et al. (2020) replace words with their K = 15 nearest GloVe neighbours when a word
    is not a single word piece (and sample from a masked LM otherwise: the ``mlm``
    augmenter); Wang & Yang (2015) introduced nearest-neighbour replacement in word
    embeddings as data augmentation.

    Args:
        p: per-word probability, 0 < p <= 1 (default 0.1).
        k: number of nearest neighbours to choose from, ≥ 1 (default 5).
        vectors_file: word2vec / GloVe text file.
        teacher_dir: teacher directory (``model.safetensors`` + tokenizer), used when no
            ``vectors_file`` is given.

    Sources: X. Jiao, Y. Yin, L. Shang, X. Jiang, X. Chen, L. Li, F. Wang and Q. Liu,
    "TinyBERT: Distilling BERT for Natural Language Understanding", Findings of EMNLP 2020
    (arXiv:1909.10351); W. Y. Wang and D. Yang, "That's So Annoying!!!: A Lexical and
    Frame-Semantic Embedding Based Data Augmentation Approach to Automatic Categorization
    of Annoying Behaviors using #petpeeve Tweets", EMNLP 2015.
    """

    name = "neighbours"

    def __init__(self, p: float = 0.1, k: int = 5, vectors_file: str | None = None,
                 teacher_dir: str | None = None) -> None:
        self.p = check_probability(p, self.name)
        if int(k) != k or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}.")
        if vectors_file is None and teacher_dir is None:
            raise KdexamError("The neighbours augmenter needs an embedding space: pass word vectors with "
                              "--augment-vectors FILE, or a teacher directory.")
        self.k = int(k)
        self.vectors_file = vectors_file
        self.teacher_dir = teacher_dir
        self._space: EmbeddingSpace | None = None

    @classmethod
    def from_options(cls, *, teacher_dir=None, vectors_file=None, p=None, **_) -> NeighboursAugmenter:
        return cls(p=0.1 if p is None else p, vectors_file=vectors_file, teacher_dir=teacher_dir)

    @property
    def space(self) -> EmbeddingSpace:
        if self._space is None:
            self._space = (read_vectors_file(self.vectors_file) if self.vectors_file is not None
                           else read_teacher_space(self.teacher_dir))
        return self._space

    def eligible(self, word: str) -> bool:
        return self.space.key(word) is not None

    def substitute(self, word: str, u: float) -> str:
        key = self.space.key(word)
        near = self.space.neighbours([key], self.k)[key] if key is not None else []
        return match_case(word, near[int(u * len(near))]) if near else word

    def augment_batch(self, items: list[tuple[Words, Tags, random.Random]]) -> list[tuple[Words, Tags]]:
        space = self.space
        selections: list[Selection] = [self.select(words, rng) if words else [] for words, _, rng in items]
        keys = {space.key(words[j]) for (words, _, _), sel in zip(items, selections) for j, _ in sel}
        space.neighbours(sorted(k for k in keys if k is not None), self.k)  # one chunked pass
        return [(self.apply(words, sel, self.substitute), tags) for (words, tags, _), sel in zip(items, selections)]

    def __repr__(self) -> str:
        source = f"vectors_file={self.vectors_file!r}" if self.vectors_file else f"teacher_dir={self.teacher_dir!r}"
        return f"NeighboursAugmenter(p={self.p}, k={self.k}, {source})"
