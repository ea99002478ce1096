"""N-gram sampling: a random contiguous span of the words (Tang et al., 2019)."""

from __future__ import annotations

import random

from kdexam.data.augment.base import Augmenter, Tags, Words


class NgramAugmenter(Augmenter):
    """A copy is a random contiguous n-gram of the original's words.

    Procedure (Tang et al., 2019, "n-gram sampling"): draw n uniformly from
    1 … min(``max_n``, L − 1) for a text of L ≥ 2 words, then a start position uniformly
    among the L − n + 1 possible ones, and keep words[start : start + n] (tagging: with
    their tags). The span is always shorter than the text, so a copy never equals its
    original; a one-word text comes back unchanged. Each side of a text pair is sampled
    on its own.

    Tang et al. apply n-gram sampling with probability p_ng = 0.25 to an example already
    masked and POS-swapped, with n from 1 … 5; here it is a method of its own (combine it
    with ``mask`` by listing both augmenters, which makes separate copies).

    Args:
        max_n: the longest span, ≥ 1 (default 5, as Tang et al.).

    Source: R. Tang, Y. Lu, L. Liu, L. Mou, O. Vechtomova and J. Lin, "Distilling
    Task-Specific Knowledge from BERT into Simple Neural Networks", 2019 (arXiv:1903.12136).
    """

    name = "ngram"

    def __init__(self, max_n: int = 5) -> None:
        if int(max_n) != max_n or max_n < 1:
            raise ValueError(f"max_n must be an integer >= 1, got {max_n!r}.")
        self.max_n = int(max_n)

    def augment_words(self, words: Words, tags: Tags, rng: random.Random) -> tuple[Words, Tags]:
        if len(words) < 2:
            return list(words), tags
        n = rng.randint(1, min(self.max_n, len(words) - 1))
        start = rng.randrange(len(words) - n + 1)
        return words[start:start + n], None if tags is None else tags[start:start + n]

    def __repr__(self) -> str:
        return f"NgramAugmenter(max_n={self.max_n})"
