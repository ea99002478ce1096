"""Distil a fine-tuned teacher into a student (``kdexam distill``).

1. Data: ``--data``, or the data and columns the teacher was trained on; it must fit the
   teacher's head (:func:`check_data_fits_teacher`). The transfer set
   (:mod:`kdexam.data.transfer`): the labelled train + unlabelled + augmented text.
2. Student (:mod:`kdexam.students`) and each stage's objectives
   (:mod:`kdexam.objectives`), built and checked before any teacher work.
3. Teacher outputs the objectives require on every transfer example, on the teacher's own
   tokenization: from the cache, computed once in one pass, or online per batch
   (:class:`~kdexam.teachers.teacher.Teacher`); optionally only confident rows are kept.
4. Each stage (on the transfer set, or on its gold rows only) trains a
   :class:`~kdexam.training.distiller.Distiller` (student + projections) with the shared loop (:func:`~kdexam.training.trainer.fit`).
5. Teacher and student on the same split: a :class:`~kdexam.evaluation.results.RunResult`
   written as ``metrics.json`` beside the student.

``--general`` runs task-agnostic distillation instead (:mod:`kdexam.training.general`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import set_seed
from rich.console import Console

from kdexam.config import DistillRunConfig, ObjectiveSpec, save_config
from kdexam.data.encode import encode, first_subwords, make_loader
from kdexam.data.splits import DataSplits, load_data
from kdexam.data.transfer import TransferSet, build_transfer_set, check_confidence_fits
from kdexam.errors import KdexamError
from kdexam.evaluation.card import refresh_card
from kdexam.evaluation.evaluate import ensemble_scores, score, without_per_class
from kdexam.evaluation.loyalty import citations as loyalty_citations
from kdexam.evaluation.predict import decode, predict_logits, predict_logits_shared
from kdexam.evaluation.results import ModelResult, RunResult, retention, retention_note
from kdexam.objectives import ModelShape, build_objectives, default_objectives
from kdexam.objectives.members import build_ensemble_objectives
from kdexam.paths import atomic_write_json
from kdexam.rundir import INPUTS_FILE, check_out, check_same_inputs, clear_replaced, finished_run, with_absolute_paths
from kdexam.students.crf import LAMPLE_2016, crf_params
from kdexam.students.registry import build_student, count_parameters, save_student
from kdexam.tasks import Task
from kdexam.teachers.ensemble import CITATION as ENSEMBLE_CITATION
from kdexam.teachers.cache import fingerprint
from kdexam.teachers.ensemble import Ensemble, split_member
from kdexam.teachers.loader import allow_remote_code
from kdexam.teachers.teacher import Teacher, check_same_tokenization
from kdexam.training.checkpoint import load_stage, save_stage, stage_log_bytes
from kdexam.training.distiller import Distiller, TeacherSide, student_outputs
from kdexam.training.stages import apply_unfreeze, stage_objectives, stage_train_config, stages_of
from kdexam.training.run_checks import (
    check_data_fits_teacher,
    check_paths,
    check_run_config,
    check_teacher_layers,
    with_teacher_data,
    with_teacher_positions,
)
from kdexam.training.trainer import POLYAK_1992, fit, make_accelerator

console = Console(stderr=True)


def distill(cfg: DistillRunConfig, resume: bool = False, overwrite: bool = False) -> RunResult:
    """Run a distillation as ``cfg`` describes; write the run directory; return its result.
    ``resume``: continue the run in ``cfg.out``; ``overwrite``: replace a different run there."""
    allow_remote_code(cfg.trust_remote_code)
    if cfg.general:
        from kdexam.training.general import distill_general

        return distill_general(cfg, resume, overwrite)
    check_run_config(cfg)
    teacher_dirs, out = check_paths(cfg)
    if len(teacher_dirs) == 1 and not cfg.init_from:  # (an --init-from encoder's layers are checked when it loads)
        check_teacher_layers(cfg.student, teacher_dirs[0])
    set_seed(cfg.seed)
    started = time.perf_counter()
    cfg = with_teacher_data(cfg, teacher_dirs[0])
    cfg = with_teacher_positions(cfg, teacher_dirs[0])
    cfg = with_absolute_paths(cfg)  # (config.yaml is read from other folders: export, bench, evaluate)
    replace = check_out(cfg, out, run_inputs(cfg, teacher_dirs), resume, overwrite)
    if (done := finished_run(out, resume)) is not None:
        return done
    run = prepare(cfg, teacher_dirs)  # every check and all teacher work, before the run's folder is touched

    inputs = inputs_fingerprint(cfg, run)
    check_same_inputs(out, inputs, resume)
    clear_replaced(out, replace, run.accelerator)  # (--overwrite: only now, with the new run set up)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    if run.accelerator.is_main_process:
        atomic_write_json(out / INPUTS_FILE, {"fingerprint": inputs})
    if len(run.transfer.segments) > 1:
        run.transfer.write(out / "transfer.jsonl")
    student, summaries, citations = train_stages(cfg, run, out, resume)
    if run.accelerator.is_main_process:  # saved before scoring, so that a failure there never loses the trained student
        save_student(student, run.tokenizer, cfg.student, run.task, out)
    result = evaluate_run(cfg, run.data, run.task, run.teacher, run.evaluated, student, run.tokenizer, run.feats[run.split], run.split)
    citations += [c for c in method_citations(cfg, run.task, student) if c not in citations]
    train_out = run.teacher_side.outputs
    result.extra.update({
        "teacher_cache": {"hit": train_out.from_cache,
                          "path": cache_paths(train_out),
                          "outputs": sorted(run.names), "online": list(train_out.online) if cfg.cache_teacher else sorted(run.names),
                          "teacher_forward_calls": run.teacher.forward_calls, "teacher_examples": run.teacher.examples_computed,
                          "precision": cfg.teacher_precision},
        "transfer": run.transfer.report, "stages": summaries, "citations": citations,
        "notes": run.data.notes + train_out.notes + retention_note(result),
    })
    result.seconds = round(time.perf_counter() - started, 2)
    if run.accelerator.is_main_process:
        result.write(out)
        if not cfg.train.keep_checkpoint:
            for record in out.glob("stage*-done"):
                shutil.rmtree(record, ignore_errors=True)
        refresh_card(out)
    run.accelerator.wait_for_everyone()
    return result


@dataclass
class Prepared:
    """What a distillation has before its first step (:func:`prepare`)."""

    teacher: Teacher | Ensemble
    data: DataSplits
    task: Task
    transfer: TransferSet
    student: torch.nn.Module
    tokenizer: Any
    plans: list  # (stage, its objective) per stage
    feats: dict  # the encoded transfer set ("train"), validation split and scored split
    split: str  # the split the run is scored on
    names: set  # the teacher outputs training reads
    accelerator: Any
    teacher_side: TeacherSide
    kept: list | None  # the transfer rows --min-confidence keeps (None: all)
    evaluated: Any  # the teacher's logits on the scored split


def prepare(cfg: DistillRunConfig, teacher_dirs: list[Path]) -> Prepared:
    """The teacher, the data and the transfer set, the student and each stage's objective (built and
    checked before any teacher work), the encoded splits, and the teacher's outputs training reads."""
    teacher = make_teacher(cfg)
    teacher_dir = teacher.dir  # the teacher (the ensemble member) whose tokenizer, embeddings or layers the student takes
    data_cfg = cfg.data if cfg.data.task else cfg.data.model_copy(update={"task": teacher.task.kind})
    data = load_data(data_cfg, cfg.seed)
    task = check_data_fits_teacher(data, teacher.task, teacher_dirs[0])
    check_confidence_fits(cfg.transfer.min_confidence, task)
    if isinstance(teacher, Ensemble) and task.kind == "regression" and cfg.ensemble.combine == "logits":
        raise KdexamError("--combine logits averages class logits; regression teachers' predictions are averaged as they "
                          "are, so drop --combine (or --set ensemble.combine=logits).")

    transfer = build_transfer_set(cfg.transfer, data, task, cfg.seed, cfg.data, str(teacher_dir), teacher.tokenizer.mask_token)
    torch.manual_seed(cfg.seed)
    texts = [e.text for e in transfer.examples] + [e.text_pair for e in transfer.examples if e.text_pair]
    student, tokenizer = build_student(cfg.student, task, teacher_dir, train_texts=texts, init_from=cfg.init_from)
    plans = [(stage, build_stage_objective(stage, cfg, task, teacher, getattr(student, "shape", ModelShape())))
             for stage in stages_of(cfg, task.kind)]
    split = data.eval_split
    feats = {s: encode(data.split(s), tokenizer, task, cfg.data.max_length) for s in ("validation", split)}
    feats["train"] = encode(transfer.examples, tokenizer, task, cfg.data.max_length)
    names = set().union(*(objective.teacher_requires for _, objective in plans))
    if cfg.transfer.min_confidence is not None:
        names.add("logits")
    accelerator = make_accelerator(cfg.train)  # (fp32 under auto; joins a parallel launch's processes, which share the teacher work)
    if isinstance(teacher, Ensemble) and cfg.ensemble.weighting == "validation":  # (after every check: teacher work)
        scores = teacher.weigh_by_validation(data.validation, cache=cfg.cache_teacher)
        console.print("ensemble weights from validation " + ", ".join(
            f"{m} {task.primary_metric} {v:.4f} -> {teacher.weights[m]:.3f}" for m, v in scores.items()))
    side = training_teacher_side(cfg, teacher, transfer, task, feats["train"], names)
    kept = (transfer.confident(side.outputs.gather(range(len(transfer)), ["logits"])["logits"], task,
                               cfg.transfer.min_confidence) if cfg.transfer.min_confidence is not None else None)
    evaluated = teacher.outputs(data.split(split), ["logits"])
    if not side.outputs.online and all("logits" in o.student_requires for _, o in plans):
        teacher.release()  # every output training reads is at hand (and no stage scores its validation by the teacher's)
    return Prepared(teacher, data, task, transfer, student, tokenizer, plans, feats, split, names, accelerator, side, kept, evaluated)


def train_stages(cfg: DistillRunConfig, run: Prepared, out: Path, resume: bool) -> tuple[torch.nn.Module, list[dict], list[str]]:
    """Train each stage in turn with the shared loop (:func:`~kdexam.training.trainer.fit`); a stage
    finished in an earlier run is loaded, not trained again. Returns the student, each stage's
    summary and the citations of the objectives."""
    student, accelerator, task, feats, tokenizer = run.student, run.accelerator, run.task, run.feats, run.tokenizer
    log_path = out / "train_log.jsonl"
    main = accelerator.is_main_process  # in a parallel launch, one process writes the run's files
    if not resume and main:
        log_path.unlink(missing_ok=True)
    summaries, citations = [], ([ENSEMBLE_CITATION] if isinstance(run.teacher, Ensemble) else [])
    log_start: int | None = 0  # where the next stage's lines begin in the log
    for n, (stage, objective) in enumerate(run.plans):
        train_cfg = stage_train_config(stage, cfg.train)
        trainable = apply_unfreeze(student, stage.unfreeze)
        if cfg.student.freeze_embeddings:
            student.get_input_embeddings().weight.requires_grad_(False)
        console.print(f"stage {n + 1}/{len(run.plans)} '{stage.name}': {', '.join(objective.names)}; {trainable:,} trainable "
                      f"parameters; {train_cfg.epochs} epochs at lr {train_cfg.learning_rate:g}")
        citations += [c for c in objective.citations() if c not in citations]
        distiller = Distiller(student, objective)
        record = out / f"stage{n + 1}-done"
        if resume and (done := load_stage(record, distiller)) is not None:
            console.print(f"stage {n + 1} '{stage.name}' finished in an earlier run: not trained again ({record})")
            summaries.append(done)
            log_start = stage_log_bytes(record)
            continue

        def loss_fn(model, batch, objective=objective):
            # gathered by the host batch's example indices, before the batch moves: on a GPU, reading
            # the indices back from the device would wait for the previous step's kernels
            teacher_out = run.teacher_side(batch, accelerator.device) if objective.needs_teacher else None
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            return model(batch, teacher_out)[0]

        def validate(model):
            s = accelerator.unwrap_model(model).student
            logits = predict_logits_shared(s, feats["validation"], tokenizer, task, cfg.train.eval_batch_size, student_outputs_logits)
            return task.metrics([e.label for e in run.data.validation], decode(task, logits, feats["validation"], crf_params(s)))

        metric, greater = task.primary_metric, task.greater_is_better
        if "logits" not in objective.student_requires:  # the head is not trained in this stage: its task score says nothing
            validate, metric, greater = objective_validation(cfg, run.teacher, run.data.validation, task, feats["validation"],
                                                             tokenizer, objective, accelerator), "objective", False
        # a stage without the teacher (gold alone) reads the labelled rows: the teacher-labelled ones carry no loss
        data = "gold" if stage.data == "gold" or not objective.needs_teacher else "transfer"
        rows = run.transfer.indices("gold") if data == "gold" else run.kept
        loader = make_loader(feats["train"], tokenizer, task, train_cfg.batch_size, shuffle=True, seed=cfg.seed + n, indices=rows)
        summary = fit(distiller, loader, loss_fn, validate, train_cfg, accelerator, metric, greater,
                      log_path, desc=f"{cfg.student.kind} {stage.name}", checkpoint_dir=out / f"checkpoint-stage{n + 1}", resume=resume,
                      log_start=log_start)
        summaries.append({"stage": stage.name, "objectives": objective.names, "data": data, "examples": len(loader.dataset),
                          **{k: v for k, v in summary.items() if k != "history"}})
        student = accelerator.unwrap_model(distiller).student
        log_start = log_path.stat().st_size if log_path.is_file() else 0
        if main:  # a later stage killed and resumed starts from here; after the last, a kill while scoring costs no training
            save_stage(record, accelerator.unwrap_model(distiller), summaries[-1], log_bytes=log_start)
        accelerator.wait_for_everyone()
    return student, summaries, citations


def inputs_fingerprint(cfg: DistillRunConfig, run: Prepared) -> str:
    """One key for what the run trains on: the teacher's (each member's) files, and the transfer
    set and validation split in order (:func:`kdexam.teachers.cache.fingerprint`)."""
    teachers = run.teacher.members.values() if isinstance(run.teacher, Ensemble) else [run.teacher]
    return fingerprint("+".join(t.key for t in teachers), run.transfer.examples + run.data.validation, run.task,
                       cfg.data.max_length)


def cache_paths(outputs) -> str | list[str] | dict | None:
    """Where the teacher outputs are cached: one folder, one per transfer-set segment, or per member of an ensemble."""
    if getattr(outputs, "member_paths", None):
        return outputs.member_paths
    paths = [str(p) for p in getattr(outputs, "paths", [outputs.path]) if p]
    return None if not paths else paths[0] if len(paths) == 1 else paths


def run_inputs(cfg: DistillRunConfig, teacher_dirs: list[Path]) -> dict:
    """The run's inputs by what they are, for :func:`~kdexam.rundir.check_out` (a run never writes into one)."""
    labels = ["teacher"] if len(teacher_dirs) == 1 else [f"teacher {i}" for i in range(1, len(teacher_dirs) + 1)]
    return {**dict(zip(labels, teacher_dirs)), "--init-from encoder": cfg.init_from, "data": cfg.data.name,
            "--vectors-file": cfg.student.vectors_file, "--augment-vectors file": cfg.transfer.augment_vectors,
            "--augment-mlm-model": cfg.transfer.augment_mlm_model, **{f"unlabelled text '{u}'": u for u in cfg.transfer.unlabelled}}


def make_teacher(cfg: DistillRunConfig) -> Teacher | Ensemble:
    """The run's teacher, or the :class:`~kdexam.teachers.ensemble.Ensemble` of its ``teachers``."""
    if cfg.teachers:
        return Ensemble(cfg.teachers, cfg.ensemble, max_length=cfg.data.max_length, primary=cfg.student.teacher)
    if cfg.student.teacher is not None:
        raise KdexamError(f"student.teacher '{cfg.student.teacher}' names an ensemble member, but this run has one teacher; "
                          "remove it (or give several teachers).")
    return Teacher(cfg.teacher, max_length=cfg.data.max_length)


def training_teacher_side(cfg: DistillRunConfig, teacher: Teacher | Ensemble, transfer: TransferSet, task: Task, features,
                          names) -> TeacherSide:
    """The teacher outputs ``names`` on the transfer examples (each segment cached, computed once, or
    online), laid out per batch like the student's; token-level outputs need the teacher's tokenization."""
    return teacher_side(cfg, teacher, transfer.examples, transfer.segment_examples(), task, features, names)


def teacher_side(cfg: DistillRunConfig, teacher: Teacher | Ensemble, examples: list, segments: list[list], task: Task,
                 features, names) -> TeacherSide:
    """The teacher outputs ``names`` on ``examples`` (given as ``segments``, each cached on its own)."""
    if isinstance(teacher, Ensemble):
        for member, t in teacher.members.items():
            check_same_tokenization(t, examples, features, [b for b, m in map(split_member, names) if m == member])
    else:
        check_same_tokenization(teacher, examples, features, names)
    outputs = teacher.outputs_of_segments(segments, names, cache=cfg.cache_teacher,
                                          budget_gb=cfg.cache_budget_gb, precision=cfg.teacher_precision)
    if cfg.cache_teacher:
        console.print(f"teacher outputs: {'read from cache' if outputs.from_cache else 'computed and cached'} ({cache_paths(outputs)})")
    positions = ([np.asarray(first_subwords(r["word_ids"], r["n_words"]), dtype=np.int64) for r in features.rows]
                 if task.kind == "token-classification" else None)
    return TeacherSide(outputs, names, task, positions)


def objective_validation(cfg: DistillRunConfig, teacher: Teacher | Ensemble, validation: list, task: Task, features, tokenizer,
                         objective, accelerator):
    """For a stage that does not train the head (intermediate objectives only: TinyBERT's first stage,
    XtremeDistil's representation stage): the stage's own loss on the validation split, against the
    teacher's outputs there (cached like the transfer set's), as ``{"objective": mean loss}`` — what
    selects the stage's weights and stops it early, lower is better. The head's task score would
    only measure an untrained head."""
    from kdexam.parallel import gather_items, my_share

    side = teacher_side(cfg, teacher, validation, [validation], task, features, objective.teacher_requires)

    @torch.inference_mode()
    def validate(model):  # each parallel process scores its share; the sums are gathered
        model.eval()
        total, n = 0.0, 0
        share = my_share(len(features)) if accelerator.num_processes > 1 else None
        for batch in make_loader(features, tokenizer, task, cfg.train.eval_batch_size, shuffle=False, indices=share):
            teacher_out = side(batch, accelerator.device)  # by the host batch's indices (see loss_fn)
            loss = model({k: v.to(accelerator.device) for k, v in batch.items()}, teacher_out)[0]
            total, n = total + float(loss) * len(batch["input_ids"]), n + len(batch["input_ids"])
        sums = gather_items({accelerator.process_index: (total, n)}, accelerator.num_processes)
        return {"objective": sum(t for t, _ in sums) / sum(c for _, c in sums)}

    return validate


def build_stage_objective(stage, cfg: DistillRunConfig, task: Task, teacher: Teacher | Ensemble, student: ModelShape):
    specs, matches = stage_objectives(stage, cfg, default_objectives(task.kind))
    if isinstance(teacher, Ensemble):
        if cfg.recipe:  # a recipe's representation stage reads the primary member (student.teacher, else the first)
            specs = [ObjectiveSpec.model_validate({**s.model_dump(), "teacher": teacher.primary})
                     if isinstance(s, ObjectiveSpec) and s.name == "representation" and "teacher" not in s.params else s
                     for s in specs]
        shapes = {m: t.shape for m, t in teacher.members.items()}
        return build_ensemble_objectives(specs, matches, task.kind, shapes, student)
    for spec in specs:
        if "teacher" in (spec.params if isinstance(spec, ObjectiveSpec) else spec):
            raise KdexamError(f"Objective '{spec.name if isinstance(spec, ObjectiveSpec) else spec.get('name')}' names a "
                              "teacher (an ensemble member), but this run has one teacher; remove its 'teacher' key.")
    return build_objectives(specs, task.kind, teacher=teacher.shape, student=student, matches=matches)


def student_outputs_logits(model, batch: dict) -> torch.Tensor:
    return student_outputs(model, batch)["logits"]


def evaluate_run(cfg, data: DataSplits, task: Task, teacher: Teacher | Ensemble, evaluated, student, tokenizer, features, split) -> RunResult:
    """Teacher and student on the same split (:func:`kdexam.evaluation.evaluate.score`, as
    ``kdexam evaluate`` scores a saved run): metrics, loyalty, retention, sizes. For an ensemble
    the teacher side is the combined target; ``teacher.ensemble.members`` holds each member's own
    metrics and the student's loyalty to it."""
    s_logits = predict_logits(student, features, tokenizer, task, cfg.train.eval_batch_size, student_outputs_logits)
    t_logits = [evaluated.example(i) for i in range(len(evaluated))]
    scores = score(task, [e.label for e in data.split(split)], s_logits, features, crf_params(student), t_logits)
    pm = task.primary_metric
    params = count_parameters(student)
    ensemble = (ensemble_scores(task, [e.label for e in data.split(split)], s_logits, features, crf_params(student), teacher,
                                evaluated) if isinstance(teacher, Ensemble) else None)
    return RunResult(
        task=task.kind, dataset=data.name, split=split, primary_metric=pm,
        teacher=ModelResult(str(teacher.name), teacher.params, without_per_class(scores.teacher_metrics),
                            extra={"ensemble": ensemble} if ensemble else {}),
        student=ModelResult(cfg.student.kind, params, without_per_class(scores.metrics), count_parameters(student, exclude_embeddings=True),
                            scores.metrics.get("per_class"), scores.loyalty,
                            extra={"init_from": cfg.init_from} if cfg.init_from else {}),
        retention=retention(scores.metrics[pm], scores.teacher_metrics[pm], task.greater_is_better),
        compression=teacher.params / max(1, params))


def method_citations(cfg: DistillRunConfig, task: Task, student) -> list[str]:
    """BibTeX of what a run used besides its objectives: the loyalty figures, a CRF, the weight average."""
    return (loyalty_citations(task.kind) + ([LAMPLE_2016] if getattr(student, "crf", None) is not None else [])
            + ([POLYAK_1992] if cfg.train.ema_decay else []))
