"""Benchmark: training-step throughput of each student kind on CPU, with where a step's time goes.

Each kind is distilled as ``kdexam distill`` trains it (the same student build, objective,
length-bucketed loader, teacher outputs gathered from the cache, AdamW + linear schedule,
gradient clipping), but in a bare loop that times the parts of every step:

- ``collate``: the DataLoader producing the batch (indexing + :class:`~kdexam.data.encode.Collator`);
- ``teacher``: gathering the batch's teacher outputs from the cache (:class:`TeacherSide`);
- ``forward``: the student forward and the loss;
- ``backward``: ``loss.backward()``;
- ``optimizer``: clipping, ``AdamW.step``, the scheduler and ``zero_grad``.

Examples/second is over the timed steps (after ``--warmup`` steps), one thread
(``torch.set_num_threads``), batch 32 by default. ``--profile KIND`` also runs the torch
profiler over a few steps of that kind and prints its top operators.

    python bench/train_throughput.py --teacher exams/default/teachers/teacher-movie-sentiment-minilm-l6-dc2db290 \\
        --max-train 1000 --steps 40 --out bench/results/train_throughput.json [--profile bert-mini]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

KINDS = ("bilstm", "cnn", "static", "bert-mini", "teacher-layers:2")
PARTS = ("collate", "teacher", "forward", "backward", "optimizer")


def setup(teacher_dir: str, kind: str, max_train: int, batch_size: int, seed: int = 42, objective: str = "kl:temperature=4",
          device: str = "cpu"):
    """Everything a training step of ``kind`` needs, built the way ``kdexam distill`` builds it (the
    student on ``device``)."""
    from kdexam import api
    from kdexam.data.encode import encode, make_loader
    from kdexam.data.splits import load_data
    from kdexam.data.transfer import build_transfer_set
    from kdexam.objectives import ModelShape
    from kdexam.students.registry import build_student
    from kdexam.teachers.teacher import Teacher
    from kdexam.training.distill import build_stage_objective, training_teacher_side
    from kdexam.training.run_checks import check_data_fits_teacher, with_teacher_data
    from kdexam.training.distiller import Distiller
    from kdexam.training.stages import stages_of
    from kdexam.training.trainer import make_optimizer

    cfg = api.distill_config(teacher=teacher_dir, student=kind, out="/nonexistent", objective=[objective],
                             max_train=max_train, batch_size=batch_size, seed=seed)
    cfg = with_teacher_data(cfg, Path(teacher_dir))
    teacher = Teacher(teacher_dir, max_length=cfg.data.max_length)
    data_cfg = cfg.data.model_copy(update={"task": teacher.task.kind})
    data = load_data(data_cfg, seed)
    task = check_data_fits_teacher(data, teacher.task, Path(teacher_dir))
    transfer = build_transfer_set(cfg.transfer, data, task, seed, cfg.data, teacher_dir, teacher.tokenizer.mask_token)
    torch.manual_seed(seed)
    student, tokenizer = build_student(cfg.student, task, teacher_dir, train_texts=[e.text for e in transfer.examples])
    stage = stages_of(cfg, task.kind)[0]
    objective = build_stage_objective(stage, cfg, task, teacher, getattr(student, "shape", ModelShape()))
    feats = encode(transfer.examples, tokenizer, task, cfg.data.max_length)
    side = training_teacher_side(cfg, teacher, transfer, task, feats, set(objective.teacher_requires))
    loader = make_loader(feats, tokenizer, task, batch_size, shuffle=True, seed=seed)
    model = Distiller(student, objective).to(device)
    optimizer, scheduler = make_optimizer(model, cfg.train, 10_000)
    n_params = sum(p.numel() for p in student.parameters())
    return model, loader, side, optimizer, scheduler, cfg.train.max_grad_norm, n_params


def steps(model, loader, side, optimizer, scheduler, clip: float, n: int, bf16: bool = False, device: str = "cpu"):
    """Yield (examples, {part: seconds}) for ``n`` steps, cycling over epochs; ``bf16``: the forward
    and the loss under bf16 autocast, as ``--set train.mixed_precision=bf16`` runs them. On a GPU the batch's copy to it counts as collation, and the device is
    synchronised at each part's end, so each part holds its own kernels (the sum is a step without
    overlap between the host's work and the GPU's)."""
    dev = torch.device(device)

    def now() -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter()

    model.train()
    epoch = 0
    while True:
        loader.batch_sampler.set_epoch(epoch)
        it = iter(loader)
        while True:
            t = [now()]
            try:
                host_batch = next(it)
            except StopIteration:
                break
            batch = {k: v.to(dev) for k, v in host_batch.items()}
            t.append(now())
            teacher_out = side(host_batch, dev)
            t.append(now())
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(batch, teacher_out)[0]
            loss.item()
            t.append(now())
            loss.backward()
            t.append(now())
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            t.append(now())
            yield len(batch["index"]), {p: t[i + 1] - t[i] for i, p in enumerate(PARTS)}
            n -= 1
            if n == 0:
                return
        epoch += 1


def measure(kind: str, a) -> dict:
    model, loader, side, optimizer, scheduler, clip, n_params = setup(a.teacher, kind, a.max_train, a.batch_size,
                                                                      objective=a.objective, device=a.device)
    total = {p: 0.0 for p in PARTS}
    examples = 0
    for i, (n, parts) in enumerate(steps(model, loader, side, optimizer, scheduler, clip, a.warmup + a.steps, device=a.device)):
        if i < a.warmup:
            continue
        examples += n
        for p in PARTS:
            total[p] += parts[p]
    seconds = sum(total.values())
    row = {"kind": kind, "objective": a.objective, "parameters": n_params, "steps": a.steps, "examples": examples, "seconds": round(seconds, 3),
           "examples_per_second": round(examples / seconds, 1), "ms_per_step": round(1000 * seconds / a.steps, 1),
           "share": {p: round(total[p] / seconds, 3) for p in PARTS}}
    if a.profile == kind:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in steps(model, loader, side, optimizer, scheduler, clip, a.profile_steps):
                pass
        row["profile_top"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        print(row["profile_top"])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS))
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the steps' parts then end with a synchronisation)")
    ap.add_argument("--objective", default="kl:temperature=4", help="the loss (gold: the labels-only control)")
    ap.add_argument("--profile", help="also run the torch profiler over this kind")
    ap.add_argument("--profile-steps", type=int, default=10)
    ap.add_argument("--out", default="bench/results/train_throughput.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = [measure(kind, a) for kind in a.kinds]
    lines = ["| student | loss | parameters | examples/s | ms/step | collate | teacher gather | forward+loss | backward | clip+AdamW |",
             "|---" * 10 + "|"]
    for r in rows:
        s = r["share"]
        lines.append(f"| {r['kind']} | {r['objective']} | {r['parameters'] / 1e6:.2f}M | {r['examples_per_second']:.0f} | {r['ms_per_step']:.1f} | "
                     + " | ".join(f"{100 * s[p]:.0f} %" for p in PARTS) + " |")
    text = "\n".join(lines)
    print(text)
    report = {"benchmark": "train_throughput", "device": a.device, "threads": a.threads, "batch_size": a.batch_size, "max_train": a.max_train,
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows, "table": text}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
