"""Objectives of a run with several teachers (:mod:`kdexam.teachers.ensemble`).

Logit objectives (``kl``, ``mse``, ``gold``, …) read the ensemble's combined target, as
they read one teacher's logits. An objective or match that reads one member — a layer
match, a representation target, or a logit loss against one member alone — names it:
``{name: hidden_mse, teacher: minilm, layers: uniform}`` or ``--match
teacher=minilm,teacher_layer=6,student_layer=2``. It is built against that member's
shape and reads its outputs as ``NAME@member`` (:class:`MemberObjective`).
"""

from __future__ import annotations

from torch import Tensor, nn

from kdexam.config import MatchSpec, ObjectiveSpec
from kdexam.errors import KdexamError
from kdexam.objectives.base import ModelShape
from kdexam.objectives.composite import CompositeObjective, build_objectives


class MemberObjective(nn.Module):
    """An objective reading one ensemble member's outputs (``hidden.6@minilm`` as its ``hidden.6``);
    named ``NAME@member`` in logs and ``metrics.json``."""

    def __init__(self, inner: nn.Module, member: str):
        super().__init__()
        self.inner, self.member = inner, member
        self.name = f"{inner.name}@{member}"
        self.citation_entries = inner.citation_entries

    @property
    def needs_teacher(self) -> bool:
        return self.inner.needs_teacher

    @property
    def requires(self) -> tuple[set[str], set[str]]:
        teacher, student = self.inner.requires
        return {f"{k}@{self.member}" for k in teacher}, student

    def forward(self, student: dict, teacher: dict | None, batch: dict) -> Tensor:
        suffix = f"@{self.member}"
        view = None if teacher is None else {k[: -len(suffix)]: v for k, v in teacher.items() if k.endswith(suffix)}
        return self.inner(student, view, batch)


def build_ensemble_objectives(specs: list, matches: list, task_kind: str, shapes: dict[str, ModelShape],
                              student: ModelShape) -> CompositeObjective:
    """The stage's objectives for an ensemble whose members have ``shapes`` (by name): entries
    without ``teacher`` read the combined logits; the others are built per member and wrapped."""
    groups: dict[str | None, tuple[list, list]] = {}
    for i, spec in enumerate(specs, 1):
        entry = spec.model_dump() if isinstance(spec, ObjectiveSpec) else dict(spec)
        member = entry.pop("teacher", None)
        _check_member(member, shapes, f"Objective {i} ('{entry.get('name')}')")
        groups.setdefault(member, ([], []))[0].append(entry)
    for i, match in enumerate(matches, 1):
        entry = match.model_dump() if isinstance(match, MatchSpec) else dict(match)
        member = entry.pop("teacher", None)
        if member is None:
            raise KdexamError(f"Match {i} compares teacher layers, but there are several teachers; name the one it "
                              f"reads with teacher=NAME (one of: {', '.join(shapes)}).")
        _check_member(member, shapes, f"Match {i}")
        groups.setdefault(member, ([], []))[1].append(entry)
    objectives, weights = [], []
    switched_off = lambda entries: all(e.get("weight", 1.0) in (0, 0.0) for e in entries)  # noqa: E731
    for member, (group_specs, group_matches) in groups.items():
        if len(groups) > 1 and switched_off(group_specs) and switched_off(group_matches):
            continue  # weight 0 leaves a term out, as with one teacher (build_objectives checks the values)
        shape = shapes[member] if member else next(iter(shapes.values()))
        built = build_objectives(group_specs, task_kind, teacher=shape, student=student, matches=group_matches)
        for objective, weight in zip(built.objectives, built.weights):
            if member is None:
                reads = sorted(set(objective.requires[0]) - {"logits"})
                if reads:
                    raise KdexamError(f"Objective '{objective.name}' reads the teacher's {', '.join(reads)}, but there are "
                                      f"several teachers; name the member it reads with teacher: NAME (one of: "
                                      f"{', '.join(shapes)}).")
            objectives.append(objective if member is None else MemberObjective(objective, member))
            weights.append(weight)
    if not objectives:
        raise KdexamError("All objective weights are 0; give at least one objective a weight above 0.")
    return CompositeObjective(objectives, weights)


def _check_member(member: str | None, shapes: dict, label: str) -> None:
    if member is not None and member not in shapes:
        raise KdexamError(f"{label} reads teacher '{member}', which is not a member of the ensemble; use one of: "
                          f"{', '.join(shapes)}.")
