"""What a distillation run is checked against, and the settings it takes from its teacher, before
any data or teacher is read (an exam checks each of its cells with :func:`check_run_config`
before its teachers train): the config's names, the teacher folders, the teacher's data and
positions, and whether data fits a model's head."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from kdexam.config import DataConfig, DistillRunConfig
from kdexam.data.splits import DataSplits
from kdexam.data.transfer import check_unlabelled_column
from kdexam.errors import KdexamError
from kdexam.objectives import check_objective_specs
from kdexam.paths import read_run_config
from kdexam.rundir import is_teacher_run, not_a_teacher_run
from kdexam.students.registry import check_spec
from kdexam.tasks import Task
from kdexam.training.stages import stage_objectives, stages_of

console = Console(stderr=True)


def check_run_config(cfg: DistillRunConfig) -> None:
    """What a config names, checked before any data or teacher is read: the student kind and its
    settings, every stage's objectives and matches, and the augmenters (an exam checks each of its
    cells with it before its teachers train)."""
    from kdexam.data.augment.registry import check_augmenter_name

    check_spec(cfg.student)
    gold_only = []
    for stage in stages_of(cfg, cfg.data.task or "classification"):
        specs, matches = stage_objectives(stage, cfg, [])
        check_objective_specs(specs, matches)
        gold_only.append(stage.data == "gold" or (bool(specs) and not matches and all(s.name == "gold" for s in specs)))
    if all(gold_only) and (cfg.transfer.unlabelled or cfg.transfer.augment):
        raise KdexamError("Every stage trains on the labelled rows alone (data: gold, or the gold objective alone), so "
                          "the transfer set's teacher-labelled rows (--unlabelled, --augment) would never be read; drop "
                          "them, or add a teacher objective (--objective kl) on the transfer set.")
    for name in cfg.transfer.augment:
        check_augmenter_name(name)
    check_unlabelled_column(cfg.transfer)


def check_teacher_layers(spec, teacher_dir: Path) -> None:
    """A ``teacher-layers:K`` student's K and ``layers`` against the teacher's layer count (its
    ``config.json``), before any data is read; where the count is not there, the build checks it."""
    from kdexam.students.registry import parse_kind
    from kdexam.students.teacher_layers import select_layers
    from kdexam.teachers.loader import config_int

    family, k = parse_kind(spec)
    n = config_int(teacher_dir, "num_hidden_layers")
    if family == "teacher-layers" and n is not None:
        select_layers(n, k, "lower" if spec.layers == "random" else spec.layers)  # (random: K's range alone)


def check_paths(cfg: DistillRunConfig) -> tuple[list[Path], Path]:
    if not cfg.teacher_dirs:
        raise KdexamError("No teacher given; pass --teacher DIR (a run directory written by 'kdexam teacher').")
    if not cfg.out:
        raise KdexamError("No output directory given; pass --out DIR.")
    for teacher_dir in map(Path, cfg.teacher_dirs):
        if not is_teacher_run(teacher_dir):
            raise not_a_teacher_run(teacher_dir)
    return [Path(t) for t in cfg.teacher_dirs], Path(cfg.out)


def with_teacher_data(cfg: DistillRunConfig, teacher_dir: Path) -> DistillRunConfig:
    """Without ``--data``: the data and its columns from the teacher's ``config.yaml`` (not its
    ``max_train``/``max_eval``, which are this run's choice); what this run's config says wins."""
    if cfg.data.name:
        return cfg
    recorded = (read_run_config(teacher_dir).get("data") or {})
    if not recorded.get("name"):
        raise KdexamError(f"No --data given and the teacher '{teacher_dir}' records no training data in its config.yaml; pass --data.")
    fields = {k: v for k, v in recorded.items() if k in DataConfig.model_fields and k not in ("max_train", "max_eval")}
    fields.update(cfg.data.model_dump(exclude_unset=True, exclude_none=True))
    data = DataConfig.model_validate(fields)
    console.print(f"data: {data.name} (the teacher's, from {teacher_dir / 'config.yaml'})")
    return cfg.model_copy(update={"data": data})


def with_teacher_positions(cfg: DistillRunConfig, teacher_dir: Path) -> DistillRunConfig:
    """``data.max_length`` cut at what the teacher has positions for, with a note: the teacher's
    outputs are of inputs cut there, and a student built from its layers has the same position
    table (a longer input crashed its forward pass). Cut before the run's config is compared or
    written, so the run records, and its predictor reads, the length it trained at."""
    from kdexam.teachers.loader import input_limit

    limit = input_limit(teacher_dir)
    if limit is None or cfg.data.max_length <= limit:
        return cfg
    console.print(f"[dim]note:[/] max_length {cfg.data.max_length} is more than the teacher '{teacher_dir}' has positions "
                  f"for; inputs are cut at {limit} tokens.")
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"max_length": limit})})


def check_data_fits_teacher(data: DataSplits, teacher_task: Task, teacher_dir: Path) -> Task:
    """The student's task: the teacher's head (labels in the teacher's order) on this data."""
    return check_data_fits_head(data.task, data.name, teacher_task, f"Teacher '{teacher_dir}'")


def check_data_fits_head(data_task: Task, data_name: str, head: Task, owner: str) -> Task:
    """``head``'s task (its labels, in its order) with the data's primary metric, when data whose
    task is ``data_task`` (its ``labels``: every label it holds) fits that head; else a sentence
    about ``owner`` (the model whose head it is)."""
    if data_task.kind != head.kind:
        conll = (" (a .txt or .conll file is read as CoNLL, a token and its tag on each line; give texts with their labels "
                 "as .csv, .tsv or .jsonl)" if data_task.kind == "token-classification" else "")
        raise KdexamError(f"{owner} was trained for {head.kind} but the data '{data_name}' is {data_task.kind}{conll}; "
                          "use data of its task (or fine-tune a teacher for this one).")
    if data_task.text_pair != head.text_pair:
        want = "text pairs" if head.text_pair else "single texts"
        raise KdexamError(f"{owner} reads {want} but the data '{data_name}' does not; check --data and the text pair column.")
    extra = set(data_task.labels or []) - set(head.labels or [])
    if extra:
        raise KdexamError(f"Labels {sorted(extra)} of '{data_name}' are unknown to {owner} (it knows {head.labels}); "
                          "use data with its label set.")
    return Task(head.kind, head.labels, head.text_pair, data_task.primary_metric, data_name)
