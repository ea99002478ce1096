"""The augmenters a config can name.

A new augmenter is one module (a subclass of :class:`~kdexam.data.augment.base.Augmenter`
with a ``name`` and, when it takes options, a ``from_options`` classmethod) plus one line
in :data:`AUGMENTERS`.
"""

from __future__ import annotations

import difflib

from kdexam.data.augment.base import Augmenter
from kdexam.data.augment.mask import MaskAugmenter
from kdexam.data.augment.mlm import MlmAugmenter
from kdexam.data.augment.neighbours import NeighboursAugmenter
from kdexam.data.augment.ngram import NgramAugmenter
from kdexam.errors import KdexamError

AUGMENTERS: dict[str, type[Augmenter]] = {cls.name: cls for cls in [
    MaskAugmenter,
    NeighboursAugmenter,
    NgramAugmenter,
    MlmAugmenter,
]}
"""Augmenter name -> class."""


def build_augmenter(name: str, *, teacher_dir: str | None = None, vectors_file: str | None = None,
                    mlm_model: str | None = None, p: float | None = None,
                    mask_token: str | None = None) -> Augmenter:
    """The augmenter called ``name``, with the options it uses (each class's defaults otherwise).

    Args:
        name: one of :data:`AUGMENTERS` (``mask``, ``neighbours``, ``ngram``, ``mlm``).
        teacher_dir: the teacher directory (``neighbours`` without ``vectors_file``).
        vectors_file: a word2vec / GloVe text file (``neighbours``).
        mlm_model: a local masked-LM model directory (``mlm``, required).
        p: per-word probability of ``mask``, ``neighbours`` and ``mlm`` (``ngram`` has none).
        mask_token: the teacher tokenizer's mask token (``mask``; default ``"[MASK]"``).

    Raises:
        KdexamError: an unknown name (naming the closest one), ``mlm`` without
            ``mlm_model``, ``neighbours`` with neither ``vectors_file`` nor ``teacher_dir``,
            or ``p`` outside (0, 1].
    """
    check_augmenter_name(name)
    return AUGMENTERS[name].from_options(teacher_dir=teacher_dir, vectors_file=vectors_file, mlm_model=mlm_model,
                            p=p, mask_token=mask_token)


def check_augmenter_name(name: str) -> None:
    """A :class:`KdexamError` naming the closest augmenter when ``name`` is not one of :data:`AUGMENTERS`."""
    if name not in AUGMENTERS:
        close = difflib.get_close_matches(str(name), list(AUGMENTERS), n=1, cutoff=0.0)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise KdexamError(f"Unknown augmenter '{name}'{hint}; choose one of: {', '.join(AUGMENTERS)}.")
