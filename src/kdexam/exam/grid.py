"""The cells of an exam: every run it makes, each with a stable id.

A cell's id is a readable slug plus a hash of everything that defines the run (its flags
and its teacher's), so rerunning an exam finds its finished cells, and changing the config
adds only the cells whose definition changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdexam.config.exam import ExamConfig
from kdexam.errors import KdexamError, UnknownArguments

DATA_KEYS = ("data", "task", "text_column", "text_pair_column", "label_column", "max_train", "max_eval", "max_length")
RECIPE_KEYS = ("objective", "match", "recipe")
RECIPE_SET_KEYS = ("objectives", "matches", "stages", "recipe")
"""Config keys a ``set`` may give that are a recipe too: a control cell (gold labels alone) drops them."""
CONTROL_RECIPE = "gold"


def merge(*entries: dict) -> dict:
    """Flags of several entries, later ones winning; their ``set`` settings (any config key, dotted,
    as ``--set`` takes them: a mapping, or a list of ``key=value`` strings) are merged key by key."""
    out: dict = {}
    for e in entries:
        for k, v in e.items():
            if k == "set" and isinstance(earlier := set_mapping(out.get(k, {})), dict) and isinstance(v := set_mapping(v), dict):
                v = {**earlier, **v}
            out[k] = v
    return out


def set_mapping(value: Any) -> Any:
    """A ``set`` entry as a mapping: ``["train.epochs=2"]`` is ``{"train.epochs": 2}`` (a list merged with
    a mapping was a TypeError, or lost the list's keys); anything else is left for the run to refuse."""
    from kdexam.config.flags import parse_set

    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
        return dict(parse_set(x) for x in value)
    return value


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _slug(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(p) for p in parts)).strip("_")


def dataset_slug(name: str) -> str:
    """A file name for a dataset: a built-in name as it is, a path by its last part."""
    return _slug(name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]) or "data"


def dataset_slugs(names) -> dict[str, str]:
    """A distinct file name for each dataset (plots, exported students): :func:`dataset_slug`, with a
    short hash of the whole name where two datasets would share one (``a/data`` and ``b/data``)."""
    names = list(dict.fromkeys(names))
    slugs = [dataset_slug(n) for n in names]
    return {n: s if slugs.count(s) == 1 else f"{s}-{_hash(n)[:6]}" for n, s in zip(names, slugs)}


@dataclass(frozen=True)
class TeacherCell:
    """A teacher for one dataset: fine-tuned with ``flags`` (``kdexam teacher`` keywords), or a given ``run``."""

    id: str
    dataset: str
    teacher: str
    flags: dict = field(default_factory=dict)
    run: str | None = None
    data: dict = field(default_factory=dict)
    """The exam dataset's data settings (``DataConfig`` fields): a given run is timed on its texts, as its students are."""


@dataclass(frozen=True)
class Cell:
    """One distillation run (``role`` ``student``) or its control (``control``: gold labels only)."""

    id: str
    role: str
    dataset: str
    teacher: str
    student: str
    kind: str
    recipe: str
    transfer: str
    seed: int
    teacher_id: str
    flags: dict = field(default_factory=dict)
    """``kdexam distill`` keywords, without ``teacher`` and ``out``."""

    @property
    def label(self) -> str:
        return f"{self.dataset} / {self.student} / {self.recipe} / {self.transfer} / seed {self.seed}"


def teacher_cells(cfg: ExamConfig) -> list[TeacherCell]:
    out = []
    for d in cfg.datasets:
        data = {"data": d.name, **{k: v for k, v in d.flags.items() if k in DATA_KEYS}}
        given = set_mapping(d.flags.get("set"))  # (a list of key=value strings, as everywhere a set is taken)
        data_set = {k: v for k, v in (given if isinstance(given, dict) else {}).items() if k.startswith("data.")}
        if data_set:  # (how the data is read and scored — primary_metric, columns — is the teacher's too)
            data["set"] = data_set
        for t in cfg.teachers:
            if t.run:
                identity = ["run", t.run, d.name, run_fingerprint(t.run)]
                timed_on = {("name" if k == "data" else k): v for k, v in data.items() if k != "set"}
                timed_on.update({k.removeprefix("data."): v for k, v in data_set.items()})
                out.append(TeacherCell(_slug("teacher", dataset_slug(d.name), t.name) + "-" + _hash(identity), d.name, t.name,
                                       run=t.run, data=timed_on))
                continue
            flags = merge(cfg.train, data, t.flags, d.teacher, {"model": t.model, "seed": cfg.teacher_seed})
            out.append(TeacherCell(_slug("teacher", dataset_slug(d.name), t.name) + "-" + _hash(flags), d.name, t.name, flags))
    return out


def run_fingerprint(run: str) -> str | None:
    """A given teacher run's weights, configuration and tokenizer (the teacher cache's identity,
    :func:`kdexam.teachers.cache.model_fingerprint`): a teacher re-trained in the same folder gets
    new cell ids, so its students are distilled again instead of reported from the old teacher.
    None for a folder that does not exist (the teacher's cell then fails with a sentence)."""
    from kdexam.teachers.cache import model_fingerprint

    d = Path(run)
    return model_fingerprint(d) if d.is_dir() else None


def cells(cfg: ExamConfig, teachers: list[TeacherCell]) -> list[Cell]:
    """Every student cell and control cell, datasets outermost, then teachers, students, recipes,
    transfer settings and seeds; a control cell follows its student's first cell."""
    out: list[Cell] = []
    by_key = {(t.dataset, t.teacher): t for t in teachers}
    for d in cfg.datasets:
        for t in cfg.teachers:
            tc = by_key[(d.name, t.name)]
            for s in cfg.students:
                base = merge(cfg.train, {"data": d.name}, d.flags, {"student": s.kind}, s.flags)
                for seed in cfg.seeds:
                    for r in cfg.recipes:
                        if r.students is not None and s.name not in r.students and s.kind not in r.students:
                            continue
                        for x in cfg.transfer:
                            if x.datasets is not None and d.name not in x.datasets:
                                continue
                            if x.students is not None and s.name not in x.students and s.kind not in x.students:
                                continue
                            flags = merge(base, r.flags, x.flags, {"seed": seed})
                            out.append(_cell("student", d.name, t.name, s, r.name, x.name, seed, tc, flags))
                    if cfg.control:
                        flags = {k: v for k, v in base.items() if k not in RECIPE_KEYS}
                        if isinstance(sets := set_mapping(flags.get("set")), dict):  # (a student's objectives by --set too)
                            flags["set"] = {k: v for k, v in sets.items() if k.split(".")[0] not in RECIPE_SET_KEYS}
                        flags.update(objective=[CONTROL_RECIPE], seed=seed)
                        out.append(_cell("control", d.name, t.name, s, CONTROL_RECIPE, "none", seed, tc, flags))
    return out


def _cell(role, dataset, teacher, s, recipe, transfer, seed, tc: TeacherCell, flags: dict) -> Cell:
    cid = _slug(dataset_slug(dataset), s.name, recipe if role == "student" else "control", transfer, f"s{seed}") + "-" + _hash([tc.id, flags])
    return Cell(cid, role, dataset, teacher, s.name, s.kind, recipe, transfer, seed, tc.id, flags)


def check_cells(teachers: list[TeacherCell], grid: list[Cell]) -> None:
    """Build and check every run's config before anything runs (student kinds and settings,
    objectives, matches, augmenters too): a typo in any cell is found at once."""
    from kdexam import api
    from kdexam.data.splits import check_dataset_name
    from kdexam.data.transfer import check_unlabelled_name
    from kdexam.training.run_checks import check_run_config

    for flags in [t.flags for t in teachers] + [c.flags for c in grid]:  # a missing or misspelled source, before any run
        if flags.get("data"):
            _build(lambda: check_dataset_name(str(flags["data"])), "datasets")
        sources = flags.get("unlabelled") or []
        for name in [sources] if isinstance(sources, str) else sources:
            _build(lambda: check_unlabelled_name(str(name)), "transfer settings")
    for t in teachers:
        if t.run is None:
            _build(lambda: api.teacher_config(out="TEACHER", **t.flags), f"teacher '{t.teacher}' for '{t.dataset}'", "teacher")
    for dataset in dict.fromkeys(t.dataset for t in teachers):  # (recipes' and transfer settings' filters can leave none)
        if not any(c.role == "student" and c.dataset == dataset for c in grid):
            raise KdexamError(f"The exam has no student cell for dataset '{dataset}': the recipes' and transfer settings' "
                              "'students'/'datasets' lists leave none; widen them or remove the dataset.")
    seen = set()
    for c in grid:
        if c.id in seen:
            raise KdexamError(f"Two exam cells are the same run ({c.label}); give the entries different settings or names.")
        seen.add(c.id)
        _build(lambda: check_run_config(api.distill_config(teacher="TEACHER", out="OUT", **c.flags)), f"cell {c.label}")


def _build(make, where: str, command: str = "distill") -> None:
    """Run ``make`` (a config build or check); its errors become one sentence naming ``where``.
    ``command``: the run it builds (``distill`` or ``teacher``), whose flags a hint may name."""
    try:
        make()
    except UnknownArguments as e:  # an unknown keyword: name it, with the closest flag
        import difflib

        from kdexam.config.flags import DISTILL_FLAGS, TEACHER_FLAGS, keywords_of_options

        bad = e.names[0]
        own, other, other_name = ((TEACHER_FLAGS, DISTILL_FLAGS, "distill") if command == "teacher"
                                  else (DISTILL_FLAGS, TEACHER_FLAGS, "teacher"))
        spelled = keywords_of_options([bad], own)  # an option's spelling (lr): its key (learning_rate)
        if spelled:
            hint = f"{spelled.strip(' ()')} here (keys are the flags' names with underscores)."
        elif bad in other:
            hint = (f"it is a 'kdexam {other_name}' flag, which 'kdexam {command}' does not take"
                    + ("; the exam's train flags reach every run, teachers included: put it in the students' entries"
                       if command == "teacher" else "; put it in the teacher's entry or the dataset's 'teacher' flags") + ".")
        else:
            close = difflib.get_close_matches(bad, list(own), n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"use the flag names of 'kdexam {command} --help' with underscores."
        raise KdexamError(f"The exam's {where} has an unknown key '{bad}'; {hint}") from None
    except KdexamError as e:
        raise KdexamError(f"The exam's {where}: {e}") from None
