"""Task-agnostic distillation (``kdexam distill --general``): a small encoder learns the teacher's
self-attention knowledge from unlabelled text, with no labels and no head.

As MiniLM (Wang et al. 2020) does, the student's last layer matches the teacher's last
layer's attention distributions and value relations (``attention_kl`` +
``value_relation``); when head counts differ, MiniLMv2's query/key/value relations with
relation heads (Wang et al. 2021) are used instead
(:func:`kdexam.objectives.general_objectives`). Any intermediate objective may be named
instead (hidden states too). The student is a preset shape (random) or K of the
teacher's layers; the result is a Hugging Face encoder directory (``config.json``,
``model.safetensors``, tokenizer, ``encoder.json``) that a later run takes as its
student's initialisation with ``--init-from DIR``.

Validation: the mean objective on held-out texts (lower is better), which also picks
the best epoch.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from accelerate.utils import set_seed
from rich.console import Console

from kdexam.config import DistillRunConfig, save_config
from kdexam.data.encode import make_loader
from kdexam.data.splits import load_texts
from kdexam.errors import KdexamError
from kdexam.rundir import check_out, clear_replaced, finished_run, with_absolute_paths
from kdexam.evaluation.results import ModelResult, RunResult
from kdexam.objectives import build_objectives, general_objectives
from kdexam.parallel import gather_items, my_share
from kdexam.paths import atomic_write_json
from kdexam.students.registry import check_spec, count_parameters
from kdexam.students.encoder import ENCODER_FILE, build_general_student
from kdexam.tasks import Task
from kdexam.teachers.teacher import Teacher
from kdexam.training.distiller import Distiller, TeacherSide
from kdexam.training.stages import stage_train_config, stages_of
from kdexam.training.trainer import fit, make_accelerator

console = Console(stderr=True)
NO_TASK = Task("classification", ["-"], False, "accuracy", "")  # encoding only: no labels are read


def distill_general(cfg: DistillRunConfig, resume: bool = False, overwrite: bool = False) -> RunResult:
    """Distil ``cfg.teacher`` (a run directory or any encoder) into a bare student encoder; save it in ``cfg.out``."""
    if not cfg.teacher:
        raise KdexamError("No teacher given; pass --teacher with a teacher run directory or an encoder (e.g. minilm-l6).")
    if not cfg.out:
        raise KdexamError("No output directory given; pass --out DIR.")
    if cfg.init_from:
        raise KdexamError("--general trains an encoder from the teacher; it does not take --init-from.")
    out = Path(cfg.out)
    cfg = with_absolute_paths(cfg)  # (config.yaml is read from other folders: export, bench, evaluate)
    replace = check_out(cfg, out, {"teacher": cfg.teacher, "data": cfg.data.name}, resume, overwrite)
    if (done := finished_run(out, resume)) is not None:
        return done
    set_seed(cfg.seed)
    started = time.perf_counter()
    family, k = check_spec(cfg.student)
    ignored = [key for key in ("dropout", "freeze_embeddings", "trim_vocab") if getattr(cfg.student, key) not in (None, False)]
    if ignored:  # (build_general_student reads the kind and layers alone: these were accepted and did nothing)
        raise KdexamError(f"--general builds the encoder with the teacher's dropout and whole vocabulary and trains every "
                          f"weight, so student.{', student.'.join(ignored)} would do nothing; drop "
                          f"{'it' if len(ignored) == 1 else 'them'} (set them in the task run that --init-from this encoder).")
    teacher = Teacher(cfg.teacher, max_length=cfg.data.max_length, general=True)
    train, validation, name = load_texts(cfg.data, cfg.seed)
    torch.manual_seed(cfg.seed)
    student, tokenizer, info = build_general_student(family, k, teacher.dir, cfg.student.layers)
    stage = stages_of(cfg)[0]
    if len(stages_of(cfg)) > 1:
        raise KdexamError("General distillation runs one stage; remove the extra stages.")
    specs = stage.objectives or cfg.objectives or general_objectives(teacher.shape, student.shape)
    objective = build_objectives(specs, "general", teacher=teacher.shape, student=student.shape,
                                 matches=stage.matches or cfg.matches)
    names = objective.teacher_requires
    accelerator = make_accelerator(cfg.train)  # (fp32 under auto; joins a parallel launch's processes, which share the teacher work)
    train_out = teacher.outputs(train, names, cache=cfg.cache_teacher, budget_gb=cfg.cache_budget_gb, precision=cfg.teacher_precision)
    val_out = teacher.outputs(validation, names, budget_gb=cfg.cache_budget_gb, precision=cfg.teacher_precision)
    feats = {"train": teacher.encode(train), "validation": teacher.encode(validation)}
    sides = {"train": TeacherSide(train_out, names, None), "validation": TeacherSide(val_out, names, None)}

    clear_replaced(out, replace, accelerator)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    train_cfg = stage_train_config(stage, cfg.train)
    distiller = Distiller(student, objective)
    console.print(f"general distillation of {teacher.name} into {cfg.student.kind} on {len(train)} texts of {name}: "
                  f"{', '.join(objective.names)}")

    def loss_fn(model, batch):
        teacher_out = sides["train"](batch, accelerator.device)  # by the host batch's indices (see distill's loss_fn)
        return model({k: v.to(accelerator.device) for k, v in batch.items()}, teacher_out)[0]

    @torch.inference_mode()
    def validate(model):  # each parallel process scores its share; the sums are gathered
        model.eval()
        total, n = 0.0, 0
        share = my_share(len(feats["validation"])) if accelerator.num_processes > 1 else None
        for batch in make_loader(feats["validation"], tokenizer, NO_TASK, cfg.train.eval_batch_size, shuffle=False, indices=share):
            teacher_out = sides["validation"](batch, accelerator.device)
            loss = model({k: v.to(accelerator.device) for k, v in batch.items()}, teacher_out)[0]
            total, n = total + float(loss) * len(batch["input_ids"]), n + len(batch["input_ids"])
        sums = gather_items({accelerator.process_index: (total, n)}, accelerator.num_processes)
        return {"objective": sum(t for t, _ in sums) / sum(c for _, c in sums)}

    loader = make_loader(feats["train"], tokenizer, NO_TASK, train_cfg.batch_size, shuffle=True, seed=cfg.seed)
    log_path = out / "train_log.jsonl"
    if not resume and accelerator.is_main_process:
        log_path.unlink(missing_ok=True)
    summary = fit(distiller, loader, loss_fn, validate, train_cfg, accelerator, "objective", False, log_path,
                  desc=f"{cfg.student.kind} general", checkpoint_dir=out / "checkpoint-general", resume=resume)
    student = accelerator.unwrap_model(distiller).student
    result = RunResult(
        general=True, dataset=name,
        teacher=ModelResult(teacher.name, teacher.params),
        student=ModelResult(cfg.student.kind, count_parameters(student), {"validation_objective": summary["best_validation"]},
                            count_parameters(student, exclude_embeddings=True)),
        compression=teacher.params / max(1, count_parameters(student)),
        seconds=round(time.perf_counter() - started, 2),
        extra={"texts": {"train": len(train), "validation": len(validation)}, "objectives": objective.names,
               "stages": [{"stage": "general", **{k: v for k, v in summary.items() if k != "history"}}],
               "teacher_cache": {"hit": train_out.from_cache, "outputs": sorted(names), "online": list(train_out.online),
                                 "teacher_forward_calls": teacher.forward_calls, "teacher_examples": teacher.examples_computed},
               "citations": objective.citations(), "notes": train_out.notes})
    if accelerator.is_main_process:  # in a parallel launch, one process writes the run's files
        save_encoder(student, tokenizer, out, {"kind": cfg.student.kind, "teacher": teacher.name, "data": name, **info,
                                               "objectives": objective.names})
        result.write(out)
    accelerator.wait_for_everyone()
    return result


def save_encoder(student, tokenizer, out: Path, info: dict) -> None:
    """The encoder as a Hugging Face directory (safetensors) plus ``encoder.json``, written last."""
    student.model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    atomic_write_json(out / ENCODER_FILE, {"format_version": 1, **info})
