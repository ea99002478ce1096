"""Benchmark: a distillation run with cached teacher outputs against the same run with the
teacher evaluated on every batch (what most KD scripts do), measured in one process.

Three timings of the same student, data, seed and epochs:
  cold    — an empty cache: the teacher runs once over the transfer set, then training;
  warm    — the cache from the cold run is reused: the teacher does not run at all;
  online  — cache_teacher=False: the teacher's forward pass runs on every training batch.
All three read the teacher's test-split outputs for the final comparison; the cold run
computes them, the other two reuse them.
Prints a table and writes JSON with the ratios online/cold and online/warm.

    python bench/cache_speedup.py --teacher runs/teacher-ms --data movie-sentiment \
        --student bilstm --max-train 2000 --epochs 5 --out bench/results/cache_speedup.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def timed_run(**kw) -> tuple[float, dict]:
    from kdexam import api

    start = time.perf_counter()
    r = api.distill(**kw)
    return time.perf_counter() - start, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--data", default="movie-sentiment")
    ap.add_argument("--student", default="bilstm")
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", default="bench/results/cache_speedup.json")
    a = ap.parse_args()
    # a private cache, so the cold run really starts empty; built-in data is still read from the usual home
    from kdexam.data.builtin import BUILTIN_DATASETS, prepare_dataset

    data = str(prepare_dataset(a.data)) if a.data in BUILTIN_DATASETS else a.data
    os.environ["KDEXAM_HOME"] = tempfile.mkdtemp(prefix="kdexam-bench-")
    common = dict(teacher=a.teacher, data=data, student=a.student, max_train=a.max_train, epochs=a.epochs,
                  patience=a.epochs + 1, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        t_cold, r_cold = timed_run(out=Path(tmp) / "cold", **common)  # first: the cache is empty
        t_warm, r_warm = timed_run(out=Path(tmp) / "warm", **common)
        t_online, r_online = timed_run(out=Path(tmp) / "online", cache_teacher=False, **common)
    result = {
        "benchmark": "cache_speedup", "student": a.student, "data": a.data, "max_train": a.max_train, "epochs": a.epochs,
        "seconds": {"online": round(t_online, 2), "cold_cache": round(t_cold, 2), "warm_cache": round(t_warm, 2)},
        "speedup": {"online_over_cold": round(t_online / t_cold, 2), "online_over_warm": round(t_online / t_warm, 2)},
        "teacher_forward_calls": {"online": r_online["teacher_cache"]["teacher_forward_calls"],
                                  "cold_cache": r_cold["teacher_cache"]["teacher_forward_calls"],
                                  "warm_cache": r_warm["teacher_cache"]["teacher_forward_calls"]},
        "student_accuracy": {k: r["student"]["metrics"][r["primary_metric"]] for k, r in
                             (("online", r_online), ("cold_cache", r_cold), ("warm_cache", r_warm))},
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }
    print(json.dumps(result, indent=2))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
