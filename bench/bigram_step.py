"""Benchmark: one training step of the static student without bigrams, with the 65,536-bucket
bigram table updated densely (AdamW, as before 2026-12-04), and with it updated lazily (sparse
gradient, SparseAdam; kdexam's way now), split into backward, clipping, update and zeroing.

A 13,000-token, 256-d table (movie-sentiment's trimmed vocabulary is about that size), batches of
32 × 27 random ids (its mean length), ``make_optimizer`` as ``fit`` builds it, one thread; each
variant runs ``--steps`` steps after ``--warmup``, and the three alternate ``--rounds`` times.

    python bench/bigram_step.py --out bench/results/bigram_step.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from kdexam.config import TrainConfig
from kdexam.students.static import StaticConfig, StaticStudent
from kdexam.training.sparse import clip_grad_norm
from kdexam.training.trainer import make_optimizer

PARTS = ("forward+backward", "clip", "update", "zero_grad")


def measure(buckets: int, sparse: bool, steps: int, warmup: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = StaticStudent(StaticConfig(vocab_size=13_000, embedding_dim=256, num_labels=2, ngram_buckets=buckets))
    if model.bigram is not None:
        model.bigram.sparse = sparse
    optimizer, scheduler = make_optimizer(model, TrainConfig(), 10_000)
    batches = [torch.randint(0, 13_000, (32, 27)) for _ in range(20)]
    labels = torch.zeros(32, dtype=torch.long)
    totals = dict.fromkeys(PARTS, 0.0)
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        torch.nn.functional.cross_entropy(model(batches[i % 20])["logits"], labels).backward()
        t1 = time.perf_counter()
        if buckets and sparse:  # (torch's clipping refuses sparse gradients)
            clip_grad_norm(model.parameters(), 1.0)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        t2 = time.perf_counter()
        optimizer.step()
        scheduler.step()
        t3 = time.perf_counter()
        optimizer.zero_grad()
        t4 = time.perf_counter()
        if i >= warmup:
            for part, seconds in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                totals[part] += seconds
    ms = {part: round(1000 * s / steps, 2) for part, s in totals.items()}
    return {**ms, "ms_per_step": round(sum(ms.values()), 2), "optimizer": type(optimizer).__name__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench/results/bigram_step.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    variants = {"no bigrams": (0, True), "bigrams, dense AdamW": (65_536, False), "bigrams, lazy SparseAdam": (65_536, True)}
    rows = []
    for r in range(a.rounds):
        for name, (buckets, sparse) in variants.items():
            rows.append({"round": r + 1, "variant": name, **measure(buckets, sparse, a.steps, a.warmup)})
    print("| variant | " + " | ".join(PARTS) + " | ms a step (median of rounds) |")
    print("|---|" + "---|" * (len(PARTS) + 1))
    summary = {}
    for name in variants:
        mine = sorted((r for r in rows if r["variant"] == name), key=lambda r: r["ms_per_step"])
        mid = mine[len(mine) // 2]
        summary[name] = mid
        print(f"| {name} | " + " | ".join(f"{mid[p]:.2f}" for p in PARTS) + f" | {mid['ms_per_step']:.2f} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"benchmark": "bigram_step", "torch": torch.__version__, "threads": 1, "steps": a.steps,
                                       "rows": rows, "median": summary}, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
