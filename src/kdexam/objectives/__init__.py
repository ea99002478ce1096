"""Distillation objectives: small loss modules and their weighted sum.

Each objective is an :class:`torch.nn.Module` called as
``objective(student, teacher, batch) -> scalar`` on dicts of named outputs, with a
short ``name`` and a ``citation`` (BibTeX). A run combines them with
:func:`build_objectives`, from a list of :class:`ObjectiveSpec`
(:func:`default_objectives` gives the plain-run recipe).
"""

from kdexam.objectives.composite import (
    OBJECTIVE_NAMES,
    OBJECTIVES,
    CompositeObjective,
    ObjectiveSpec,
    build_objectives,
    default_objectives,
)
from kdexam.objectives.logits import (
    GoldLoss,
    HardDistillationLoss,
    KLDivLoss,
    LogitMSELoss,
    Objective,
    RegressionDistillLoss,
    SoftCrossEntropyLoss,
    token_mask,
)

__all__ = [
    "OBJECTIVES",
    "OBJECTIVE_NAMES",
    "CompositeObjective",
    "GoldLoss",
    "HardDistillationLoss",
    "KLDivLoss",
    "LogitMSELoss",
    "Objective",
    "ObjectiveSpec",
    "RegressionDistillLoss",
    "SoftCrossEntropyLoss",
    "build_objectives",
    "default_objectives",
    "token_mask",
]
