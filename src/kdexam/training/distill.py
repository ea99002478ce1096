"""Distil a fine-tuned teacher into a student (``kdexam distill``).

1. Read the teacher's task (``task.json``) and check that the data fits its head.
2. Teacher logits on the transfer set and the evaluation splits: from the cache,
   or computed once and cached (:mod:`kdexam.teachers.cache`).
3. Build the student (:mod:`kdexam.students`), encode the data with its tokenizer.
4. For each stage: freeze all but the top layer groups, train on the stage's
   objectives (:mod:`kdexam.objectives`) with the shared loop (:func:`fit`).
5. Evaluate teacher and student on the same split: task metrics, retention,
   loyalty; save the student and ``metrics.json``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from rich.console import Console

from kdexam.config import DistillRunConfig, StageConfig, save_config
from kdexam.data.encode import Features, encode, first_subwords, make_loader
from kdexam.data.readers import DataSplits, load_data
from kdexam.errors import KdexamError
from kdexam.evaluation.loyalty import classification_loyalty, regression_loyalty
from kdexam.evaluation.predict import decode, predict_logits
from kdexam.objectives import build_objectives, default_objectives
from kdexam.paths import atomic_write_json
from kdexam.students.crf import crf_params
from kdexam.students.registry import build_student, count_parameters, save_student
from kdexam.tasks import Task
from kdexam.teachers.cache import TeacherOutputs, model_fingerprint, teacher_outputs, word_level
from kdexam.teachers.loader import load_for_task, load_tokenizer, read_task
from kdexam.training.trainer import fit, make_accelerator

console = Console(stderr=True)


def student_forward(model, batch: dict) -> torch.Tensor:
    return model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch})["logits"]


class Teacher:
    """The fine-tuned teacher: loaded only when its outputs are not cached."""

    def __init__(self, run_dir: Path, task: Task):
        self.dir, self.task = run_dir, task
        self.tokenizer = load_tokenizer(str(run_dir))
        self.key = model_fingerprint(run_dir)
        self._model = None
        self.forward_calls = 0

    @property
    def model(self):
        if self._model is None:
            self._model = load_for_task(str(self.dir), self.task).eval()
            original = self._model.forward

            def counted(*a, **kw):
                self.forward_calls += 1
                return original(*a, **kw)

            self._model.forward = counted
        return self._model

    def outputs(self, examples, task: Task, max_length: int) -> TeacherOutputs:
        return teacher_outputs(lambda: self.model, self.tokenizer, self.dir, examples, task, max_length, model_key=self.key)

    @property
    def params(self) -> int:
        from safetensors import safe_open

        with safe_open(str(self.dir / "model.safetensors"), "pt") as f:
            return int(sum(np.prod(f.get_slice(k).get_shape()) for k in f.keys()))


def check_data_fits_teacher(data: DataSplits, teacher_task: Task, teacher_dir: Path) -> Task:
    """The student's task: the teacher's head (labels in the teacher's order) on this data."""
    if data.task.kind != teacher_task.kind:
        raise KdexamError(f"Teacher '{teacher_dir}' was trained for {teacher_task.kind} but the data '{data.name}' is "
                          f"{data.task.kind}; distil with data of the teacher's task or fine-tune a teacher for this one.")
    if data.task.text_pair != teacher_task.text_pair:
        want = "text pairs" if teacher_task.text_pair else "single texts"
        raise KdexamError(f"Teacher '{teacher_dir}' reads {want} but the data '{data.name}' does not; check --data and the text pair column.")
    extra = set(data.task.labels or []) - set(teacher_task.labels or [])
    if extra:
        raise KdexamError(f"Labels {sorted(extra)} of '{data.name}' are unknown to the teacher '{teacher_dir}' "
                          f"(it knows {teacher_task.labels}); use data with the teacher's label set.")
    return Task(teacher_task.kind, teacher_task.labels, teacher_task.text_pair, data.task.primary_metric, data.name)


def first_subword_positions(features: Features) -> list[np.ndarray]:
    """For tagging: each word's first-subword position in the student's encoding (-1 if truncated)."""
    return [np.asarray(first_subwords(row["word_ids"], row["n_words"]), dtype=np.int64) for row in features.rows]


def teacher_batch_logits(cached: TeacherOutputs, batch: dict, task: Task, positions: list[np.ndarray] | None) -> torch.Tensor:
    """Teacher logits shaped like the student's: [B, C], or [B, L, C] with word logits on first subwords."""
    index = batch["index"].tolist()
    if task.kind != "token-classification":
        return cached.rows(index)
    b, length = batch["input_ids"].shape
    out = torch.zeros(b, length, cached.logits.shape[-1])
    for r, i in enumerate(index):
        pos = positions[i]
        keep = pos >= 0
        out[r, torch.from_numpy(pos[keep])] = torch.from_numpy(np.asarray(cached.example(i)[keep], dtype=np.float32))
    return out


def layer_groups(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The student's parameter groups from input to output: embeddings, each encoder layer
    (transformers) or each top-level block (BiLSTM/CNN), then the head."""
    inner = getattr(model, "model", model)  # HF students are wrapped
    base = getattr(inner, "base_model", None)
    if base is not None and base is not inner and hasattr(base, "encoder"):
        layers = next(m for m in base.encoder.modules() if isinstance(m, torch.nn.ModuleList))
        head = [m for n, m in inner.named_children() if m is not base]
        return [base.embeddings, *layers, *[m for n, m in base.named_children() if n not in ("embeddings", "encoder")], *head]
    return [m for m in model.children() if any(True for _ in m.parameters())]


def apply_unfreeze(model: torch.nn.Module, unfreeze: int | str) -> int:
    """Freeze all but the top ``unfreeze`` layer groups; returns the number of trainable parameters."""
    groups = layer_groups(model)
    n = len(groups) if unfreeze == "all" else int(unfreeze)
    for p in model.parameters():
        p.requires_grad = unfreeze == "all"
    for g in groups[len(groups) - n :]:
        for p in g.parameters():
            p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def word_logits(task: Task, logits: list[np.ndarray], features: Features) -> np.ndarray:
    """Logits to compare for loyalty: [N, C] per example, or [Σ words, C] for tagging."""
    if task.kind == "token-classification":
        return word_level(logits, features)[0]
    return np.stack(logits)


def loyalty(task: Task, teacher: np.ndarray, student: np.ndarray) -> dict:
    if task.kind == "regression":
        return regression_loyalty(teacher.reshape(-1), student.reshape(-1))
    return classification_loyalty(teacher, student)


def teacher_predictions(task: Task, cached: TeacherOutputs) -> list:
    labels = task.labels or []
    if task.kind == "regression":
        return [float(cached.example(i)[0]) for i in range(len(cached))]
    if task.kind == "classification":
        return [labels[int(cached.example(i).argmax())] for i in range(len(cached))]
    return [[labels[j] for j in cached.example(i).argmax(-1)] for i in range(len(cached))]


def distill(cfg: DistillRunConfig, resume: bool = False) -> dict:
    """Run a distillation as ``cfg`` describes; write the run directory; return ``metrics.json``'s content."""
    if not cfg.teacher:
        raise KdexamError("No teacher given; pass --teacher DIR (a run directory written by 'kdexam teacher').")
    if not cfg.out:
        raise KdexamError("No output directory given; pass --out DIR.")
    teacher_dir, out = Path(cfg.teacher), Path(cfg.out)
    if not (teacher_dir / "model.safetensors").is_file():
        raise KdexamError(f"Teacher directory '{teacher_dir}' has no model.safetensors; pass a directory written by 'kdexam teacher'.")
    set_seed(cfg.seed)
    started = time.perf_counter()
    teacher_task = read_task(teacher_dir)
    data_cfg = cfg.data if cfg.data.task else cfg.data.model_copy(update={"task": teacher_task.kind})
    data = load_data(data_cfg, cfg.seed)
    task = check_data_fits_teacher(data, teacher_task, teacher_dir)
    max_length = cfg.data.max_length
    teacher = Teacher(teacher_dir, teacher_task)

    split = data.eval_split
    cached = {split: teacher.outputs(data.split(split), task, max_length)}
    if cfg.cache_teacher:  # otherwise the teacher runs on every training batch (benchmarks)
        cached["train"] = teacher.outputs(data.train, task, max_length)
        console.print(f"teacher outputs: {'read from cache' if cached['train'].from_cache else 'computed and cached'} "
                      f"({cached['train'].path})")
    hit = "train" in cached and cached["train"].from_cache

    torch.manual_seed(cfg.seed)
    texts = [e.text for e in data.train] + [e.text_pair for e in data.train if e.text_pair]
    student, tokenizer = build_student(cfg.student, task, teacher_dir, train_texts=texts)
    feats = {s: encode(data.split(s), tokenizer, task, max_length) for s in ("train", "validation", split)}
    positions = first_subword_positions(feats["train"]) if task.kind == "token-classification" else None
    accelerator = make_accelerator(cfg.train)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    log_path = out / "train_log.jsonl"
    if not resume:
        log_path.unlink(missing_ok=True)

    stages = cfg.stages or [StageConfig(objectives=cfg.objectives)]
    summaries, citations = [], set()
    for n, stage in enumerate(stages):
        objective = build_objectives(stage.objectives or cfg.objectives or default_objectives(task.kind), task.kind)
        citations.update(objective.citations())
        train_cfg = cfg.train.model_copy(update={k: v for k, v in (("epochs", stage.epochs), ("learning_rate", stage.learning_rate)) if v is not None})
        trainable = apply_unfreeze(student, stage.unfreeze)
        online = not cfg.cache_teacher and objective.needs_teacher
        console.print(f"stage {n + 1}/{len(stages)} '{stage.name}': {', '.join(objective.names)}; "
                      f"{trainable:,} trainable parameters; {train_cfg.epochs} epochs at lr {train_cfg.learning_rate:g}")

        crf = getattr(student, "crf", None)

        def loss_fn(model, batch, objective=objective, online=online, crf=crf):
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            student_out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch})
            student_out["crf"] = crf  # a CRF tagger's gold loss is the CRF's likelihood
            teacher_out = None
            if objective.needs_teacher:
                if online:  # benchmark mode: the teacher runs on every batch, as most KD scripts do
                    with torch.inference_mode():
                        logits = teacher.model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}).logits
                    teacher_out = {"logits": logits.clone()}
                else:
                    teacher_out = {"logits": teacher_batch_logits(cached["train"], batch, task, positions).to(accelerator.device)}
            total, _ = objective(student_out, teacher_out, batch)
            return total

        def validate(model):
            logits = predict_logits(model, feats["validation"], tokenizer, task, cfg.train.eval_batch_size, student_forward)
            return task.metrics([e.label for e in data.validation], decode(task, logits, feats["validation"], crf_params(model)))

        loader = make_loader(feats["train"], tokenizer, task, train_cfg.batch_size, shuffle=True, seed=cfg.seed + n)
        summary = fit(student, loader, loss_fn, validate, train_cfg, accelerator, task.primary_metric, task.greater_is_better,
                      log_path, desc=f"{cfg.student.kind} {stage.name}", checkpoint_dir=out / f"checkpoint-stage{n + 1}", resume=resume)
        summaries.append({"stage": stage.name, **{k: v for k, v in summary.items() if k != "history"}})
        student = accelerator.unwrap_model(student)

    # Final evaluation of both models on the same split.
    s_logits = predict_logits(student, feats[split], tokenizer, task, cfg.train.eval_batch_size, student_forward)
    gold = [e.label for e in data.split(split)]
    crf = crf_params(student)
    s_preds = decode(task, s_logits, feats[split], crf)
    s_metrics = task.metrics(gold, s_preds)
    t_preds = teacher_predictions(task, cached[split])
    t_metrics = task.metrics(gold, t_preds)
    loyal = loyalty(task, np.asarray(cached[split].logits), word_logits(task, s_logits, feats[split]))
    if crf is not None:  # label loyalty of the Viterbi tags, not of the emissions' argmax
        loyal["label"] = float(np.mean([a == b for s, t in zip(s_preds, t_preds) for a, b in zip(s, t)]))
    pm = task.primary_metric
    retention = s_metrics[pm] / t_metrics[pm] if task.greater_is_better else t_metrics[pm] / s_metrics[pm]
    drop = lambda m: {k: v for k, v in m.items() if k != "per_class"}  # noqa: E731
    result = {
        "task": task.kind, "dataset": data.name, "split": split, "primary_metric": pm,
        "teacher": {"name": str(teacher_dir), "params": teacher.params, "metrics": drop(t_metrics)},
        "student": {"name": cfg.student.kind, "params": count_parameters(student),
                    "params_without_embeddings": count_parameters(student, exclude_embeddings=True),
                    "metrics": drop(s_metrics), "per_class": s_metrics.get("per_class"), "loyalty": loyal},
        "retention": retention,
        "compression": teacher.params / max(1, count_parameters(student)),
        "teacher_cache": {"hit": hit, "path": str(cached["train"].path) if "train" in cached else None,
                          "teacher_forward_calls": teacher.forward_calls},
        "stages": summaries,
        "citations": sorted(citations),
        "seconds": round(time.perf_counter() - started, 2),
        "notes": data.notes,
    }
    save_student(student, tokenizer, cfg.student, task, out)
    atomic_write_json(out / "metrics.json", result)
    return result
