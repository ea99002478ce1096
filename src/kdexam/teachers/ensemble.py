"""Several teachers distilled together, whatever their tokenizers: an :class:`Ensemble`.

Each member is a :class:`~kdexam.teachers.teacher.Teacher`: it tokenizes the raw
examples itself and keeps its own cache (the cache key holds the member's weights and
tokenizer), so a WordPiece BERT and an MPNet combine as easily as two BERTs. Outputs
combine at the label level, example by example — TextBrewer's multi-teacher distiller,
by contrast, averages the logits of teachers fed one shared batch of input ids.

With member m's logits :math:`z_m`, probabilities :math:`p_m = \\mathrm{softmax}(z_m)`
and weights :math:`w_m \\ge 0`, :math:`\\sum_m w_m = 1`:

- ``combine: probs`` (default): :math:`\\bar p = \\sum_m w_m p_m`, the average of the
  members' predictive distributions (the ensemble that Hinton et al. 2015 distil); the
  target's logits are :math:`\\log \\bar p`, so its softmax is :math:`\\bar p`.
- ``combine: logits``: :math:`\\bar z = \\sum_m w_m z_m` (TextBrewer's averaging).
- regression: :math:`\\bar y = \\sum_m w_m y_m` (``combine`` does not apply).

Weights (``weighting``):

- ``equal``: :math:`w_m = 1/M`;
- ``fixed``: the configured weights, normalised;
- ``validation``: :math:`w_m \\propto s_m`, each member's primary metric on the
  validation split (:math:`1/s_m` for metrics where lower is better);
- ``confidence``: per example (per word for tagging),
  :math:`w_m(x) \\propto \\max_c p_m(c \\mid x)`, so a member that is sure of an
  example speaks louder there (classification and tagging).

Tagging: every member stores its logits word by word (at each word's first subword of
its *own* tokenization; :func:`~kdexam.teachers.teacher.stored_form`), so members
combine per word even when their tokenizers split words differently. A word that a
member cut off by truncation (stored as zeros) is left out of that member's vote for
that word; when every member cut it, the target stays zeros (uniform).

Members must share the task kind, the text-pair setting and the label set; labels in
another order are reordered to the first member's. Intermediate outputs are read from
one named member: ``hidden.6@NAME`` is member NAME's ``hidden.6``.

Avram et al. (2022) distil two Romanian BERTs into one student this way and report the
student's loyalty to each teacher; ``distill`` does the same (``metrics.json``
``teachers``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.special import softmax

from kdexam.config import EnsembleConfig
from kdexam.data.readers import Example
from kdexam.errors import KdexamError
from kdexam.evaluation.loyalty import AVRAM_2022
from kdexam.tasks import Task
from kdexam.teachers.cache import TeacherOutputs
from kdexam.teachers.teacher import Teacher

CITATION = AVRAM_2022  # (the regression loyalty is after the same paper)


def member_names(dirs: list[str]) -> list[str]:
    """Each member's name: its directory's name, or the path as given when two names clash."""
    names = [Path(d).name or str(d) for d in dirs]
    return names if len(set(names)) == len(names) else [str(d) for d in dirs]


def split_member(name: str) -> tuple[str, str | None]:
    """``hidden.6@minilm`` -> ``("hidden.6", "minilm")``; ``logits`` -> ``("logits", None)``."""
    base, sep, member = name.partition("@")
    return base, (member if sep else None)


def label_order(first: Task, other: Task, first_name: str, other_name: str) -> np.ndarray | None:
    """Column indices that put ``other``'s logits in ``first``'s label order (``None``: already so);
    a one-sentence error naming both teachers when their tasks or label sets differ."""
    if (other.kind, other.text_pair) != (first.kind, first.text_pair):
        what = lambda t: f"{t.kind}{' on text pairs' if t.text_pair else ''}"  # noqa: E731
        raise KdexamError(f"Teachers '{first_name}' ({what(first)}) and '{other_name}' ({what(other)}) were trained for "
                          "different tasks; an ensemble's members must share one task and label set.")
    if first.kind == "regression" or list(other.labels or []) == list(first.labels or []):
        return None
    if sorted(other.labels or []) != sorted(first.labels or []):
        only_first = sorted(set(first.labels or []) - set(other.labels or []))
        only_other = sorted(set(other.labels or []) - set(first.labels or []))
        raise KdexamError(f"Teachers '{first_name}' and '{other_name}' have different label sets (only in the first: "
                          f"{only_first}; only in the second: {only_other}); an ensemble's members must share one label set.")
    return np.array([other.labels.index(label) for label in first.labels])


def combine(member_logits: list[np.ndarray], task_kind: str, how: str = "probs", weights: list[float] | None = None,
            confidence: bool = False) -> np.ndarray:
    """One example's (or one batch's) ensemble target from each member's logits (same shape:
    ``[C]``, ``[words, C]`` or ``[1]`` for regression); see the module doc for the formulas.

    ``weights``: one per member (normalised here; ``None``: equal); ``confidence``: weight each
    row by the member's largest probability instead (times ``weights``). Rows that are all zeros
    (a word the member truncated) get weight 0."""
    z = np.stack([np.asarray(m, dtype=np.float64) for m in member_logits])  # [M, ..., C]
    w = np.ones(len(member_logits)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = np.broadcast_to(w.reshape((-1,) + (1,) * (z.ndim - 1)), z.shape[:-1] + (1,)).copy()  # [M, ..., 1]
    if task_kind == "regression":
        return ((w * z).sum(0) / w.sum(0)).astype(np.float32)
    present = np.any(z != 0, axis=-1, keepdims=True)
    w = w * present
    if confidence:
        w = w * softmax(z, axis=-1).max(-1, keepdims=True)
    total = w.sum(0)
    w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    if how == "logits":
        out = (w * z).sum(0)
    else:
        mean = (w * softmax(z, axis=-1)).sum(0)
        with np.errstate(divide="ignore"):
            out = np.where(total > 0, np.log(np.maximum(mean, 1e-30)), 0.0)
    return out.astype(np.float32)


def unnamed_member(name: str, members) -> KdexamError:
    return KdexamError(f"Teacher output '{name}' of an ensemble must name the member it is read from "
                       f"('{name}@NAME', NAME one of: {', '.join(members)}).")


class EnsembleOutputs(TeacherOutputs):
    """The members' :class:`TeacherOutputs` on one list of examples, seen as one teacher's:
    ``logits`` is the ensemble target, ``NAME@MEMBER`` is that member's own output (its logits
    reordered to the ensemble's labels)."""

    def __init__(self, parts: dict[str, TeacherOutputs], orders: dict[str, np.ndarray | None],
                 combiner: Callable[[list[np.ndarray]], np.ndarray]):
        first = next(iter(parts.values()))
        super().__init__(first.stored, None, from_cache=all(p.from_cache for p in parts.values()),
                         online=tuple(sorted({f"{n}@{m}" for m, p in parts.items() for n in p.online})),
                         notes=[f"{m}: {note}" for m, p in parts.items() for note in p.notes])
        self.parts, self.orders, self.combiner = parts, orders, combiner
        self.member_paths = {m: (str(p.path) if p.path else None) for m, p in parts.items()}

    def __len__(self) -> int:
        return len(next(iter(self.parts.values())))

    def member_logits(self, member: str, rows: list[np.ndarray]) -> list[np.ndarray]:
        order = self.orders.get(member)
        return rows if order is None else [np.asarray(r)[..., order] for r in rows]

    def example(self, i: int, name: str = "logits") -> np.ndarray:
        return self.gather([i], [name])[name][0]

    def combine_rows(self, per_member: list[list[np.ndarray]]) -> list[np.ndarray]:
        """The ensemble target of each example from each member's rows, in one :func:`combine` call
        (every rule is row-wise: an example's ``[C]`` or its words' ``[words, C]`` rows are stacked)."""
        first = per_member[0]
        flat = [np.concatenate([np.asarray(r, dtype=np.float32).reshape(-1, r.shape[-1]) for r in rows]) for rows in per_member]
        combined = self.combiner(flat)
        ends = np.cumsum([int(np.prod(r.shape[:-1])) for r in first])
        return [part.reshape(r.shape) for part, r in zip(np.split(combined, ends[:-1]), first)]

    def gather(self, indices: list[int], names) -> dict[str, list[np.ndarray]]:
        out: dict[str, list[np.ndarray]] = {}
        wanted: dict[str, list[str]] = {}
        for name in names:
            base, member = split_member(name)
            if member is None and base != "logits":
                raise unnamed_member(name, self.parts)
            for m in ([member] if member else list(self.parts)):
                wanted.setdefault(m, []).append(base)
        got = {m: self.parts[m].gather(indices, sorted(set(bases))) for m, bases in wanted.items()}
        for m in got:
            if "logits" in got[m]:
                got[m]["logits"] = self.member_logits(m, got[m]["logits"])
        for name in names:
            base, member = split_member(name)
            if member is None:
                out[name] = self.combine_rows([got[m]["logits"] for m in self.parts])
            else:
                out[name] = got[member][base]
        return out


class Ensemble:
    """Teachers distilled together (``distill --teacher A --teacher B``). It answers what ``distill``
    asks of one :class:`Teacher` — ``task``, ``outputs``, ``params``, ``forward_calls``, ``examples_computed`` — with
    outputs combined as ``cfg`` says, and gives each member by name (``members``)."""

    def __init__(self, dirs: list[str], cfg: EnsembleConfig, max_length: int = 128, primary: str | None = None):
        names = member_names(dirs)
        self.members: dict[str, Teacher] = {n: Teacher(d, max_length=max_length) for n, d in zip(names, dirs)}
        self.dirs = dict(zip(names, dirs))
        self.cfg = cfg
        first = names[0]
        self.task = self.members[first].task
        self.orders = {n: label_order(self.task, t.task, self.dirs[first], self.dirs[n]) for n, t in self.members.items()}
        if cfg.weighting == "confidence" and self.task.kind == "regression":
            raise KdexamError("ensemble.weighting confidence weighs members by their largest probability, which a "
                              "regression teacher has not; use equal, fixed or validation.")
        if primary is not None and primary not in self.members:
            raise KdexamError(f"student.teacher '{primary}' is not a member of the ensemble; use one of: {', '.join(names)}.")
        self.primary = primary or first
        self.weights: dict[str, float] = self._static_weights()
        self.validation_scores: dict[str, float] = {}

    # ---- what distill asks of a teacher ---------------------------------------------------------

    @property
    def name(self) -> str:
        return "ensemble of " + " + ".join(self.members)

    @property
    def tokenizer(self):
        return self.members[self.primary].tokenizer

    @property
    def dir(self) -> Path:
        return self.members[self.primary].dir

    @property
    def params(self) -> int:
        return sum(t.params for t in self.members.values())

    def release(self) -> None:
        """Drop every member's loaded model (:meth:`Teacher.release`)."""
        for t in self.members.values():
            t.release()

    @property
    def forward_calls(self) -> int:
        return sum(t.forward_calls for t in self.members.values())

    @property
    def examples_computed(self) -> int:
        return sum(t.examples_computed for t in self.members.values())

    def outputs(self, examples: list[Example], names, cache: bool = True, budget_gb: float = 8.0) -> EnsembleOutputs:
        return self.outputs_of_segments([examples], names, cache, budget_gb)

    def outputs_of_segments(self, segments: list[list[Example]], names, cache: bool = True,
                            budget_gb: float = 8.0, precision: str = "fp32") -> EnsembleOutputs:
        """Each member's outputs on the segments (its own tokenization and cache; the disk budget
        shared equally), joined as :class:`EnsembleOutputs`."""
        per_member: dict[str, set[str]] = {m: set() for m in self.members}
        for name in names:
            base, member = split_member(name)
            if member is not None and member not in self.members:
                raise KdexamError(f"Teacher output '{name}' names no member of the ensemble; use one of: "
                                  f"{', '.join(self.members)}.")
            if member is None and base != "logits":
                raise unnamed_member(name, self.members)
            for m in ([member] if member else self.members):
                per_member[m].add(base)
        parts = {m: self.members[m].outputs_of_segments(segments, sorted(wanted or {"logits"}), cache,
                                                        budget_gb / len(self.members), precision)
                 for m, wanted in per_member.items()}
        return EnsembleOutputs(parts, self.orders, self.combiner())

    def combiner(self) -> Callable[[list[np.ndarray]], np.ndarray]:
        weights = [self.weights[m] for m in self.members]
        confidence = self.cfg.weighting == "confidence"
        return lambda logits: combine(logits, self.task.kind, self.cfg.combine, weights, confidence)

    # ---- weights ------------------------------------------------------------------------------

    def _static_weights(self) -> dict[str, float]:
        given = self.cfg.weights if self.cfg.weighting == "fixed" else [1.0] * len(self.members)
        total = float(sum(given))
        return {m: float(w) / total for m, w in zip(self.members, given)}

    def weigh_by_validation(self, validation: list[Example], cache: bool = True) -> dict[str, float]:
        """``weighting: validation``: each member's primary metric on ``validation`` (its own pass,
        cached) sets its weight; returns the scores."""
        from kdexam.evaluation.loyalty import teacher_predictions

        if not validation:
            raise KdexamError("ensemble.weighting validation needs a validation split; the data has none.")
        gold = [e.label for e in validation]
        out = self.outputs(validation, ["logits"], cache)
        for m, part in out.parts.items():  # (gather: cached rows, or computed now with --online-teacher)
            rows = out.member_logits(m, part.gather(list(range(len(validation))), ["logits"])["logits"])
            self.validation_scores[m] = float(self.task.metrics(gold, teacher_predictions(self.task, rows))[self.task.primary_metric])
        s = {m: (v if self.task.greater_is_better else 1.0 / max(v, 1e-12)) for m, v in self.validation_scores.items()}
        total = sum(max(v, 0.0) for v in s.values() if math.isfinite(v))
        if not total > 0:  # (a member below 0, a negative Pearson r, gets weight 0; one above 0 is enough)
            raise KdexamError(f"No member scores above 0 {self.task.primary_metric} on the validation split, so validation "
                              "weights are undefined; use ensemble.weighting equal.")
        self.weights = {m: max(v, 0.0) / total if math.isfinite(v) else 0.0 for m, v in s.items()}
        return self.validation_scores

    def describe(self) -> dict:
        """What ``metrics.json`` records of the ensemble's set-up."""
        d = {"combine": self.cfg.combine, "weighting": self.cfg.weighting,
             "members": [{"name": m, "dir": self.dirs[m]} for m in self.members]}
        if self.cfg.weighting != "confidence":
            for entry in d["members"]:
                entry["weight"] = round(self.weights[entry["name"]], 6)
        if self.validation_scores:
            for entry in d["members"]:
                entry["validation"] = self.validation_scores[entry["name"]]
        return d
