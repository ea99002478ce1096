"""Score a teacher or student run on any dataset or split (``kdexam evaluate``), and the
scoring that ``distill`` uses for its own test split.

:func:`score` turns a model's per-example logits into task metrics and, when the
teacher's logits on the same examples are given, the student's loyalty to its teacher
(:func:`kdexam.evaluation.loyalty.compare`). ``distill`` scores every run (and so every
exam cell) through it; :func:`evaluate_run_dir` scores a saved run the same way on
another dataset, another split, or a user's held-out file:

- ``data``: a built-in name, a directory of split files or a hub id (its ``split`` is
  scored), or one file (scored whole: a held-out set needs no carving). Without it, the
  data the run was trained on. Columns and ``max_length`` come from the run's
  ``config.yaml`` unless given.
- A student's teacher (its ``config.yaml`` ``teacher``, or ``teacher=``) is run on the
  same examples when it is at hand: then the result carries the teacher's metrics, the
  student's loyalty (label agreement, probability overlap) and its retention.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdexam.config import DataConfig
from kdexam.data.readers import Example, read_file
from kdexam.data.splits import METRICS_BY_TASK, infer_task, load_data, type_labels
from kdexam.errors import KdexamError
from kdexam.evaluation.loyalty import compare
from kdexam.evaluation.predict import decode
from kdexam.evaluation.results import ModelResult, RunResult, read_result, retention, retention_note
from kdexam.rundir import is_teacher_run, not_a_teacher_run
from kdexam.tasks import Task

SPLITS = ("train", "validation", "test")


@dataclass
class Scores:
    """A model's metrics on one split (``per_class`` included), and with a teacher its metrics and the loyalty."""

    metrics: dict
    teacher_metrics: dict | None = None
    loyalty: dict | None = None


def score(task: Task, gold: list, logits: list[np.ndarray], features, crf: dict | None = None,
          teacher_logits: list[np.ndarray] | None = None) -> Scores:
    """Metrics of the predictions decoded from ``logits`` (Viterbi with ``crf``) against ``gold``;
    with ``teacher_logits`` also the teacher's metrics and the loyalty of ``logits`` to them."""
    preds = decode(task, logits, features, crf)
    if teacher_logits is None:
        return Scores(task.metrics(gold, preds))
    t_metrics, s_metrics, loyal = compare(task, gold, teacher_logits, logits, preds, features, viterbi=crf is not None)
    return Scores(s_metrics, t_metrics, loyal)


def without_per_class(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "per_class"}


def evaluate_run_dir(run: str | Path, data: str | None = None, split: str = "test", max_eval: int | None = None,
                     teacher: str | Path | None = None, batch_size: int = 64, data_options: dict | None = None,
                     out: str | Path | None = None) -> RunResult:
    """Score the model of run directory ``run`` on ``data``'s ``split`` (see the module doc);
    write the result as JSON to ``out`` when given (never over the run's own ``metrics.json``)."""
    from kdexam.data.encode import encode
    from kdexam.inference.predictor import TorchRunner, batched_logits, load_torch_model
    from kdexam.paths import atomic_write_json, read_run_config
    from kdexam.rundir import check_output_file
    from kdexam.teachers.ensemble import Ensemble
    from kdexam.teachers.teacher import Teacher

    run = Path(run)
    if split not in SPLITS:
        raise KdexamError(f"Split '{split}' does not exist; choose one of: {', '.join(SPLITS)}.")
    if batch_size < 1:
        raise KdexamError(f"Batch size must be at least 1, not {batch_size}.")
    check_output_file(out, [run, data], "--out")
    model = load_torch_model(run)
    recorded = read_run_config(run)
    data_cfg = data_config(recorded.get("data") or {}, data, max_eval, data_options or {}, run)
    examples, name, split_name, task = examples_to_score(data_cfg, split, int(recorded.get("seed") or 42), model.task, run)

    features = encode(examples, model.tokenizer, task, data_cfg.max_length)
    logits = batched_logits(TorchRunner(model.module), features, model.tokenizer, task, batch_size)
    gold = [e.label for e in examples]
    notes: list[str] = []
    if task.kind == "regression" and len(set(gold)) < 2:
        notes.append(f"the {len(gold)} evaluated example(s) have one target value: Pearson's and Spearman's r are "
                     "undefined (NaN) on them")
    stored = _stored_result(run)
    teacher_dir, teacher_model = None, None
    if model.role != "teacher" and teacher is None and recorded.get("teachers"):
        teacher_model = recorded_ensemble(recorded, stored, data_cfg.max_length, notes)
    elif model.role != "teacher":
        teacher_dir = teacher_at_hand(run, teacher, recorded, notes)
        teacher_model = Teacher(teacher_dir, max_length=data_cfg.max_length) if teacher_dir else None
    teacher_logits = None
    if teacher_model is not None:
        order = teacher_columns(getattr(teacher_model, "task", None), model.task, teacher_model.name)
        out_t = teacher_model.outputs(examples, ["logits"])
        teacher_logits = [out_t.example(i) if order is None else np.asarray(out_t.example(i))[..., order] for i in range(len(out_t))]
    scores = score(task, gold, logits, features, model.crf, teacher_logits)

    params = _params(stored, model)
    pm = task.primary_metric
    if model.role == "teacher":
        result = RunResult(task=task.kind, dataset=name, split=split_name, primary_metric=pm,
                           teacher=ModelResult(model.name.removeprefix("teacher "), params, without_per_class(scores.metrics),
                                               per_class=scores.metrics.get("per_class")))
    else:
        t_side = stored.teacher if stored else None
        teacher_name = teacher_model.name if teacher_model is not None else (t_side.name if t_side else "not at hand")
        teacher_result = ModelResult(str(teacher_dir or teacher_name),
                                     teacher_model.params if teacher_model else (t_side.params if t_side else 0),
                                     without_per_class(scores.teacher_metrics or {}))
        if isinstance(teacher_model, Ensemble):
            teacher_result.extra["ensemble"] = ensemble_scores(task, gold, logits, features, model.crf, teacher_model, out_t)
        result = RunResult(task=task.kind, dataset=name, split=split_name, primary_metric=pm, teacher=teacher_result,
                           student=ModelResult(model.name, params, without_per_class(scores.metrics),
                                               per_class=scores.metrics.get("per_class"), loyalty=scores.loyalty))
        if scores.teacher_metrics is not None:
            result.retention = retention(scores.metrics[pm], scores.teacher_metrics[pm], task.greater_is_better)
            result.compression = teacher_result.params / max(1, params)
    result.extra = {"evaluated": {"run": str(run), "role": model.role, "data": data_cfg.name, "split": split_name,
                                  "examples": len(examples), "max_length": data_cfg.max_length},
                    "notes": notes + retention_note(result)}
    if out is not None:
        atomic_write_json(out, result.to_dict())  # (creates the parent folder)
    return result


def data_config(recorded: dict, data: str | None, max_eval: int | None, options: dict, run: Path) -> DataConfig:
    """The run's recorded data settings (columns, max_length, task), with ``data`` and ``options`` on top."""
    fields = {k: v for k, v in recorded.items() if k in DataConfig.model_fields and k not in ("max_train", "max_eval")}
    if data is not None:
        if data != fields.get("name"):
            fields = {k: v for k, v in fields.items() if k not in ("name", "primary_metric")}
        fields["name"] = data
    fields.update({k: v for k, v in options.items() if v is not None})
    fields["max_eval"] = max_eval
    if not fields.get("name"):
        raise KdexamError(f"'{run}' records no data in its config.yaml; pass --data NAME_OR_PATH.")
    if max_eval is not None and max_eval < 1:
        raise KdexamError(f"--max-eval must be at least 1, not {max_eval}.")
    try:
        return DataConfig.model_validate(fields)
    except ValueError as e:
        raise KdexamError(f"The data settings are not valid: {str(e).splitlines()[-1].strip()}.") from None


def examples_to_score(cfg: DataConfig, split: str, seed: int, model_task: Task, run: Path) -> tuple[list[Example], str, str, Task]:
    """The labelled examples to score, the dataset's name, the split's name, and the model's task
    with this data's primary metric; a sentence when the data does not fit the model's head."""
    from kdexam.training.run_checks import check_data_fits_head

    path = Path(str(cfg.name)).expanduser()
    if path.is_file():
        examples = read_file(path, cfg)
        if not examples or examples[0].label is None:
            raise KdexamError(f"'{cfg.name}' has no labels (no column '{cfg.label_column}'); evaluate needs gold labels — "
                              "pass --label-column NAME, or use 'kdexam predict' for unlabelled text.")
        kind = model_task.kind if isinstance(examples[0].text, list) == (model_task.kind == "token-classification") \
            else infer_task(examples)
        type_labels({path.name: examples}, kind, cfg.name)
        examples = examples[: cfg.max_eval] if cfg.max_eval else examples
        # a file of the run's task is scored by the run's metric unless one is given (a file has no manifest)
        metric = cfg.primary_metric or (model_task.primary_metric if kind == model_task.kind else "")
        if metric and metric not in METRICS_BY_TASK[kind]:
            raise KdexamError(f"Primary metric '{metric}' does not exist for {kind}; choose one of: "
                              f"{', '.join(METRICS_BY_TASK[kind])}.")
        name, split_name = path.stem, path.name
    else:
        loaded = load_data(cfg, seed)
        examples = loaded.split(split) or []
        if not examples:
            raise KdexamError(f"Dataset '{cfg.name}' has no {split} split; pass --split validation (or train).")
        if split == "train" and cfg.max_eval:
            examples = examples[: cfg.max_eval]
        name, split_name, kind, metric = loaded.name, split, loaded.task.kind, loaded.task.primary_metric
    seen = None if kind == "regression" else sorted({t for e in examples for t in (e.label if isinstance(e.label, list) else [e.label])})
    data_task = Task(kind, seen, examples[0].text_pair is not None, metric)
    return examples, name, split_name, check_data_fits_head(data_task, name, model_task, f"'{run}'")


def teacher_at_hand(run: Path, teacher: str | Path | None, recorded: dict, notes: list[str]) -> Path | None:
    """The student's teacher directory when it can be loaded: ``teacher``, else the run's recorded one."""
    if teacher is not None:
        if not is_teacher_run(teacher):
            raise not_a_teacher_run(teacher)
        return Path(teacher)
    t = recorded.get("teacher")
    if t and is_teacher_run(t):
        return Path(t)
    notes.append(f"the teacher ({t or 'not recorded'}) is not at hand: no loyalty or retention; pass --teacher DIR")
    return None


def recorded_ensemble(recorded: dict, stored: RunResult | None, max_length: int, notes: list[str]):
    """The ensemble a student was distilled from (its ``config.yaml`` ``teachers`` and ``ensemble``),
    with the member weights its run used (``metrics.json``), when every member is at hand."""
    from kdexam.config import EnsembleConfig
    from kdexam.teachers.ensemble import Ensemble

    dirs = [str(t) for t in recorded["teachers"]]
    missing = [t for t in dirs if not is_teacher_run(t)]
    if missing:
        notes.append(f"the ensemble's teacher(s) {', '.join(missing)} are not at hand: no loyalty or retention; "
                     "pass --teacher DIR for loyalty to one of them")
        return None
    cfg = EnsembleConfig.model_validate(recorded.get("ensemble") or {})
    used = ((stored.teacher.extra.get("ensemble") or {}).get("members") or []) if stored else []
    if cfg.weighting == "validation" and len(used) == len(dirs) and all("weight" in m for m in used):
        cfg = EnsembleConfig(combine=cfg.combine, weighting="fixed", weights=[m["weight"] for m in used])
    elif cfg.weighting == "validation":
        notes.append("the ensemble's validation weights are not recorded: its members are weighed equally")
        cfg = EnsembleConfig(combine=cfg.combine)
    return Ensemble(dirs, cfg, max_length=max_length)


def ensemble_scores(task: Task, gold: list, logits, features, crf, ensemble, outputs) -> dict:
    """What ``metrics.json`` records of an ensemble teacher: its set-up, and for each member its own
    metrics on the split and the student's loyalty to it (as :func:`score` gives them for one teacher)."""
    described, members = ensemble.describe(), []
    for entry in described["members"]:
        m = entry["name"]
        rows = outputs.member_logits(m, [outputs.parts[m].example(i) for i in range(len(outputs))])
        own = score(task, gold, logits, features, crf, rows)
        members.append({**entry, "params": ensemble.members[m].params, "metrics": without_per_class(own.teacher_metrics),
                        "student_loyalty": own.loyalty})
    return {**described, "members": members}


def teacher_columns(teacher: Task | None, student: Task, teacher_name: str):
    """Column indices that put the teacher's logits in the student's label order (``None``: already
    so), as an ensemble orders its members' (:func:`~kdexam.teachers.ensemble.label_order`); a
    sentence when the teacher was trained for another task or label set."""
    from kdexam.teachers.ensemble import label_order

    if teacher is None:
        return None
    try:
        return label_order(student, teacher, "student", teacher_name)
    except KdexamError:
        raise KdexamError(f"Teacher '{teacher_name}' was trained for {teacher.kind} with labels {teacher.labels} and the "
                          f"student for {student.kind} with labels {student.labels}; pass the student's own teacher "
                          "(or one of its task and labels) with --teacher.") from None


def _stored_result(run: Path) -> RunResult | None:
    try:
        return read_result(run)
    except KdexamError:
        return None


def _params(stored: RunResult | None, model) -> int:
    side = None if stored is None else (stored.student if model.role == "student" else stored.teacher)
    if side is not None and side.params:
        return int(side.params)
    from kdexam.students.registry import count_parameters

    return count_parameters(model.module)
