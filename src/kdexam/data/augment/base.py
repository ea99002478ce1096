"""The augmenter interface: new examples from labelled ones, deterministic under a seed.

An :class:`Augmenter` turns each of ``examples`` into ``n`` new examples; the teacher
labels them later (:mod:`kdexam.data.transfer`). Rules shared by every augmenter:

- **Words.** A classification/regression text is split on whitespace into words and the
  new words are joined with single spaces; a ``text_pair`` is augmented as well, on its
  own (both sides of every new example). New examples have ``label=None``. For token
  classification ``text`` is already a list of words and ``label`` a list of tags (or
  ``None``); the new example's ``label`` is the list of tags that follows its words
  (substitutions keep every tag; an n-gram keeps the tags of its span).
- **Determinism.** Each new example draws from its own :class:`random.Random`, seeded with
  a string made of the run's seed, the augmenter's name, a SHA-1 of the original's text
  and pair (plus how many identical texts came before it in ``examples``, so that
  duplicates get different copies) and ``k``. The output therefore depends only on
  ``(example, n, seed)``: not on the global RNG, not on the order of ``examples`` and not
  on the other examples (neither Python's salted ``hash()`` nor the position in the list
  is used). Augmenters that call a model (:mod:`~kdexam.data.augment.mlm`) draw every
  random number before the model call, so batching changes no draw.
- **Never empty.** An original with no words comes back unchanged (the transfer set
  drops such duplicates); otherwise the new text has at least one word.

A new augmenter is one subclass of :class:`Augmenter` (or :class:`WordSubstitution`)
with a ``name`` and :meth:`Augmenter.augment_words`, in its own module, plus one line in
:data:`kdexam.data.augment.registry.AUGMENTERS`.

**Why not nlpaug.** We read nlpaug 1.1.11 (PyPI, 7 July 2022; the latest release when
checked): its augmenters draw from the global ``random`` / ``numpy.random`` state (its
only seeding helper, ``nlpaug.util.Randomness.seed``, sets the global seeds of random,
numpy and torch, and the maintainers closed the per-call determinism request, issue #6,
as "wontfix"), so an augmentation would depend on everything that ran before it; it
takes and returns strings that it re-tokenises itself, so word-aligned tags of token
classification cannot follow; it has no n-gram sampling (its ``crop`` deletes a span)
and no per-word Bernoulli masking (``aug_p`` fixes a count of words, capped by
``aug_max=10``); its contextual augmenter goes through ``transformers.pipeline`` with hub
model names; and it adds pandas, requests and gdown (a Google-Drive downloader) as
dependencies. The four procedures here are a few dozen lines each on numpy and the
transformers classes kdexam already uses.
"""

from __future__ import annotations

import hashlib
import json
import random
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from kdexam.errors import KdexamError

if TYPE_CHECKING:  # kdexam.data.readers imports torch (through kdexam.tasks); this package must not
    from kdexam.data.readers import Example

Words = list[str]
Tags = list[Any] | None
Selection = list[tuple[int, float]]
"""Positions to replace, each with its uniform draw in [0, 1) that picks the replacement."""

TAGGING = "token-classification"


def check_probability(p: float, what: str) -> float:
    if not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise KdexamError(f"The {what} augmenter's word probability p={p!r} is out of range; give 0 < p <= 1.")
    return float(p)


def match_case(original: str, replacement: str) -> str:
    """``replacement`` in ``original``'s simple casing style: ALL CAPS (two letters or more)
    stays all caps, Capitalised stays capitalised; otherwise ``replacement`` as it is."""
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    if original[:1].isupper() and replacement[:1].islower():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def example_keys(examples: list[Example]) -> list[str]:
    """A stable key per example: SHA-1 of its text and pair, then ``#m`` for the m-th repeat."""
    seen: dict[str, int] = {}
    keys = []
    for e in examples:
        digest = hashlib.sha1(json.dumps([e.text, e.text_pair], ensure_ascii=False).encode()).hexdigest()
        m = seen.get(digest, 0)
        seen[digest] = m + 1
        keys.append(f"{digest}#{m}")
    return keys


class Augmenter(ABC):
    """Makes ``n`` new examples per original; subclasses implement :meth:`augment_words`
    (one word list at a time) or override :meth:`augment_batch` (to batch lookups or
    model calls)."""

    name: ClassVar[str] = ""

    @classmethod
    def from_options(cls, *, teacher_dir: str | None = None, vectors_file: str | None = None,
                     mlm_model: str | None = None, p: float | None = None,
                     mask_token: str | None = None) -> Augmenter:
        """The augmenter for :func:`~kdexam.data.augment.build_augmenter`'s options (each class
        takes the ones it uses)."""
        return cls()

    def rng(self, seed: int, key: str, k: int) -> random.Random:
        """The generator of the k-th copy of the example with key ``key`` (see :func:`example_keys`)."""
        return random.Random(f"{seed}:{self.name}:{key}:{k}")

    def augment(self, examples: list[Example], n: int, seed: int, task_kind: str) -> list[tuple[int, Example]]:
        """``n`` new examples per original, as ``(index of the original, new example)`` pairs
        ordered by original, then copy. Deterministic: the same ``(examples, n, seed)`` gives
        the same output, whatever the global RNG state, and each example's copies do not
        depend on the other examples."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}.")
        tagging = task_kind == TAGGING
        jobs: list[tuple[int, Example, int]] = []  # (original, example, number of word lists)
        items: list[tuple[Words, Tags, random.Random]] = []
        for i, (e, key) in enumerate(zip(examples, example_keys(examples))):
            for k in range(n):
                rng = self.rng(seed, key, k)
                sides = self._word_lists(e, tagging)
                jobs.append((i, e, len(sides)))
                items.extend((words, tags, rng) for words, tags in sides)
        results = self.augment_batch(items) if items else []
        out: list[tuple[int, Example]] = []
        at = 0
        for i, e, count in jobs:
            out.append((i, self._rebuild(e, results[at:at + count], tagging)))
            at += count
        return out

    def augment_batch(self, items: list[tuple[Words, Tags, random.Random]]) -> list[tuple[Words, Tags]]:
        """New ``(words, tags)`` for each ``(words, tags, rng)``, in order. The two sides of a
        pair are consecutive items that share one generator."""
        return [self._guarded(words, tags, rng) for words, tags, rng in items]

    @abstractmethod
    def augment_words(self, words: Words, tags: Tags, rng: random.Random) -> tuple[Words, Tags]:
        """New words (and the tags that follow them) for one non-empty word list."""

    # ---------------------------------------------------------------- helpers

    def _guarded(self, words: Words, tags: Tags, rng: random.Random) -> tuple[Words, Tags]:
        if not words:
            return list(words), tags
        new_words, new_tags = self.augment_words(list(words), None if tags is None else list(tags), rng)
        if not new_words:  # never an empty text
            return list(words), tags
        return new_words, new_tags

    @staticmethod
    def _word_lists(e: Example, tagging: bool) -> list[tuple[Words, Tags]]:
        if isinstance(e.text, list):
            words = [str(w) for w in e.text]
            tags = list(e.label) if tagging and isinstance(e.label, list) else None
            if tags is not None and len(tags) != len(words):
                raise ValueError(f"A tagged example has {len(words)} words but {len(tags)} tags: {words!r}")
            return [(words, tags)]
        sides = [(str(e.text or "").split(), None)]
        if e.text_pair is not None:
            sides.append((str(e.text_pair).split(), None))
        return sides

    @staticmethod
    def _rebuild(e: Example, results: list[tuple[Words, Tags]], tagging: bool) -> Example:
        if isinstance(e.text, list):
            words, tags = results[0]
            return replace(e, text=words, text_pair=None, label=tags if tagging else None)
        texts = [" ".join(words) if words else original
                 for (words, _), original in zip(results, [e.text, e.text_pair])]
        return replace(e, text=texts[0], text_pair=texts[1] if len(texts) > 1 else None, label=None)


class WordSubstitution(Augmenter):
    """Replaces each eligible word with probability ``p``; word count and tags are kept.

    The draws of one word list, all made by :meth:`select` before any replacement is
    looked up: one uniform number per word (eligible or not, so that eligibility never
    shifts the stream); the words whose number is below ``p`` and that are
    :meth:`eligible` are replaced; when none is, one eligible word chosen uniformly is
    replaced instead, so a copy differs from its original whenever it can (the
    per-word rate is then slightly above ``p`` on short sentences); finally one uniform
    number per replaced word, which :meth:`substitute` maps to a replacement.
    """

    p: float

    def eligible(self, word: str) -> bool:
        """Whether ``word`` can be replaced (every word by default)."""
        return True

    def select(self, words: Words, rng: random.Random) -> Selection:
        draws = [rng.random() for _ in words]
        ok = [self.eligible(w) for w in words]
        chosen = [j for j, (u, good) in enumerate(zip(draws, ok)) if good and u < self.p]
        if not chosen:
            candidates = [j for j, good in enumerate(ok) if good]
            if candidates:
                chosen = [candidates[rng.randrange(len(candidates))]]
        return [(j, rng.random()) for j in chosen]

    def substitute(self, word: str, u: float) -> str:
        """The replacement of ``word`` for the uniform draw ``u`` (augmenters that look
        replacements up in batches override :meth:`augment_batch` instead)."""
        raise NotImplementedError

    def augment_words(self, words: Words, tags: Tags, rng: random.Random) -> tuple[Words, Tags]:
        return self.apply(words, self.select(words, rng), self.substitute), tags

    @staticmethod
    def apply(words: Words, selection: Selection, substitute) -> Words:
        new = list(words)
        for j, u in selection:
            new[j] = substitute(words[j], u)
        return new
