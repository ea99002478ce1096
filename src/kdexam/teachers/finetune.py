"""Fine-tune an encoder as the teacher for a task (``kdexam teacher``).

AdamW with linear warmup and decay, early stopping on the validation metric, the
best checkpoint restored, then metrics on test. The run directory gets
``config.yaml``, ``metrics.json``, ``task.json``, ``train_log.jsonl`` and the model
(``model.safetensors`` + ``config.json`` + tokenizer files). Its logits on the scored split go to
the teacher cache (:func:`kdexam.teachers.teacher.store_scored_logits`), where a student run
reads them instead of running the teacher on that split again.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from accelerate.utils import set_seed
from rich.console import Console
from rich.markup import escape

from kdexam.config import TeacherRunConfig, save_config
from kdexam.data.encode import encode, make_loader
from kdexam.data.splits import load_data
from kdexam.errors import KdexamError
from kdexam.evaluation.card import refresh_card
from kdexam.evaluation.predict import evaluate
from kdexam.paths import atomic_write_json, plain_mode, temp_prefix
from kdexam.rundir import INPUTS_FILE, check_out, check_same_inputs, clear_replaced, finished_run, with_absolute_paths
from kdexam.students.registry import count_parameters
from kdexam.teachers.loader import allow_remote_code, fit_max_length, load_for_task, load_tokenizer
from kdexam.teachers.teacher import store_scored_logits
from kdexam.training.checkpoint import load_stage, save_stage
from kdexam.training.trainer import fit, make_accelerator

console = Console(stderr=True)


def inputs_fingerprint(model: str, examples: list, task, max_length: int) -> str:
    """One key for what the run trains on: the base model's files (a hub id: its commit) and the
    training and validation examples in order (:func:`kdexam.teachers.cache.fingerprint`)."""
    from kdexam.teachers.builtin_models import resolve_model
    from kdexam.teachers.cache import fingerprint, model_key

    return fingerprint(model_key(Path(resolve_model(model)), model), examples, task, max_length)


def finetune_teacher(cfg: TeacherRunConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Fine-tune ``cfg.model`` on ``cfg.data``; write the run directory ``cfg.out``; return metrics.
    ``resume``: continue the run in ``cfg.out``; ``overwrite``: replace a different run there."""
    if not cfg.out:
        raise KdexamError("No output directory given; pass --out DIR.")
    out = Path(cfg.out)
    cfg = with_absolute_paths(cfg)  # (config.yaml is read from other folders: export, bench, evaluate)
    replace = check_out(cfg, out, {"model": cfg.model, "data": cfg.data.name}, resume, overwrite)
    if (done := finished_run(out, resume)) is not None:
        return done
    allow_remote_code(cfg.trust_remote_code)
    set_seed(cfg.seed)
    started = time.perf_counter()
    data = load_data(cfg.data, cfg.seed)
    task = data.task
    for note in data.notes:
        console.print(f"[dim]data:[/] {note}")
    console.print(f"[bold]{data.name}[/]: {task.kind}, {len(data.train)} train / {len(data.validation)} validation / "
                  f"{len(data.test) if data.test else 0} test, primary metric {task.primary_metric}")
    tokenizer = load_tokenizer(cfg.model)
    model = load_for_task(cfg.model, task)
    max_length = fit_max_length(cfg.data.max_length, getattr(model.config, "max_position_embeddings", None), tokenizer,
                                str(cfg.model))
    accelerator = make_accelerator(cfg.train, low_precision_on_gpu=True)  # (auto: bf16, else fp16, on a GPU)

    enc = {s: encode(data.split(s), tokenizer, task, max_length) for s in ("train", "validation", "test") if data.split(s)}
    loader = make_loader(enc["train"], tokenizer, task, cfg.train.batch_size, shuffle=True, seed=cfg.seed)

    def loss_fn(m, batch):
        inputs = {k: v.to(accelerator.device) for k, v in batch.items() if k != "index"}
        return m(**inputs).loss

    def validate(m):
        return evaluate(m, enc["validation"], data.validation, tokenizer, task, cfg.train.eval_batch_size)[0]

    inputs = inputs_fingerprint(str(cfg.model), data.train + data.validation, task, max_length)
    check_same_inputs(out, inputs, resume)
    clear_replaced(out, replace, accelerator)
    out.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:  # first: a --resume with another config is refused (check_out compares it)
        save_config(cfg, out / "config.yaml")
        atomic_write_json(out / INPUTS_FILE, {"fingerprint": inputs})
    log_path = out / "train_log.jsonl"
    if not resume:
        log_path.unlink(missing_ok=True)
    trained = out / "stage1-done"  # the trained weights, kept until metrics.json is written: a kill while scoring
    summary = load_stage(trained, model) if resume else None  # does not cost the training
    if summary is None:
        summary = fit(model, loader, loss_fn, validate, cfg.train, accelerator, task.primary_metric,
                      task.greater_is_better, log_path, desc=f"teacher {Path(str(cfg.model)).name}",
                      checkpoint_dir=out / "checkpoint", resume=resume)
        if accelerator.is_main_process:
            save_stage(trained, accelerator.unwrap_model(model), {k: v for k, v in summary.items() if k != "history"})
        accelerator.wait_for_everyone()
    else:
        console.print(f"training finished in an earlier run: not trained again ({trained})")
    model = accelerator.unwrap_model(model)

    split = data.eval_split
    metrics, logits = evaluate(model, enc[split], data.split(split), tokenizer, task, cfg.train.eval_batch_size)
    result = {
        "task": task.kind, "dataset": data.name, "split": split, "primary_metric": task.primary_metric,
        "teacher": {"name": str(cfg.model), "params": count_parameters(model),
                    "metrics": {k: v for k, v in metrics.items() if k != "per_class"},
                    "per_class": metrics.get("per_class"),
                    "best_validation": summary["best_validation"], "best_at": summary["best_at"],
                    "train_seconds": summary["train_seconds"], "total_seconds": round(time.perf_counter() - started, 2)},
        "notes": data.notes,
    }
    if accelerator.is_main_process:  # in a parallel launch, one process writes the run's files
        save_model(model, tokenizer, out)
        atomic_write_json(out / "task.json", task.to_dict())
        if accelerator.mixed_precision == "no":  # (fp32 logits: what a student's teacher pass would compute)
            try:
                store_scored_logits(out, data.split(split), enc[split], logits, task, max_length)
            except (OSError, KdexamError) as e:  # (a saving for later runs: never the teacher run's failure)
                console.print(f"[yellow]teacher cache:[/] the {split} logits were not stored ({escape(str(e))}); student runs compute them")
        atomic_write_json(out / "metrics.json", result)
        if not cfg.train.keep_checkpoint:
            shutil.rmtree(trained, ignore_errors=True)
        refresh_card(out)
    accelerator.wait_for_everyone()
    return result


def save_model(model, tokenizer, out: Path) -> None:
    """Save weights (safetensors), config and tokenizer through a temporary directory, then move
    the files in, so an interrupted save leaves the previous model intact."""
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=temp_prefix("model")))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for f in tmp.iterdir():
            if f.is_file():
                plain_mode(f)
            f.replace(out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
