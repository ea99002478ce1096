"""``kdexam exam``: the grid of an exam, declared in a short YAML file (no torch import).

An exam runs every cell of datasets × teachers × students × recipes × transfer settings × seeds,
plus one *control* cell per (dataset, teacher, student, seed): the same student trained on gold
labels alone, so the leaderboard can say whether distillation helped. Example::

    datasets:
      - {name: movie-sentiment, max_train: 2000, max_eval: 500}
      - trec6
    teachers:
      - {model: minilm-l6, epochs: 2}        # fine-tuned once per dataset; or {run: DIR} to use a teacher as it is
    students:
      - bilstm
      - {kind: "teacher-layers:2", name: tl2, layers: lower, epochs: 4}
    recipes:
      - {name: kd}                           # the default objectives (KL at T=2 + gold)
      - {name: hidden, students: [tl2], objective: ["kl:temperature=2,weight=0.5", "gold:weight=0.5",
                                                      "hidden_mse:layers=uniform,embeddings=true"]}
    transfer:
      - {name: none}
      - {name: dialog, datasets: [movie-sentiment], unlabelled: movie-dialog, max_unlabelled: 5000}
    seeds: [42]

The entries' other keys are the flags of ``kdexam teacher`` / ``kdexam distill`` with
underscores (``max_train``, ``embedding_dim``, ``epochs``, ``learning_rate``, ``objective``,
``unlabelled``, …): a cell's distillation flags are the exam's ``train``, then its dataset's,
its student's, its recipe's and its transfer setting's (later ones win).
"""

from __future__ import annotations

import difflib

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kdexam.config.runs import MAX_SEED, MAX_THREADS
from kdexam.config.students import NumbersNotBooleans


RESERVED_KEYS = {"teacher": "the exam gives each cell its teacher", "teachers": "the exam gives each cell its teacher",
                 "out": "the exam names each run's folder", "resume": "the exam resumes its runs itself",
                 "overwrite": "the exam never replaces a run",
                 "student": "the exam gives each cell its student (a 'students' entry's kind)",
                 "seed": "the exam gives each cell its seed ('seeds', and 'teacher_seed' for the teachers)",
                 "model": "the exam gives each teacher its model (a 'teachers' entry's model)",
                 "data": "the exam gives each cell its dataset (a 'datasets' entry's name, or its data)"}
"""Run keywords an entry may not set, and why (they named an empty key, or suggested another flag; the
exam's own keys were silently replaced, or replaced what a cell is: a 'student: cnn' in a bilstm entry
trained a CNN the leaderboard called bilstm). A ``datasets`` entry may give ``data`` (the path its name stands for)."""


class _Entry(BaseModel):
    """A grid entry: a ``name`` and flags (``kdexam teacher``/``distill`` keywords)."""

    model_config = ConfigDict(extra="allow")

    name: str

    @property
    def flags(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


class DatasetEntry(_Entry):
    """A dataset: built-in name, file or directory, with data flags (``max_train``, ``text_column``, …),
    and ``teacher``: teacher flags for this dataset only (``{epochs: 3, learning_rate: 1e-4}``), over each teacher's own."""

    teacher: dict[str, Any] = {}


class TeacherEntry(_Entry):
    """A teacher: ``model`` (built-in name, directory or hub id) fine-tuned once per dataset with
    teacher flags (``epochs``, ``learning_rate``, …), or ``run``: a teacher run directory used as it is."""

    name: str = ""
    model: str | None = None
    run: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"model": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _one_source(self):
        if (self.model is None) == (self.run is None):
            raise ValueError("each teacher needs exactly one of 'model' (to fine-tune) and 'run' (a teacher run directory)")
        if not self.name:
            from pathlib import Path

            self.name = self.model or Path(self.run).name
        if self.run is not None and self.flags:  # they were dropped without a word
            raise ValueError(f"teacher '{self.name}' is a given run (run: {self.run}), used as it is: its keys "
                             f"{', '.join(sorted(self.flags))} would have no effect; remove them, or fine-tune one with 'model'")
        return self


class StudentEntry(_Entry):
    """A student: ``kind`` (``bilstm``, ``cnn``, ``static``, ``bert-mini``, ``teacher-layers:K``, …),
    a display ``name`` (default: the kind) and distillation flags (``embedding_dim``, ``epochs``, …)."""

    name: str = ""
    kind: str

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _default_name(self):
        self.name = self.name or self.kind
        return self


class RecipeEntry(_Entry):
    """Objectives and stages (``objective``, ``match``, ``recipe``), for the ``students`` named
    (names or kinds; default: every student)."""

    students: list[str] | None = None


class TransferEntry(_Entry):
    """A transfer setting (``unlabelled``, ``max_unlabelled``, ``augment``, ``min_confidence``, …)
    for the ``datasets`` and ``students`` (names or kinds) named (default: every one)."""

    datasets: list[str] | None = None
    students: list[str] | None = None


class ExamBudget(NumbersNotBooleans):
    """What the recommendation may spend (``None``: no limit)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_latency_ms: float | None = Field(default=None, gt=0)
    """Largest end-to-end CPU latency per text at batch 1 (p50, ms)."""
    max_size_mb: float | None = Field(default=None, gt=0)
    """Largest model file (MB) of the backend that gives the latency."""
    min_retention: float | None = Field(default=None, gt=0)
    """Smallest student / teacher score."""


class ExamBench(NumbersNotBooleans):
    """How each student's cost is measured (``kdexam bench`` settings; see
    :mod:`kdexam.evaluation.efficiency`). The teacher is measured once per dataset, in PyTorch."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = True
    threads: int = Field(default=1, ge=1, le=MAX_THREADS)
    batch_sizes: list[int] = [1, 32]
    """Must hold 1: the leaderboard's latency and the budget are per text at batch 1."""
    n_texts: int = Field(default=100, ge=1)
    repeats: int | None = Field(default=None, ge=1)
    warmup: int = Field(default=3, ge=0)
    onnx: bool = True
    """Also export each student to ONNX (fp32 and int8) and time the torch-free serving path."""
    rss: bool = True
    """Peak memory of a fresh serving process per backend."""

    @field_validator("batch_sizes")
    @classmethod
    def _holds_batch_1(cls, v: list[int]) -> list[int]:
        if 1 not in v or any(b < 1 for b in v):
            raise ValueError("bench.batch_sizes must be positive and include 1 (the leaderboard's latency is at batch 1), "
                             f"e.g. [1, 32]; got {v}")
        return sorted(set(v))  # (as kdexam bench reads them: [32, 1] is [1, 32], and measures nothing again)


class ExamConfig(NumbersNotBooleans):
    """An exam: the grid, the control cells, the training and bench settings, the budget."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = "exam"
    datasets: list[DatasetEntry]
    teachers: list[TeacherEntry] = [TeacherEntry(model="minilm-l6")]
    students: list[StudentEntry]
    recipes: list[RecipeEntry] = [RecipeEntry(name="kd")]
    transfer: list[TransferEntry] = [TransferEntry(name="none")]
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = [42]
    control: bool = True
    """Add a control cell per (dataset, teacher, student, seed): the student trained on gold labels alone."""
    teacher_seed: int = Field(default=42, ge=0, le=MAX_SEED)
    train: dict[str, Any] = {}
    """Flags for every run, teachers and students (``num_threads``, ``batch_size``, …)."""
    bench: ExamBench = ExamBench()
    budget: ExamBudget = ExamBudget()
    trust_remote_code: bool = False
    """Let models that bring their own Python code (``auto_map`` in config.json) run it: every
    teacher, cell and measurement of the exam (``kdexam exam --trust-remote-code``). Off by default."""

    @field_validator("datasets", "teachers", "students", "recipes", "transfer", "seeds")
    @classmethod
    def _not_empty(cls, v: list) -> list:
        if not v:  # (an empty list ran no student and reported success)
            raise ValueError("must name at least one entry (leave the key out for its default)")
        return v

    @model_validator(mode="after")
    def _no_reserved_keys(self):
        entries = [("train", "train", self.train)]
        for what in ("datasets", "teachers", "students", "recipes", "transfer"):
            entries += [(what, e.name, e.flags) for e in getattr(self, what)]
        entries += [("datasets", f"{d.name}'s teacher", d.teacher) for d in self.datasets]
        own_data = {("datasets", d.name) for d in self.datasets}
        for what, name, flags in entries:
            for key in sorted(set(flags) & set(RESERVED_KEYS) - ({"data"} if (what, name) in own_data else set())):
                where = "train" if what == "train" else f"{what} entry '{name}'"
                raise ValueError(f"{where} sets '{key}', which {RESERVED_KEYS[key]}; remove it")
        if all(t.run for t in self.teachers):
            for d in self.datasets:
                if d.teacher:
                    raise ValueError(f"datasets entry '{d.name}' has teacher flags ({', '.join(sorted(d.teacher))}), but every "
                                     "teacher is a given run, used as it is; remove them")
        return self

    @model_validator(mode="after")
    def _unique_names(self):
        for what in ("datasets", "teachers", "students", "recipes", "transfer"):
            names = [e.name for e in getattr(self, what)]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{what} names '{twice[0]}' twice; give each entry its own 'name'")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds lists a seed twice")
        students = [n for s in self.students for n in (s.name, s.kind)]
        datasets = [d.name for d in self.datasets]
        for what, entries in (("recipes", self.recipes), ("transfer", self.transfer)):
            for e in entries:
                for key, known in (("students", students), ("datasets", datasets)):
                    for name in getattr(e, key, None) or []:
                        if name not in known:  # a typo would drop the entry's cells without a word
                            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
                            hint = f"did you mean '{close[0]}'?" if close else f"the exam's {key}: {', '.join(dict.fromkeys(known))}"
                            raise ValueError(f"{what} entry '{e.name}' lists {key[:-1]} '{name}', which the exam does not "
                                             f"have; {hint}")
        return self
