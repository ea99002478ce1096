"""The typed result of a run: what ``metrics.json`` holds, and what ``report`` and the exam read.

A distillation run returns a :class:`RunResult`; ``result.write(run_dir)`` writes
``metrics.json`` (atomically) and :func:`read_result` reads any run directory's
``metrics.json`` (teacher, student or general-distillation run) back into one.

``metrics.json`` of a distillation run (the contract in DESIGN.md)::

    {"task": "classification", "dataset": "movie-sentiment", "split": "test", "primary_metric": "accuracy",
     "teacher": {"name": "...", "params": 22713986, "metrics": {...}},
     "student": {"name": "bilstm", "params": 3186458, "metrics": {...}, "loyalty": {"label": 0.93, "probability": 0.90}},
     "retention": 0.965, ...}

``retention`` = student primary metric / teacher primary metric on the same split
(the inverse for metrics where lower is better; absent, with a note, where the ratio is
undefined, e.g. a teacher whose Pearson r is 0). A general (task-agnostic) run has
``"general": true``, no task metrics, and the encoder's validation objective.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdexam.errors import KdexamError
from kdexam.paths import atomic_write_json


def _number(v: Any) -> bool:
    """A figure of ``metrics.json``: a number, or null (NaN is written as null)."""
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


@dataclass
class ModelResult:
    """One side of a run: a teacher or a student."""

    name: str
    params: int
    metrics: dict[str, float] = field(default_factory=dict)
    params_without_embeddings: int | None = None
    per_class: dict | None = None
    loyalty: dict[str, float] | None = None
    efficiency: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelResult":
        known = {k: d[k] for k in ("name", "params", "metrics", "params_without_embeddings", "per_class", "loyalty",
                                   "efficiency") if k in d}
        if not isinstance(known.get("params"), int) or isinstance(known["params"], bool):
            raise TypeError("params")
        for name in ("metrics", "loyalty"):  # what report and the exam compute with
            values = known.get(name) or {}
            if not isinstance(values, dict) or not all(_number(v) for v in values.values()):
                raise TypeError(name)
        return cls(**known, extra={k: v for k, v in d.items() if k not in known})


@dataclass
class RunResult:
    """A run's outcome. For a teacher run ``student`` is ``None``; for a general run ``general`` is True."""

    teacher: ModelResult
    student: ModelResult | None = None
    task: str | None = None
    dataset: str | None = None
    split: str | None = None
    primary_metric: str | None = None
    retention: float | None = None
    compression: float | None = None
    general: bool = False
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Everything else ``metrics.json`` holds (teacher_cache, stages, objectives, citations, notes, …)."""

    @property
    def score(self) -> float | None:
        """The primary metric of the student (of the teacher for a teacher run)."""
        side = self.student or self.teacher
        return side.metrics.get(self.primary_metric) if self.primary_metric else None

    def to_dict(self) -> dict:
        d: dict[str, Any] = {}
        if self.general:
            d["general"] = True
        for k in ("task", "dataset", "split", "primary_metric"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        d["teacher"] = self.teacher.to_dict()
        if self.student is not None:
            d["student"] = self.student.to_dict()
        for k in ("retention", "compression"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        d.update(self.extra)
        if self.seconds is not None:
            d["seconds"] = self.seconds
        return d

    def write(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / "metrics.json"
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        if not all(_number(d.get(k)) for k in ("retention", "compression", "seconds")):
            raise TypeError("retention, compression or seconds")
        top = ("general", "task", "dataset", "split", "primary_metric", "teacher", "student", "retention", "compression", "seconds")
        return cls(teacher=ModelResult.from_dict(d["teacher"]),
                   student=ModelResult.from_dict(d["student"]) if d.get("student") else None,
                   task=d.get("task"), dataset=d.get("dataset"), split=d.get("split"), primary_metric=d.get("primary_metric"),
                   retention=d.get("retention"), compression=d.get("compression"), general=bool(d.get("general")),
                   seconds=d.get("seconds"), extra={k: v for k, v in d.items() if k not in top})


def read_result(run_dir: str | Path) -> RunResult:
    """The :class:`RunResult` of a run directory, from its ``metrics.json``."""
    f = Path(run_dir) / "metrics.json"
    if not f.is_file():
        what = "has no metrics.json" if Path(run_dir).is_dir() else "does not exist" if not Path(run_dir).exists() else "is a file"
        raise KdexamError(f"'{run_dir}' {what}; pass run directories written by 'kdexam teacher' or 'kdexam distill'.")
    try:
        return RunResult.from_dict(json.loads(f.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # (JSONDecodeError, UnicodeDecodeError are ValueErrors)
        raise KdexamError(f"'{f}' is not a valid kdexam metrics file ({type(e).__name__}); rerun the command that wrote it.") from None


def retention(student: float, teacher: float, greater_is_better: bool = True) -> float | None:
    """Student / teacher primary metric (teacher / student when lower is better); ``None`` where
    the ratio means nothing: a denominator that is not positive (a constant predictor's Pearson r
    is 0, a perfect student's MSE is 0) or a score that is not finite."""
    numerator, denominator = (student, teacher) if greater_is_better else (teacher, student)
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0:
        return None
    return numerator / denominator


def retention_note(result: "RunResult") -> list[str]:
    """A note for ``metrics.json`` when both models were scored but the retention is undefined."""
    pm = result.primary_metric
    t, s = result.teacher.metrics.get(pm), result.student.metrics.get(pm) if result.student else None
    if result.retention is not None or t is None or s is None:
        return []
    return [f"no retention: the ratio of the student's {pm} ({s:.4g}) to the teacher's ({t:.4g}) is undefined"]
