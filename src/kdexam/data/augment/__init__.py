"""Augmenters: new unlabelled examples made from the labelled ones, for the transfer set.

Each augmenter makes ``n`` copies of every original, deterministically under a seed, and
the teacher labels them (:mod:`kdexam.data.transfer`); the rules they share (words,
tags, seeding) are in :mod:`kdexam.data.augment.base`, which also says why kdexam does
not use nlpaug.

- ``mask`` (:class:`MaskAugmenter`): words replaced by the mask token (Tang et al. 2019);
- ``ngram`` (:class:`NgramAugmenter`): a random n-gram of the words (Tang et al. 2019);
- ``neighbours`` (:class:`NeighboursAugmenter`): words replaced by nearest neighbours in
  word vectors or the teacher's input embeddings (Jiao et al. 2020; Wang & Yang 2015);
- ``mlm`` (:class:`MlmAugmenter`): words replaced by a local masked LM's predictions
  (TinyBERT, Jiao et al. 2020).

:func:`build_augmenter` makes one by name. Importing this package imports neither torch
nor transformers; ``neighbours`` (teacher embeddings) and ``mlm`` import them on first use.
"""

from kdexam.data.augment.base import Augmenter, WordSubstitution
from kdexam.data.augment.mask import MaskAugmenter
from kdexam.data.augment.mlm import MlmAugmenter
from kdexam.data.augment.neighbours import NeighboursAugmenter
from kdexam.data.augment.ngram import NgramAugmenter
from kdexam.data.augment.registry import AUGMENTERS, build_augmenter

__all__ = [
    "AUGMENTERS",
    "Augmenter",
    "MaskAugmenter",
    "MlmAugmenter",
    "NeighboursAugmenter",
    "NgramAugmenter",
    "WordSubstitution",
    "build_augmenter",
]
