"""Student models (BiLSTM, CNN, compact BERTs, teacher layers): build, save, load.

See :mod:`kdexam.students.registry` for the public API.
"""

from kdexam.students.registry import (
    KIND_HELP,
    KINDS,
    StudentSpec,
    build_student,
    check_spec,
    count_parameters,
    load_student,
    save_student,
)

__all__ = ["KINDS", "KIND_HELP", "StudentSpec", "build_student", "check_spec", "count_parameters", "load_student",
           "save_student"]
