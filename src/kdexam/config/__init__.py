"""Run configuration: pydantic schemas loaded from YAML (safe loading only: :func:`kdexam.paths.load_yaml`); no torch import.

- :mod:`kdexam.config.runs`: data, training, teacher and distillation runs, stages;
- :mod:`kdexam.config.loading`: loading, overrides, validation with the closest-key error, and saving;
- :mod:`kdexam.config.students`: the student spec;
- :mod:`kdexam.config.objectives`: objective entries and declarative layer matches.
"""

from kdexam.config.objectives import MatchSpec, ObjectiveSpec
from kdexam.config.runs import (
    STUDENT_LEARNING_RATES,
    DataConfig,
    DistillRunConfig,
    EnsembleConfig,
    StageConfig,
    StudentTrainConfig,
    TaskKind,
    TeacherRunConfig,
    TeacherTrainConfig,
    TrainConfig,
    TransferConfig,
)
from kdexam.config.loading import build_config, check_keys, load_config, save_config, set_dotted
from kdexam.config.students import StudentSpec

__all__ = [
    "STUDENT_LEARNING_RATES", "DataConfig", "DistillRunConfig", "EnsembleConfig", "MatchSpec", "ObjectiveSpec", "StageConfig",
    "StudentSpec", "StudentTrainConfig", "TaskKind", "TeacherRunConfig", "TeacherTrainConfig", "TrainConfig", "TransferConfig",
    "build_config", "check_keys", "load_config", "save_config", "set_dotted",
]
