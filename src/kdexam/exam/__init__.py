"""The exam: which student is best, for this task on this machine.

- :mod:`kdexam.exam.grid`: the cells of an exam config (:class:`kdexam.config.exam.ExamConfig`);
- :mod:`kdexam.exam.store`: ``results.sqlite``, one row per cell as it finishes;
- :mod:`kdexam.exam.runner`: teachers once per dataset, then every cell, measured;
- :mod:`kdexam.exam.leaderboard`, :mod:`kdexam.exam.plots`, :mod:`kdexam.exam.recommend`,
  :mod:`kdexam.exam.report`: what the exam directory shows.

Built-in exams (``configs/``): ``default`` (``make demo``), ``quick`` and ``full`` (a GPU machine).
"""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).parent / "configs"
BUILTIN_EXAMS = tuple(sorted(p.stem for p in CONFIGS.glob("*.yaml")))


def load_exam_config(config: str | Path | None = None, overrides: dict | None = None):
    """An :class:`~kdexam.config.exam.ExamConfig` from a YAML file or a built-in exam name
    (default: ``default``), with ``overrides`` (dotted keys) applied."""
    from kdexam.config import load_config
    from kdexam.config.exam import ExamConfig
    from kdexam.errors import KdexamError

    name = "default" if config is None else str(config)
    path = CONFIGS / f"{name}.yaml" if name in BUILTIN_EXAMS else Path(name)
    if not path.is_file():
        raise KdexamError(f"Exam config '{config}' is neither a YAML file nor a built-in exam ({', '.join(BUILTIN_EXAMS)}), "
                          "nor an exam directory (one 'kdexam exam' wrote: it holds results.sqlite); check the path.")
    return load_config(ExamConfig, path, overrides, set_nulls=True)  # (every override is a --set: null means null)
