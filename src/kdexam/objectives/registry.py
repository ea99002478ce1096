"""The objectives a config can name, and the declarative matches they serve.

A new objective is one class (see :mod:`kdexam.objectives.base`) plus one line in
:data:`OBJECTIVES`.
"""

from __future__ import annotations

from kdexam.objectives.attention import AttentionKLLoss, AttentionMSELoss, ValueRelationLoss
from kdexam.objectives.base import Objective
from kdexam.objectives.features import EmbeddingMSELoss, HiddenCosineLoss, HiddenMSELoss, PKDLoss
from kdexam.objectives.gold import GoldLoss
from kdexam.objectives.logits import (
    HardDistillationLoss,
    KLDivLoss,
    LogitMSELoss,
    RegressionDistillLoss,
    SoftCrossEntropyLoss,
)
from kdexam.objectives.relations import RelationsLoss
from kdexam.objectives.representation import RepresentationLoss

OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in [
    KLDivLoss,
    SoftCrossEntropyLoss,
    LogitMSELoss,
    HardDistillationLoss,
    GoldLoss,
    RegressionDistillLoss,
    HiddenMSELoss,
    HiddenCosineLoss,
    EmbeddingMSELoss,
    AttentionKLLoss,
    AttentionMSELoss,
    ValueRelationLoss,
    RelationsLoss,
    PKDLoss,
    RepresentationLoss,
]}
"""Objective name -> class (its ``task_kinds``, ``Params`` and ``citation_entries`` on the class)."""

OBJECTIVE_NAMES: tuple[str, ...] = tuple(OBJECTIVES)

MATCH_OBJECTIVES: dict[tuple[str, str], str] = {
    ("hidden", "mse"): "hidden_mse",
    ("hidden", "cosine"): "hidden_cosine",
    ("cls", "mse"): "pkd",
    ("attention", "kl"): "attention_kl",
    ("attention_scores", "mse"): "attention_mse",
    ("value_relation", "kl"): "value_relation",
    ("relations", "kl"): "relations",
}
"""A match's (feature, loss) -> the objective that computes it."""
