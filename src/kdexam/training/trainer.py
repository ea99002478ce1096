"""The training loop: AdamW, warmup then decay, clipping, accumulation, mixed
precision (all through Accelerate), evaluation ``evals_per_epoch`` times an epoch,
early stopping on the primary metric, restore of the best weights, an optional
moving average of the weights (``ema_decay``), and full checkpoints for ``--resume``.

``fit`` knows nothing of teachers or students: it gets a model, a loader, a
``loss_fn(model, batch) -> loss`` and an ``evaluate(model) -> metrics`` callable.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from accelerate import Accelerator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import get_scheduler

from kdexam.config import TrainConfig
from kdexam.errors import KdexamError
from kdexam.parallel import attention_kernels
from kdexam.paths import json_text
from kdexam.training.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from kdexam.training.dropout import use_fast_dropout
from kdexam.training.sparse import Optimizers, clip_grad_norm

console = Console(stderr=True)


def resolve_precision(choice: str, low_precision_on_gpu: bool, cuda: bool, bf16: bool) -> str:
    """``mixed_precision`` as Accelerate takes it: ``auto`` is ``bf16`` (``fp16`` where the GPU lacks
    bf16) on a GPU when ``low_precision_on_gpu``, else ``no``; any other choice as it is."""
    if choice != "auto":
        return choice
    if not (low_precision_on_gpu and cuda):
        return "no"
    return "bf16" if bf16 else "fp16"


def make_accelerator(cfg: TrainConfig, low_precision_on_gpu: bool = False) -> Accelerator:
    """CPU or GPU; ``mixed_precision: auto`` is bf16 (else fp16) autocast on a GPU when
    ``low_precision_on_gpu`` (teacher fine-tuning asks for it), fp32 otherwise (students: on an H200,
    at batch 32, bf16 autocast made the step of every student kind slower, 0.75-0.94x, and a 10-epoch
    bert-mini run 14.4 s against 12.6 s in fp32; docs/benchmarks.md). Under ``torchrun`` / ``accelerate
    launch`` it is one of several data-parallel processes (gloo on CPUs, NCCL on GPUs; see
    docs/scaling.md)."""
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.mixed_precision, low_precision_on_gpu, cuda, cuda and torch.cuda.is_bf16_supported())
    # Accelerate keeps one mixed-precision setting per process and refuses another; each kdexam run (several in one
    # process from the API or an exam) sets its own. Only that state is reset: the process group (PartialState) stays.
    AcceleratorState._reset_state()
    # cpu=True lets Accelerate see a torchrun launch on a machine without a GPU (else it runs alone);
    # unused parameters (a pooling a student does not use for this task) must not stall the gradient all-reduce
    # split_batches: the processes share each batch (see shard), so the LR schedule steps once per batch
    # gradient accumulation is fit's own (windows within an epoch), not Accelerate's (a count across epochs and stages)
    return Accelerator(mixed_precision=precision,
                       cpu=not torch.cuda.is_available(), dataloader_config=DataLoaderConfiguration(split_batches=True),
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def shard(batch: dict, accelerator: Accelerator) -> dict:
    """This process's rows of a batch: every ``num_processes``-th row from its ``process_index``.
    The processes share each batch of the single-process run (same padding), and the averaged
    gradient is that batch's gradient (exactly, when the rows divide evenly)."""
    n = accelerator.num_processes
    return batch if n == 1 else {k: v[accelerator.process_index::n] for k, v in batch.items()}


def fused_adamw() -> dict:
    """``fused=True`` where this PyTorch has the fused AdamW kernel on CPU as well as GPU (2.4 on):
    one kernel over every parameter instead of a loop of per-tensor operations. On one CPU thread
    the update of bert-mini (11M parameters, most of them its 30k-row embedding) takes 7 ms fused
    against 52 ms in the default loop, about a fifth of a training step (bench/train_throughput.py)."""
    major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    return {"fused": True} if (major, minor) >= (2, 4) else {}


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
    """AdamW (fused where available) without weight decay on biases and LayerNorm weights; warmup then
    ``cfg.scheduler`` decay. A module with an ``lr_scale`` attribute (the static student's bigram
    table) has its parameters trained at that multiple of ``cfg.learning_rate``. An embedding built
    with ``sparse=True`` is stepped by the lazy ``SparseAdam`` instead, in one :class:`Optimizers`
    with AdamW (:mod:`kdexam.training.sparse`; no weight decay there)."""
    scales = {id(p): m.lr_scale for m in model.modules() if getattr(m, "lr_scale", None) is not None for p in m.parameters()}
    sparse = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse for p in m.parameters()}
    grouped: dict[tuple[float, bool], list] = {(1.0, True): [], (1.0, False): []}  # (scale, decays): always these two first
    lazy: dict[float, list] = {}
    for p in model.parameters():
        if p.requires_grad and id(p) in sparse:
            lazy.setdefault(scales.get(id(p), 1.0), []).append(p)
        elif p.requires_grad:
            grouped.setdefault((scales.get(id(p), 1.0), p.ndim >= 2), []).append(p)
    groups = [{"params": params, "weight_decay": cfg.weight_decay if decays else 0.0, "lr": cfg.learning_rate * scale}
              for (scale, decays), params in grouped.items()]
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, **fused_adamw())
    if lazy:
        optimizer = Optimizers(optimizer, torch.optim.SparseAdam(
            [{"params": params, "lr": cfg.learning_rate * scale} for scale, params in lazy.items()], lr=cfg.learning_rate))
    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[cfg.scheduler]
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps), num_training_steps=total_steps)
    return optimizer, scheduler


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=False,
    )


def skip_nonfinite(pos: dict, cfg: TrainConfig, desc: str, epoch: int, step: int, checkpoint_dir: Path | None, out) -> None:
    """A NaN or infinite loss: its step is skipped (no update) with a warning; after
    ``cfg.max_nonfinite_steps`` in a row the run stops with a sentence, its last checkpoint kept."""
    pos["nonfinite"] = pos.get("nonfinite", 0) + 1
    pos["skipped"] = pos.get("skipped", 0) + 1
    out.print(f"[yellow]{desc}: non-finite loss at epoch {epoch + 1} step {step}; step skipped "
              f"({pos['nonfinite']} in a row, stop at {cfg.max_nonfinite_steps})[/]")
    if pos["nonfinite"] >= cfg.max_nonfinite_steps:
        kept = (f"; the last good checkpoint is kept in {checkpoint_dir}" if checkpoint_dir and find_checkpoint(checkpoint_dir)
                else "")
        raise KdexamError(f"{desc}: the loss was NaN or infinite for {pos['nonfinite']} steps in a row (epoch {epoch + 1}, step "
                          f"{step}){kept}; lower the learning rate (--lr), check the data for extreme values, or turn off "
                          "mixed precision (--set train.mixed_precision=no).")


POLYAK_1992 = r"""@article{polyak1992acceleration,
  title={Acceleration of Stochastic Approximation by Averaging},
  author={Polyak, Boris T. and Juditsky, Anatoli B.},
  journal={SIAM Journal on Control and Optimization},
  volume={30},
  number={4},
  pages={838--855},
  year={1992},
}"""


class WeightAverage:
    """An exponential moving average of a model's weights (Polyak & Juditsky 1992, "Acceleration of
    Stochastic Approximation by Averaging"), updated after every optimizer step ``t``:

    .. math::

        \\bar\\theta \\leftarrow d_t \\, \\bar\\theta + (1 - d_t) \\, \\theta, \\qquad
        d_t = \\min\\left(d, \\frac{1 + t}{10 + t}\\right)

    (the warm-up of ``d_t`` is TensorFlow's ``ExponentialMovingAverage(num_updates=t)``: early steps are not
    dominated by the initial weights). Integer buffers (vocabulary id maps) are copied, not averaged.
    ``torch.optim.swa_utils.AveragedModel`` keeps a second module; this keeps one state dict and swaps it
    into the model for evaluation (:meth:`applied`), so evaluation and saving see the one model they expect."""

    def __init__(self, model: torch.nn.Module, decay: float, state: dict | None = None, updates: int = 0):
        self.decay = decay
        self.updates = updates
        self.state = state if state is not None else {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            mine = self.state[k]
            if mine.is_floating_point():
                mine.lerp_(v.detach().to(mine.device), 1.0 - d)
            else:
                mine.copy_(v)

    @contextmanager
    def applied(self, model: torch.nn.Module):
        """The averaged weights in ``model`` for the duration of the block; its own weights afterwards."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield model
        finally:
            model.load_state_dict(own)


def sparse_tables(model: torch.nn.Module, accelerator: Accelerator) -> bool:
    """Whether the model trains sparse embedding tables (``training/sparse.py``) in this process; in a
    data-parallel launch they are made dense, since the gradient all-reduce takes dense gradients."""
    tables = [m for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]
    if accelerator.num_processes > 1:
        for m in tables:
            m.sparse = False
    return bool(tables) and accelerator.num_processes == 1


def starting_point(model, optimizer, scheduler, accelerator: Accelerator, cfg: TrainConfig, checkpoint_dir: Path | None,
                   resume: bool, log_start: int | None) -> tuple[dict, dict | None, WeightAverage | None, int | None]:
    """Where :func:`fit` starts: ``pos`` (epoch, batch, step, best score, history, …), the best weights
    so far, the weight average (``cfg.ema_decay``), and how many bytes of the log to keep (None: all);
    from the stage's last checkpoint when resuming and there is one, else from the beginning."""
    pos = {"epoch": 0, "batch": 0, "step": 0, "best": None, "best_at": None, "bad": 0, "history": [],
           "seconds": 0.0, "running": 0.0, "seen": 0, "stopped": False}
    best_state = average = None
    keep_log = log_start if resume else None
    if resume and checkpoint_dir and (found := find_checkpoint(checkpoint_dir)):
        pos, best_state, saved_average = load_checkpoint(found, accelerator.unwrap_model(model), optimizer, scheduler,
                                                       scaler=accelerator.scaler)
        if cfg.ema_decay and saved_average is not None:
            average = WeightAverage(accelerator.unwrap_model(model), cfg.ema_decay, saved_average, pos.get("averaged", 0))
        keep_log = pos.get("log_bytes")
        console.print(f"resuming from {found}: epoch {pos['epoch'] + 1}, batch {pos['batch']}")
    if cfg.ema_decay and average is None:
        average = WeightAverage(accelerator.unwrap_model(model), cfg.ema_decay)
    return pos, best_state, average, keep_log


def open_log(log_path: Path, keep_log: int | None):
    """The training log, opened to append, first cut to its first ``keep_log`` bytes (a resume logs
    the evaluations after its checkpoint again as it repeats them)."""
    if keep_log is not None and log_path.is_file() and log_path.stat().st_size > keep_log:
        with open(log_path, "r+b") as f:
            f.truncate(keep_log)
    return open(log_path, "a", encoding="utf-8")


def optimizer_step(model, optimizer, scheduler, accelerator: Accelerator, max_grad_norm: float | None, sparse_grads: bool,
                   average: WeightAverage | None) -> None:
    """One step on a window's accumulated gradients: clipped to ``max_grad_norm`` (by the joint norm of
    sparse and dense gradients where the model has sparse tables: torch's clipping refuses them), then
    the optimizer, the LR schedule and the weight average."""
    if max_grad_norm and sparse_grads:
        accelerator.unscale_gradients()
        clip_grad_norm(model.parameters(), max_grad_norm)
    elif max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    if average is not None:
        average.update(accelerator.unwrap_model(model))


def evaluate_model(model, evaluate: Callable[[torch.nn.Module], dict], average: WeightAverage | None,
                   accelerator: Accelerator) -> dict:
    """``evaluate(model)``, with the averaged weights in the model when there is an average; the model
    is left in training mode."""
    if average is None:
        metrics = evaluate(model)
    else:
        with average.applied(accelerator.unwrap_model(model)):
            metrics = evaluate(model)
    model.train()
    return metrics


def improves(score: float, best: float | None, greater_is_better: bool) -> bool:
    """Whether a validation ``score`` beats the ``best`` so far (a NaN never does)."""
    return math.isfinite(score) and (best is None or (score > best if greater_is_better else score < best))


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
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    log_start: int | None = 0,
) -> dict:
    """Train ``model`` in place and leave it holding its best weights; return a summary.

    With ``cfg.gradient_accumulation_steps`` = k, each epoch's batches form windows of k (the last
    one shorter when k does not divide the epoch), and the optimizer steps once per window on the
    mean of its batches' losses: windows never span two epochs or two stages, so a checkpoint (taken
    only at a window's end) resumes exactly, and the LR schedule's steps are the windows.

    ``log_start``: where this stage's lines begin in ``log_path`` (0 for a run's first stage). A
    resume drops the lines after its checkpoint, or, with no checkpoint to resume from, every line
    of this stage (the stage is trained again from its start and logs them again)."""
    accumulate = cfg.gradient_accumulation_steps
    model.zero_grad(set_to_none=True)  # (nothing left over from an earlier stage)
    use_fast_dropout(model)  # the same dropout, its CPU mask drawn ~4x faster (training/dropout.py)
    sparse_grads = sparse_tables(model, accelerator)
    optimizer, scheduler = make_optimizer(model, cfg, math.ceil(len(loader) / accumulate) * cfg.epochs)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    pos, best_state, average, keep_log = starting_point(model, optimizer, scheduler, accelerator, cfg, checkpoint_dir,
                                                        resume, log_start)

    written = {"step": None}

    def checkpoint() -> None:
        if checkpoint_dir:
            written["step"] = pos["step"]
            pos["seconds"] = time.perf_counter() - start
            if average is not None:
                pos["averaged"] = average.updates
            if log_path and accelerator.is_main_process and log_path.is_file():
                if log is not None and not log.closed:
                    log.flush()
                pos["log_bytes"] = log_path.stat().st_size  # a resume drops the log lines written after this point
            if accelerator.is_main_process:  # one writer; the others wait until it is whole
                save_checkpoint(checkpoint_dir, accelerator.unwrap_model(model), optimizer, scheduler, pos, best_state,
                                average=average.state if average is not None else None, scaler=accelerator.scaler)
            accelerator.wait_for_everyone()

    eval_at = {round(len(loader) * k / cfg.evals_per_epoch) for k in range(1, cfg.evals_per_epoch + 1)}
    start = time.perf_counter() - pos["seconds"]
    log_file = open_log(log_path, keep_log) if log_path and accelerator.is_main_process else nullcontext()
    with log_file as log, progress_bar() as bar, attention_kernels(accelerator.device):
        total = len(loader) * cfg.epochs
        job = bar.add_task(desc, total=total, completed=pos["step"], info="")
        log_every = max(1, total // 20)
        for epoch in range(pos["epoch"], cfg.epochs):
            if pos["stopped"]:
                break
            loader.batch_sampler.set_epoch(epoch, skip=pos["batch"])
            model.train()
            for i, batch in enumerate(loader, start=pos["batch"] + 1):
                first = (i - 1) // accumulate * accumulate + 1  # this batch's accumulation window: batches first..last
                last = min(first + accumulate - 1, len(loader))
                sync = i == last
                with nullcontext() if sync or accelerator.num_processes == 1 else accelerator.no_sync(model):
                    loss = loss_fn(model, shard(batch, accelerator))
                    value = loss.item()  # the one device sync of the step (the running loss uses it too)
                    finite = math.isfinite(value)
                    if accelerator.num_processes > 1:  # every process skips, or none: a lone skip would stall the all-reduce
                        finite = bool(accelerator.gather(torch.tensor([float(finite)], device=loss.device)).min().item())
                    if finite:
                        accelerator.backward(loss / (last - first + 1))
                        pos["window"] = pos.get("window", 0) + 1
                if sync and pos.get("window"):  # (a window whose every loss was non-finite takes no step)
                    optimizer_step(model, optimizer, scheduler, accelerator, cfg.max_grad_norm, sparse_grads, average)
                if sync:
                    optimizer.zero_grad()
                    pos["window"] = 0
                if finite:
                    pos.update(running=pos["running"] + value, seen=pos["seen"] + 1, nonfinite=0)
                else:
                    skip_nonfinite(pos, cfg, desc, epoch, pos["step"] + 1, checkpoint_dir, bar.console)
                pos.update(batch=i, step=pos["step"] + 1)
                step, train_loss = pos["step"], pos["running"] / max(1, pos["seen"])
                info = f"epoch {epoch + 1} loss {train_loss:.4f} {step / (time.perf_counter() - start):.2f} it/s"
                bar.update(job, advance=1, info=info)
                if not bar.console.is_terminal and step % log_every == 0:  # a log file gets plain lines
                    bar.console.print(f"{desc}: step {step}/{total} {info}")
                if i in eval_at:
                    metrics = evaluate_model(model, evaluate, average, accelerator)
                    score = metrics[primary_metric]
                    record = {"epoch": epoch + 1, "step": step, "train_loss": train_loss, "validation": metrics,
                              "seconds": round(time.perf_counter() - start, 2)}
                    pos["history"].append(record)
                    if log:
                        log.write(json_text(record) + "\n")
                        log.flush()
                    bar.console.print(f"[dim]{desc}[/] epoch {epoch + 1} step {step}: train loss {train_loss:.4f}, "
                                      f"validation {primary_metric} {score:.4f}")
                    pos.update(running=0.0, seen=0)
                    if improves(score, pos["best"], greater_is_better):
                        pos.update(best=score, best_at={"epoch": epoch + 1, "step": step}, bad=0)
                        weights = accelerator.unwrap_model(model).state_dict() if average is None else average.state
                        best_state = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}
                    else:
                        pos["bad"] += 1
                        if pos["bad"] >= cfg.patience:
                            pos["stopped"] = True
                            bar.console.print(f"[dim]{desc}[/] early stop: no gain in {primary_metric} for {cfg.patience} evaluations")
                if i == len(loader):
                    pos.update(epoch=epoch + 1, batch=0)
                # a checkpoint every N steps (after each evaluation when N is 0), never while losses are
                # non-finite: the last checkpoint stays a good one
                due = step % cfg.checkpoint_every == 0 if cfg.checkpoint_every else i in eval_at
                if due and sync and not pos.get("nonfinite"):  # (at a window's end: no gradient half accumulated)
                    checkpoint()
                if pos["stopped"]:
                    break
            pos.update(epoch=epoch + 1, batch=0)
    if cfg.keep_checkpoint and written["step"] != pos["step"]:
        checkpoint()  # the kept checkpoint is the finished run's
    if (kept := best_state if best_state is not None else average.state if average is not None else None) is not None:
        accelerator.unwrap_model(model).load_state_dict(kept)
    accelerator.wait_for_everyone()
    if checkpoint_dir and not cfg.keep_checkpoint and accelerator.is_main_process:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return {"best_validation": pos["best"], "best_at": pos["best_at"], "steps": pos["step"], "skipped_steps": pos.get("skipped", 0),
            "train_seconds": round(time.perf_counter() - start, 2), "history": pos["history"]}
