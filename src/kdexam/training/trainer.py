"""The training loop: AdamW, warmup then decay, clipping, accumulation, mixed
precision (all through Accelerate), evaluation ``evals_per_epoch`` times an epoch,
early stopping on the primary metric and restore of the best weights.

``fit`` knows nothing of teachers or students: it gets a model, a loader, a
``loss_fn(model, batch) -> loss`` and an ``evaluate(model) -> metrics`` callable.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import get_scheduler

from kdexam.config import TrainConfig

console = Console(stderr=True)


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """CPU or GPU, with bf16/fp16 autocast on GPU when ``mixed_precision`` is ``auto``."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "no"
        if torch.cuda.is_available():
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.gradient_accumulation_steps)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
    """AdamW without weight decay on biases and LayerNorm weights; warmup then ``cfg.scheduler`` decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[cfg.scheduler]
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps), num_training_steps=total_steps)
    return optimizer, scheduler


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=False,
    )


def fit(
    model: torch.nn.Module,
    loader,
    loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor],
    evaluate: Callable[[torch.nn.Module], dict],
    cfg: TrainConfig,
    accelerator: Accelerator,
    primary_metric: str,
    greater_is_better: bool = True,
    log_path: Path | None = None,
    desc: str = "train",
) -> dict:
    """Train ``model`` in place and leave it holding its best weights; return a summary."""
    steps_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)
    optimizer, scheduler = make_optimizer(model, cfg, steps_per_epoch * cfg.epochs)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    eval_at = {round(len(loader) * k / cfg.evals_per_epoch) for k in range(1, cfg.evals_per_epoch + 1)}
    best, best_state, best_at, bad, history = None, None, None, 0, []
    start, step, stop = time.perf_counter(), 0, False
    log = open(log_path, "a", encoding="utf-8") if log_path else None
    with progress_bar() as bar:
        job = bar.add_task(desc, total=len(loader) * cfg.epochs, info="")
        for epoch in range(cfg.epochs):
            loader.batch_sampler.set_epoch(epoch)
            model.train()
            running, seen = 0.0, 0
            for i, batch in enumerate(loader, start=1):
                with accelerator.accumulate(model):
                    loss = loss_fn(model, batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                step += 1
                running, seen = running + loss.item(), seen + 1
                rate = step / (time.perf_counter() - start)
                bar.update(job, advance=1, info=f"epoch {epoch + 1} loss {running / seen:.4f} {rate:.2f} it/s")
                if i not in eval_at:
                    continue
                metrics = evaluate(model)
                score = metrics[primary_metric]
                record = {"epoch": epoch + 1, "step": step, "train_loss": running / seen, "validation": metrics,
                          "seconds": round(time.perf_counter() - start, 2)}
                history.append(record)
                if log:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                bar.console.print(f"[dim]{desc}[/] epoch {epoch + 1} step {step}: train loss {running / seen:.4f}, "
                                  f"validation {primary_metric} {score:.4f}")
                running, seen = 0.0, 0
                improved = best is None or (score > best if greater_is_better else score < best)
                if improved:
                    best, best_at, bad = score, {"epoch": epoch + 1, "step": step}, 0
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in accelerator.unwrap_model(model).state_dict().items()}
                else:
                    bad += 1
                    if bad >= cfg.patience:
                        stop = True
                        break
                model.train()
            if stop:
                bar.console.print(f"[dim]{desc}[/] early stop: no gain in {primary_metric} for {cfg.patience} evaluations")
                break
    if log:
        log.close()
    unwrapped = accelerator.unwrap_model(model)
    if best_state is not None:
        unwrapped.load_state_dict(best_state)
    return {"best_validation": best, "best_at": best_at, "steps": step,
            "train_seconds": round(time.perf_counter() - start, 2), "history": history}
