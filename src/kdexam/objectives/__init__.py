"""Distillation objectives: small loss modules and their weighted sum.

Each objective is an :class:`torch.nn.Module` called as
``objective(student, teacher, batch) -> scalar`` on dicts of named outputs
(:mod:`kdexam.outputs`), with a short ``name``, the task kinds it serves, its own
parameters (a pydantic ``Params`` model), the named outputs it ``requires`` and a
``citation`` (BibTeX); see :mod:`kdexam.objectives.base`.

- on the final outputs (:mod:`~kdexam.objectives.logits`): ``kl``, ``soft_ce``,
  ``mse``, ``hard``, ``gold``, ``regression_mse``;
- on hidden states (:mod:`~kdexam.objectives.features`): ``hidden_mse``,
  ``hidden_cosine``, ``embedding_mse``, ``pkd``;
- on a BiLSTM, CNN or static student's sentence vector or token states
  (:mod:`~kdexam.objectives.representation`): ``representation``;
- on self-attention (:mod:`~kdexam.objectives.attention`,
  :mod:`~kdexam.objectives.relations`): ``attention_kl``, ``attention_mse``,
  ``value_relation``, ``relations``.

A run combines them with :func:`build_objectives`, from a list of
:class:`~kdexam.config.ObjectiveSpec` and optional :class:`~kdexam.config.MatchSpec`
(:func:`default_objectives` gives the plain-run recipe, :func:`general_objectives` the
task-agnostic one); :func:`layer_pairs` maps student layers to teacher layers.
"""

from kdexam.config import MatchSpec, ObjectiveSpec
from kdexam.objectives.attention import AttentionKLLoss, AttentionMSELoss, ValueRelationLoss
from kdexam.objectives.base import (
    ALL_KINDS,
    GENERAL,
    BuildContext,
    LayerObjective,
    ModelShape,
    Objective,
    ObjectiveParams,
)
from kdexam.objectives.composite import (
    CompositeObjective,
    build_objectives,
    check_objective_specs,
    default_objectives,
    general_objectives,
)
from kdexam.objectives.features import EmbeddingMSELoss, HiddenCosineLoss, HiddenMSELoss, PKDLoss
from kdexam.objectives.gold import GoldLoss
from kdexam.objectives.logits import (
    HardDistillationLoss,
    KLDivLoss,
    LogitMSELoss,
    RegressionDistillLoss,
    SoftCrossEntropyLoss,
    token_mask,
)
from kdexam.objectives.mapping import LAYER_RULES, layer_pairs
from kdexam.objectives.registry import MATCH_OBJECTIVES, OBJECTIVE_NAMES, OBJECTIVES
from kdexam.objectives.relations import RelationsLoss, suggest_relation_heads
from kdexam.objectives.representation import RepresentationLoss

__all__ = [
    "ALL_KINDS",
    "GENERAL",
    "LAYER_RULES",
    "MATCH_OBJECTIVES",
    "OBJECTIVES",
    "OBJECTIVE_NAMES",
    "AttentionKLLoss",
    "AttentionMSELoss",
    "BuildContext",
    "CompositeObjective",
    "EmbeddingMSELoss",
    "GoldLoss",
    "HardDistillationLoss",
    "HiddenCosineLoss",
    "HiddenMSELoss",
    "KLDivLoss",
    "LayerObjective",
    "LogitMSELoss",
    "MatchSpec",
    "ModelShape",
    "Objective",
    "ObjectiveParams",
    "ObjectiveSpec",
    "PKDLoss",
    "RegressionDistillLoss",
    "RelationsLoss",
    "RepresentationLoss",
    "SoftCrossEntropyLoss",
    "ValueRelationLoss",
    "build_objectives",
    "check_objective_specs",
    "default_objectives",
    "general_objectives",
    "layer_pairs",
    "suggest_relation_heads",
    "token_mask",
]
