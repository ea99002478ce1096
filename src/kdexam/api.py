"""The Python API. Every CLI command is a thin wrapper over one of these functions.

>>> from kdexam import api
>>> metrics = api.finetune_teacher(data="movie-sentiment", model="minilm-l6", out="runs/teacher-ms", epochs=2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdexam.config import TeacherRunConfig, load_config

TEACHER_FLAGS = {
    "data": "data.name", "task": "data.task", "text_column": "data.text_column",
    "text_pair_column": "data.text_pair_column", "label_column": "data.label_column",
    "max_train": "data.max_train", "max_eval": "data.max_eval", "max_length": "data.max_length",
    "model": "model", "out": "out", "seed": "seed", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "learning_rate": "train.learning_rate", "patience": "train.patience",
    "evals_per_epoch": "train.evals_per_epoch", "num_threads": "train.num_threads",
    "mixed_precision": "train.mixed_precision",
}


def teacher_config(config: str | Path | None = None, **flags: Any) -> TeacherRunConfig:
    """Resolve a teacher config from a YAML file and keyword overrides (the CLI flag names)."""
    unknown = set(flags) - set(TEACHER_FLAGS)
    if unknown:
        raise TypeError(f"unknown argument(s): {', '.join(sorted(unknown))}")
    overrides = {TEACHER_FLAGS[k]: (str(v) if isinstance(v, Path) else v) for k, v in flags.items()}
    return load_config(TeacherRunConfig, config, overrides)


def finetune_teacher(config: str | Path | TeacherRunConfig | None = None, **flags: Any) -> dict:
    """Fine-tune a teacher; returns the content of its ``metrics.json``."""
    from kdexam.teachers.finetune import finetune_teacher as _finetune

    cfg = config if isinstance(config, TeacherRunConfig) else teacher_config(config, **flags)
    return _finetune(cfg)


def prepare_data(name: str, force: bool = False) -> Path:
    """Prepare a built-in dataset under the kdexam home; returns its directory."""
    from kdexam.data.builtin import prepare_dataset

    return prepare_dataset(name, force=force)


def prepare_model(name: str, force: bool = False) -> Path:
    """Prepare a built-in model under the kdexam home; returns its directory."""
    from kdexam.teachers.builtin_models import prepare_model as _prepare

    return _prepare(name, force=force)
