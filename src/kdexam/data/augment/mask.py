"""Masking: words replaced by the mask token (Tang et al., 2019)."""

from __future__ import annotations

from kdexam.data.augment.base import WordSubstitution, check_probability

TANG_2019 = ("R. Tang, Y. Lu, L. Liu, L. Mou, O. Vechtomova and J. Lin, \"Distilling Task-Specific "
             "Knowledge from BERT into Simple Neural Networks\", 2019 (arXiv:1903.12136)")


class MaskAugmenter(WordSubstitution):
    """Each word is replaced by a mask token with probability ``p``.

    Procedure (Tang et al., 2019, "masking"): every word independently, with
    probability ``p``, becomes ``token``. Words are whitespace-separated (classification)
    or the given words (tagging: one tag per word, all kept). Unlike Tang et al., a copy in
    which no word was drawn gets one word, chosen uniformly, masked, so that every copy of
    a non-empty text differs from its original (see :class:`WordSubstitution`; on a
    sentence of L words the expected masked fraction is p + (1 - p)^L / L).

    Tang et al. use p_mask = 0.1 together with POS-guided word replacement and n-gram
    sampling in one pass; here masking is its own method (the n-gram sampling is
    :class:`~kdexam.data.augment.ngram.NgramAugmenter`).

    Args:
        p: per-word probability, 0 < p <= 1 (default 0.1, Tang et al.'s p_mask).
        token: the mask token; :func:`~kdexam.data.augment.build_augmenter` passes the
            teacher tokenizer's mask token, so the teacher reads one special token where a
            word was (default ``"[MASK]"``, BERT's).

    Source: R. Tang, Y. Lu, L. Liu, L. Mou, O. Vechtomova and J. Lin, "Distilling
    Task-Specific Knowledge from BERT into Simple Neural Networks", 2019 (arXiv:1903.12136).
    """

    name = "mask"

    def __init__(self, p: float = 0.1, token: str = "[MASK]") -> None:
        self.p = check_probability(p, self.name)
        self.token = token

    def eligible(self, word: str) -> bool:
        """A word that already is the mask token is not one to mask (its copy would be the original)."""
        return word != self.token

    @classmethod
    def from_options(cls, *, p=None, mask_token=None, **_) -> MaskAugmenter:
        return cls(p=0.1 if p is None else p, token=mask_token or "[MASK]")

    def substitute(self, word: str, u: float) -> str:
        return self.token

    def __repr__(self) -> str:
        return f"MaskAugmenter(p={self.p}, token={self.token!r})"
