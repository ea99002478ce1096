"""A run's objective: a weighted sum of registered losses (:data:`~kdexam.objectives.registry.OBJECTIVES`).

A config lists objectives by name, with their weights and their own parameters, and
may add declarative layer matches::

    objectives:
      - {name: kl, temperature: 2.0, weight: 0.5}
      - {name: gold, weight: 0.5}
      - {name: hidden_mse, weight: 1.0, layers: uniform, embeddings: true}
    matches:
      - {teacher_layer: 6, student_layer: 2, feature: hidden, loss: mse, weight: 1.0}

:func:`build_objectives` checks both against the task and the two models' shapes and
returns a :class:`CompositeObjective`, whose ``forward`` returns the total and each
part, and whose parameters are the objectives' learnable projections.
"""

from __future__ import annotations

import difflib

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from kdexam.config import MatchSpec, ObjectiveSpec
from kdexam.errors import KdexamError
from kdexam.objectives.base import ALL_KINDS, GENERAL, BuildContext, ModelShape, Objective
from kdexam.objectives.relations import suggest_relation_heads
from kdexam.objectives.registry import MATCH_OBJECTIVES, OBJECTIVE_NAMES, OBJECTIVES
from kdexam.tasks import TASK_KINDS

_LABEL_TASKS = ("classification", "token-classification")
_OWN_ERRORS = {"bad_temperature", "bad_layers"}


def _closest_hint(value, choices) -> str:
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.0)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown_name_message(name) -> str:
    return f"Unknown objective '{name}'{_closest_hint(name, OBJECTIVE_NAMES)}; choose one of: {', '.join(OBJECTIVE_NAMES)}"


def _unknown_task_message(task_kind) -> str:
    return (f"Unknown task kind '{task_kind}'{_closest_hint(task_kind, ALL_KINDS)}; choose one of: "
            f"{', '.join(ALL_KINDS)}.")


def _error_text(err: dict) -> str:
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    msg = msg.rstrip(".")
    return f"{msg} (got {err.get('input')!r})" if "input" in err else msg


class CompositeObjective(nn.Module):
    r"""The weighted sum :math:`\mathcal{L} = \sum_i w_i \mathcal{L}_i` of several objectives.

    Build it with :func:`build_objectives` (which checks names, parameters, weights,
    task and shapes), or directly from objective modules and weights.

    Its parameters are exactly the objectives' learnable projections (width-mismatched
    layer pairs): a trainer optimises and checkpoints them with the student, and never
    exports them with it.

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
        >>> from kdexam.config import ObjectiveSpec
        >>> from kdexam.objectives import build_objectives
        >>> objective = build_objectives([ObjectiveSpec(name="kl", temperature=2.0, weight=0.5),
        ...                               ObjectiveSpec(name="gold", weight=0.5)], "classification")
        >>> student = {"logits": torch.zeros(2, 3, requires_grad=True)}
        >>> teacher = {"logits": torch.zeros(2, 3)}
        >>> total, parts = objective(student, teacher, {"labels": torch.tensor([0, 2])})
        >>> sorted(parts), round(total.item(), 4)  # 0.5 * 0 + 0.5 * log 3
        (['gold', 'kl'], 0.5493)
        >>> objective.teacher_requires, objective.student_requires
        ({'logits'}, {'logits'})
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

    @property
    def teacher_requires(self) -> set[str]:
        """The teacher outputs the objectives read (e.g. ``{"logits", "hidden.6"}``)."""
        return set().union(*(o.requires[0] for o in self.objectives))

    @property
    def student_requires(self) -> set[str]:
        """The student outputs the objectives read (``gold_loss`` is optional and never listed)."""
        return set().union(*(o.requires[1] for o in self.objectives))

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


def build_objectives(specs: list[ObjectiveSpec | dict], task_kind: str, teacher: ModelShape | None = None,
                     student: ModelShape | None = None,
                     matches: list[MatchSpec | dict] | None = None) -> CompositeObjective:
    """Check ``specs`` (and ``matches``) against the task and the shapes; build their weighted sum.

    Args:
        specs: objective entries (:class:`~kdexam.config.ObjectiveSpec` or dicts):
            ``name``, ``weight`` and the objective's own parameters.
        task_kind: one of :data:`kdexam.tasks.TASK_KINDS`, or ``"general"``
            (task-agnostic distillation: intermediate objectives only).
        teacher, student: the models' :class:`ModelShape` (needed by intermediate
            objectives; ``None`` is a model without transformer layers).
        matches: declarative layer matches (:class:`~kdexam.config.MatchSpec` or dicts);
            matches of the same feature and loss become one objective
            ``match:<objective>`` whose pairs carry the matches' weights.

    Objectives and matches of weight 0 are left out (so they need no teacher and are
    not cited). Raises :class:`~kdexam.errors.KdexamError` with one sentence for: an
    unknown task kind or objective name (naming the closest valid one), an objective
    that does not fit the task (naming the valid choices), a parameter the objective
    does not have (naming the closest valid key) or an invalid value, a negative
    weight, all weights 0, an empty list, an objective listed twice, an intermediate
    objective without transformer layers on both sides, a bad layer mapping, head
    counts or widths that do not fit the objective, and an invalid match.
    """
    if task_kind not in ALL_KINDS:
        raise KdexamError(_unknown_task_message(task_kind))
    specs, matches = list(specs or []), list(matches or [])
    if not specs and not matches:
        raise KdexamError(f"The objective list is empty; give at least one of: {', '.join(_fitting(task_kind))}.")
    teacher, student = teacher or ModelShape(), student or ModelShape()
    checked = [_check_spec(i, spec) for i, spec in enumerate(specs, 1)]
    for i, spec, cls, _ in checked:
        if task_kind not in cls.task_kinds:
            where = "general (task-agnostic) distillation" if task_kind == GENERAL else f"a {task_kind} task"
            raise KdexamError(f"Objective '{spec.name}' does not fit {where}; choose from: "
                              f"{', '.join(_fitting(task_kind))}.")
    groups = _compile_matches(matches)
    _check_list([spec for _, spec, _, _ in checked], groups)

    objectives, weights = [], []
    for i, spec, cls, params in checked:
        if spec.weight > 0:
            ctx = BuildContext(f"Objective {i} ('{spec.name}')", task_kind, teacher, student)
            objectives.append(cls.build(params, ctx))
            weights.append(spec.weight)
    for name, group in groups.items():
        keep = [k for k, w in enumerate(group["weights"]) if w > 0]
        if not keep:
            continue
        cls = OBJECTIVES[name]
        ctx = BuildContext(f"Match group 'match:{name}'", task_kind, teacher, student)
        objective = cls.build(cls.match_params(ctx), ctx, pairs=[group["pairs"][k] for k in keep],
                              pair_weights=[group["weights"][k] for k in keep],
                              projections=[group["projections"][k] for k in keep])
        objective.name = f"match:{name}"
        objectives.append(objective)
        weights.append(sum(group["weights"][k] for k in keep))
    return CompositeObjective(objectives, weights)


def check_objective_specs(specs, matches=None) -> None:
    """What can be checked of objectives and matches without the task, teacher or student: each
    name, field and parameter, and each match (a :class:`~kdexam.errors.KdexamError` as
    :func:`build_objectives` raises it). An exam checks every cell with it before any teacher trains."""
    def without_member(entry):  # the ensemble member an entry reads is checked when the teachers are known
        entry = entry.model_dump() if isinstance(entry, (ObjectiveSpec, MatchSpec)) else entry
        return {k: v for k, v in entry.items() if k != "teacher"} if isinstance(entry, dict) else entry

    checked = [_check_spec(i, without_member(spec))[1] for i, spec in enumerate(specs or [], 1)]
    groups = _compile_matches([without_member(m) for m in matches or []])
    if checked or groups:  # (an empty list is the run's default objectives, or refused when the task is known)
        _check_list(checked, groups)


def _check_list(specs: list[ObjectiveSpec], groups: dict) -> None:
    """An objective listed twice, or every weight 0, is refused."""
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise KdexamError(
                f"Objective '{name}' is listed {names.count(name)} times; keep one entry and set its weight.")
    if all(spec.weight == 0 for spec in specs) and all(sum(g["weights"]) == 0 for g in groups.values()):
        raise KdexamError("All objective weights are 0; give at least one objective a weight above 0.")


def _check_spec(i: int, spec) -> tuple[int, ObjectiveSpec, type[Objective], object]:
    """``(i, spec, class, params)`` of one entry, or a KdexamError naming what is wrong."""
    if isinstance(spec, ObjectiveSpec):
        spec = spec.model_dump()  # re-validate: a spec may have been built with model_construct or edited
    if not isinstance(spec, dict):
        raise KdexamError(f"Objective {i} must be a mapping such as {{name: kl, weight: 1.0}}, not {spec!r}.")
    name = spec.get("name")
    if not isinstance(name, str) or name not in OBJECTIVES:
        raise KdexamError(_unknown_name_message(name) + ".")
    label = f"Objective {i} ('{name}')"
    try:
        checked = ObjectiveSpec.model_validate(spec)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise KdexamError(f"{label} field '{field}' is invalid: {_error_text(err)}.") from None
    cls = OBJECTIVES[name]
    return i, checked, cls, _params(cls, checked.params, label)


def _params(cls: type[Objective], raw: dict, label: str):
    """``cls.Params`` validated from ``raw``; a KdexamError naming the closest key for a typo."""
    try:
        return cls.Params.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        fields = list(cls.Params.model_fields)
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, fields + ["weight", "name"], n=1, cutoff=0.6)
            if close:
                raise KdexamError(f"{label} has no parameter '{key}'; did you mean '{close[0]}'?") from None
            takes = f"its parameters are {', '.join(fields)}" if fields else "it takes no parameters besides name and weight"
            raise KdexamError(f"{label} has no parameter '{key}'; {takes}.") from None
        if key == "layers" and err["type"] != "bad_layers":
            raise KdexamError(f"{label} parameter 'layers' is invalid: give a rule (uniform, skip, first, last, final) "
                              f"or a list of [teacher_layer, student_layer] pairs (got {raw.get('layers')!r}).") from None
        raise KdexamError(f"{label} parameter '{key}' is invalid: {_error_text(err)}.") from None


def _compile_matches(matches: list) -> dict[str, dict]:
    """Matches grouped by the objective they compile to: ``{name: {pairs, weights, projections}}``."""
    groups: dict[str, dict] = {}
    for i, match in enumerate(matches, 1):
        if isinstance(match, MatchSpec):
            match = match.model_dump()
        if not isinstance(match, dict):
            raise KdexamError(f"Match {i} must be a mapping such as {{teacher_layer: 6, student_layer: 2, feature: "
                              f"hidden, loss: mse}}, not {match!r}.")
        try:
            m = MatchSpec.model_validate(match)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(key, list(MatchSpec.model_fields), n=1, cutoff=0.0)
                raise KdexamError(f"Match {i} has no key '{key}'; did you mean '{close[0]}'?") from None
            raise KdexamError(f"Match {i} field '{key}' is invalid: {_error_text(err)}.") from None
        if m.teacher is not None:
            raise KdexamError(f"Match {i} reads teacher '{m.teacher}' (an ensemble member), but this run has one "
                              "teacher; remove its 'teacher' key.")
        name = MATCH_OBJECTIVES.get((m.feature, m.loss))
        if name is None:
            valid = [loss for feature, loss in MATCH_OBJECTIVES if feature == m.feature]
            raise KdexamError(f"Match {i} compares '{m.feature}' with loss '{m.loss}', but {m.feature} takes "
                              f"{' or '.join(valid)}.")
        cls = OBJECTIVES[name]
        if m.projection != "auto" and not getattr(cls, "carries_width", False):
            raise KdexamError(f"Match {i} sets projection {m.projection}, but {m.feature} is compared without "
                              "projecting widths; remove 'projection'.")
        group = groups.setdefault(name, {"pairs": [], "weights": [], "projections": []})
        pair = (m.teacher_layer, m.student_layer)
        if pair in group["pairs"]:
            raise KdexamError(f"Match {i} repeats the pair teacher layer {pair[0]}, student layer {pair[1]} for "
                              f"{m.feature}/{m.loss}; keep one match and set its weight.")
        group["pairs"].append(pair)
        group["weights"].append(float(m.weight))
        group["projections"].append(m.projection)
    return groups


def _fitting(task_kind: str) -> list[str]:
    return [name for name, cls in OBJECTIVES.items() if task_kind in cls.task_kinds]


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


def general_objectives(teacher: ModelShape, student: ModelShape) -> list[ObjectiveSpec]:
    """The objectives of task-agnostic (general) distillation, when the config names none.

    - equal head counts: MiniLM (Wang et al. 2020): ``attention_kl`` and
      ``value_relation`` on the final layers (student's last ↔ teacher's last),
      weight 1 each, as in the paper's sum of the two losses;
    - different head counts: MiniLMv2 (Wang et al. 2021): ``relations`` (Q-Q, K-K,
      V-V) on the final layers, weight 1, with as many relation heads as the teacher
      has attention heads when that divides both widths, else the largest divisor of
      both widths not above the teacher's head count.

    Example:

        >>> from kdexam.objectives import ModelShape, general_objectives
        >>> [s.name for s in general_objectives(ModelShape(12, 768, 12), ModelShape(6, 384, 12))]
        ['attention_kl', 'value_relation']
        >>> [(s.name, s.params["relation_heads"]) for s in general_objectives(ModelShape(12, 768, 12), ModelShape(4, 256, 4))]
        [('relations', 8)]
    """
    for who, shape in (("teacher", teacher), ("student", student)):
        if shape is None or not shape.has_layers or not shape.hidden_size:
            raise KdexamError(f"General distillation matches transformer layers, but the {who} has none; use a "
                              "transformer student such as bert-mini or teacher-layers:K.")
    if teacher.num_heads and teacher.num_heads == student.num_heads:
        return [ObjectiveSpec(name="attention_kl", weight=1.0, layers="final"),
                ObjectiveSpec(name="value_relation", weight=1.0, layers="final")]
    heads = teacher.num_heads
    if not heads or teacher.hidden_size % heads or student.hidden_size % heads:
        heads = suggest_relation_heads(teacher, student)
    return [ObjectiveSpec(name="relations", weight=1.0, layers="final", relations=["qq", "kk", "vv"],
                          relation_heads=heads)]

