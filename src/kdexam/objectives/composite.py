"""A run's objective: a weighted sum of the small losses in :mod:`kdexam.objectives.logits`.

A config lists objectives by name::

    objectives:
      - {name: kl, temperature: 2.0, weight: 0.5}
      - {name: gold, weight: 0.5}

:func:`build_objectives` checks the list against the task and returns a
:class:`CompositeObjective`, whose ``forward`` returns the total and each part.
"""

from __future__ import annotations

import difflib
import math

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from torch import Tensor, nn

from kdexam.errors import KdexamError
from kdexam.objectives.logits import (
    GoldLoss,
    HardDistillationLoss,
    KLDivLoss,
    LogitMSELoss,
    Objective,
    RegressionDistillLoss,
    SoftCrossEntropyLoss,
)
from kdexam.tasks import TASK_KINDS

_LABEL_TASKS = ("classification", "token-classification")

OBJECTIVES: dict[str, tuple[type[Objective], tuple[str, ...]]] = {
    "kl": (KLDivLoss, _LABEL_TASKS),
    "soft_ce": (SoftCrossEntropyLoss, _LABEL_TASKS),
    "mse": (LogitMSELoss, _LABEL_TASKS),
    "hard": (HardDistillationLoss, _LABEL_TASKS),
    "gold": (GoldLoss, TASK_KINDS),
    "regression_mse": (RegressionDistillLoss, ("regression",)),
}
"""Objective name -> (class, task kinds it fits)."""

OBJECTIVE_NAMES: tuple[str, ...] = tuple(OBJECTIVES)
TEMPERATURE_OBJECTIVES: tuple[str, ...] = ("kl", "soft_ce")


def _unknown_name_message(name: str) -> str:
    close = difflib.get_close_matches(str(name), OBJECTIVE_NAMES, n=1, cutoff=0.0)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"Unknown objective '{name}'{hint}; choose one of: {', '.join(OBJECTIVE_NAMES)}"


class ObjectiveSpec(BaseModel):
    """One entry of a run's objective list: which loss, its weight, its temperature."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """One of ``kl``, ``soft_ce``, ``mse``, ``hard``, ``gold``, ``regression_mse``."""
    weight: float = 1.0
    """Weight of this loss in the sum; >= 0 (0 switches it off)."""
    temperature: float | None = None
    """Softmax temperature, only for ``kl`` and ``soft_ce`` (1.0 when omitted there);
    giving one to another objective is an error."""

    @model_validator(mode="before")
    @classmethod
    def _default_temperature(cls, data):
        if isinstance(data, dict) and data.get("name") in TEMPERATURE_OBJECTIVES and data.get("temperature") is None:
            data = {**data, "temperature": 1.0}
        return data

    @field_validator("name")
    @classmethod
    def _known_name(cls, name: str) -> str:
        if name not in OBJECTIVES:
            raise PydanticCustomError("unknown_objective", _unknown_name_message(name))
        return name

    @field_validator("weight")
    @classmethod
    def _nonnegative_weight(cls, weight: float) -> float:
        if not math.isfinite(weight) or weight < 0:
            raise PydanticCustomError("bad_weight", "An objective's weight must be a finite number >= 0")
        return weight

    @model_validator(mode="after")
    def _temperature_fits(self) -> "ObjectiveSpec":
        if self.temperature is None:
            return self
        if self.name not in TEMPERATURE_OBJECTIVES:
            raise PydanticCustomError(
                "temperature_not_applicable",
                f"Objective '{self.name}' takes no temperature; remove it, or use kl or soft_ce")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise PydanticCustomError("bad_temperature", f"Objective '{self.name}' needs a temperature > 0")
        return self


class CompositeObjective(nn.Module):
    r"""The weighted sum :math:`\mathcal{L} = \sum_i w_i \mathcal{L}_i` of several objectives.

    Build it with :func:`build_objectives` (which checks names, weights and task),
    or directly from objective modules and weights.

    Args:
        objectives: the loss modules, with distinct ``name`` attributes.
        weights: one weight per objective.

    Inputs:
        ``forward(student, teacher, batch)`` as each objective; ``teacher`` may be
        ``None`` when :attr:`needs_teacher` is False.

    Returns:
        ``(total, parts)``: ``total`` is the float32 scalar to back-propagate;
        ``parts`` maps each objective's name to its *unweighted* value (a float, for
        logging), so ``total == sum(w_i * parts[name_i])``.

    Example:

        >>> import torch
        >>> from kdexam.objectives import ObjectiveSpec, build_objectives
        >>> objective = build_objectives([ObjectiveSpec(name="kl", temperature=2.0, weight=0.5),
        ...                               ObjectiveSpec(name="gold", weight=0.5)], "classification")
        >>> student = {"logits": torch.zeros(2, 3, requires_grad=True)}
        >>> teacher = {"logits": torch.zeros(2, 3)}
        >>> total, parts = objective(student, teacher, {"labels": torch.tensor([0, 2])})
        >>> sorted(parts), round(total.item(), 4)  # 0.5 * 0 + 0.5 * log 3
        (['gold', 'kl'], 0.5493)
    """

    def __init__(self, objectives: list[Objective], weights: list[float]) -> None:
        super().__init__()
        if len(objectives) != len(weights):
            raise ValueError(f"{len(objectives)} objectives but {len(weights)} weights.")
        names = [o.name for o in objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"Objective names must be distinct, got {names}.")
        self.objectives = nn.ModuleList(objectives)
        self.weights = [float(w) for w in weights]

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def needs_teacher(self) -> bool:
        """Whether any objective reads the teacher's outputs (False for gold only)."""
        return any(o.needs_teacher for o in self.objectives)

    def citations(self) -> list[str]:
        """BibTeX entries of the papers behind the objectives used, each once."""
        seen: list[str] = []
        for o in self.objectives:
            for entry in o.citation_entries:
                if entry not in seen:
                    seen.append(entry)
        return seen

    def extra_repr(self) -> str:
        return ", ".join(f"{n}={w:g}" for n, w in zip(self.names, self.weights))

    def forward(self, student: dict, teacher: dict | None, batch: dict) -> tuple[Tensor, dict[str, float]]:
        if teacher is None and self.needs_teacher:
            raise ValueError(f"Objectives {self.names} need the teacher's outputs, but teacher is None.")
        values = [o(student, teacher, batch) for o in self.objectives]
        total = values[0] * self.weights[0]
        for w, v in zip(self.weights[1:], values[1:]):
            total = total + w * v
        # one device->host copy for all parts, not one per part
        parts = dict(zip(self.names, torch.stack([v.detach().float() for v in values]).tolist()))
        return total, parts


def build_objectives(specs: list[ObjectiveSpec | dict], task_kind: str) -> CompositeObjective:
    """Check ``specs`` against ``task_kind`` and build their weighted sum.

    Objectives of weight 0 are left out (so they need no teacher and are not cited).
    Raises :class:`~kdexam.errors.KdexamError` with one sentence for: an unknown
    task kind or objective name (naming the closest valid one), an objective that
    does not fit the task (naming the valid choices), a temperature given to an
    objective that takes none, a negative weight, all weights 0, an empty list, and
    an objective listed twice.
    """
    if task_kind not in TASK_KINDS:
        close = difflib.get_close_matches(str(task_kind), TASK_KINDS, n=1, cutoff=0.0)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise KdexamError(f"Unknown task kind '{task_kind}'{hint}; choose one of: {', '.join(TASK_KINDS)}.")
    if not specs:
        raise KdexamError(f"The objective list is empty; give at least one of: {', '.join(_fitting(task_kind))}.")
    checked: list[ObjectiveSpec] = []
    for i, spec in enumerate(specs, 1):
        if isinstance(spec, ObjectiveSpec):
            # re-validate: a spec may have been built with model_construct or edited
            spec = spec.model_dump()
        if not isinstance(spec, dict):
            raise KdexamError(f"Objective {i} must be a mapping such as {{name: kl, weight: 1.0}}, not {spec!r}.")
        if not isinstance(spec.get("name"), str) or spec["name"] not in OBJECTIVES:
            raise KdexamError(_unknown_name_message(spec.get("name")) + ".")
        try:
            checked.append(ObjectiveSpec.model_validate(spec))
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            where = f" (field '{field}')" if field else ""
            msg = err["msg"] if err["type"] in _OWN_ERRORS else f"{err['msg']} (got {err.get('input')!r})"
            raise KdexamError(f"Objective {i} ('{spec.get('name')}'){where} is invalid: {msg.rstrip('.')}.") from None
    for spec in checked:
        fits = OBJECTIVES[spec.name][1]
        if task_kind not in fits:
            valid = ", ".join(_fitting(task_kind))
            raise KdexamError(f"Objective '{spec.name}' does not fit a {task_kind} task; choose from: {valid}.")
    names = [s.name for s in checked]
    for name in names:
        if names.count(name) > 1:
            raise KdexamError(
                f"Objective '{name}' is listed {names.count(name)} times; keep one entry and set its weight.")
    if all(s.weight == 0 for s in checked):
        raise KdexamError("All objective weights are 0; give at least one objective a weight above 0.")
    used = [s for s in checked if s.weight > 0]
    return CompositeObjective([_instantiate(s, task_kind) for s in used], [s.weight for s in used])


_OWN_ERRORS = {"unknown_objective", "bad_weight", "temperature_not_applicable", "bad_temperature"}


def _fitting(task_kind: str) -> list[str]:
    return [name for name, (_, kinds) in OBJECTIVES.items() if task_kind in kinds]


def _instantiate(spec: ObjectiveSpec, task_kind: str) -> Objective:
    cls = OBJECTIVES[spec.name][0]
    if spec.name in TEMPERATURE_OBJECTIVES:
        return cls(temperature=spec.temperature)
    if cls is GoldLoss:
        return GoldLoss(task_kind)
    return cls()


def default_objectives(task_kind: str) -> list[ObjectiveSpec]:
    """The objectives of a plain run, when the config names none.

    - classification and token classification: ``kl`` at temperature 2 with weight
      0.5, plus ``gold`` with weight 0.5;
    - regression: ``regression_mse`` with weight 0.5, plus ``gold`` with weight 0.5.

    Where this comes from: Hinton et al. (2015) train on a weighted average of the
    soft-target loss (scaled by :math:`T^2`) and the hard-label cross-entropy, and
    Tang et al. (2019) mix their logit loss with the gold loss by a weight
    :math:`\\alpha`. The values T = 2 and an even 0.5 / 0.5 mix are the defaults of
    Hugging Face's distillation examples (DistilBERT's ``train.py`` and
    ``run_squad_w_distillation.py``) and of Tunstall et al., *Natural Language
    Processing with Transformers* (2022), ch. 8. They are a starting point, not a
    tuned optimum: Hinton et al. report their best results with a considerably
    lower weight on the hard labels, and Tang et al. found pure distillation best
    once the transfer set is large (augmented); with unlabelled transfer data the
    gold term simply sees fewer examples. Regression has no softmax to soften, so
    its recipe mirrors the same even mix with the teacher's scores as targets.
    """
    if task_kind == "regression":
        return [ObjectiveSpec(name="regression_mse", weight=0.5), ObjectiveSpec(name="gold", weight=0.5)]
    if task_kind in _LABEL_TASKS:
        return [ObjectiveSpec(name="kl", temperature=2.0, weight=0.5), ObjectiveSpec(name="gold", weight=0.5)]
    close = difflib.get_close_matches(str(task_kind), TASK_KINDS, n=1, cutoff=0.0)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise KdexamError(f"Unknown task kind '{task_kind}'{hint}; choose one of: {', '.join(TASK_KINDS)}.")
