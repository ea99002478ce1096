"""Study: what a transfer set buys small students with little labelled data (docs/studies/transfer-data.md).

For each fraction of movie-sentiment's labelled train (1 %, 5 %, 20 %, 100 %) the labelled
subset is written once (``ROOT/data-fF/``: the subset as train, the full validation and test
splits) and a teacher is fine-tuned on that same subset (``ROOT/teacher-fF``; ``--teacher-full``
reuses an existing teacher for 100 %). Then, for each student and seed, five settings:

- ``gold``: the student on the gold labels only (no teacher);
- ``kd``: logit KD (KL T=2 + gold, kdexam's default) on the labelled subset;
- ``kd+aug``: + augmented copies of the labelled subset (``--augment``, ``--augment-n``; cells with
  augmenters other than the default ``mask,ngram`` ×5 get their own run directories, e.g.
  ``f0.01-cnn-kd-aug-neighbours-n5-s1``);
- ``kd+unl``: + unlabelled movie-dialog lines (``--unlabelled movie-dialog --max-unlabelled``);
- ``kd+both``: both.

Each cell is one ``kdexam distill`` process at a fixed thread count, ``--jobs`` at a time; a cell
whose run directory holds ``metrics.json`` is skipped (the study resumes). Prints mean ± std over
seeds and writes every cell and the summary to ``--out`` (JSON).

    python bench/study_transfer.py --fractions 0.01 0.05 --students bilstm cnn --seeds 1 2 3 \\
        --jobs 1 --threads 1 --root runs/study-transfer --out bench/results/study_transfer.json
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SETTINGS = ["gold", "kd", "kd+aug", "kd+unl", "kd+both"]
STUDENT_FLAGS = {"bilstm": ["--embedding-dim", "192", "--hidden-size", "200"], "cnn": ["--embedding-dim", "192"]}


def run(cmd: list[str], out: Path) -> str | None:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    (out.parent / f"{out.name}.log").write_text(done.stderr)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["?"])[-1]
    print(f"{out.name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return None


def prepare_fraction(args, fraction: float) -> tuple[Path, Path]:
    """The labelled subset's data directory and its teacher (fine-tuned on that subset)."""
    from kdexam.data.builtin import prepare_dataset

    root = Path(args.root)
    tag = f"f{fraction:g}"
    data = root / f"data-{tag}"
    source = prepare_dataset(args.data)
    if not (data / "train.jsonl").is_file():
        data.mkdir(parents=True, exist_ok=True)
        train = (source / "train.jsonl").read_text(encoding="utf-8").splitlines()
        n = max(2, round(len(train) * fraction))
        (data / "train.jsonl").write_text("\n".join(train[:n]) + "\n", encoding="utf-8")  # built-in train is pre-shuffled
        for split in ("validation", "test"):
            shutil.copy(source / f"{split}.jsonl", data / f"{split}.jsonl")
    if fraction == 1.0 and args.teacher_full:
        return data, Path(args.teacher_full)
    teacher = root / f"teacher-{tag}"
    if not (teacher / "metrics.json").is_file():
        n = len((data / "train.jsonl").read_text(encoding="utf-8").splitlines())
        epochs = min(200, max(2, math.ceil(args.teacher_steps / math.ceil(n / 32))))
        err = run([args.kdexam, "teacher", "--data", str(data), "--model", args.model, "--out", str(teacher),
                   "--epochs", str(epochs), "--lr", str(args.teacher_lr), "--patience", "5",
                   "--num-threads", str(args.threads)], teacher)
        if err:
            raise SystemExit(f"teacher for fraction {fraction} failed: {err}")
    return data, teacher


def run_cell(args, fraction: float, data: Path, teacher: Path, student: str, setting: str, seed: int) -> dict:
    augmenters = ""
    if setting in ("kd+aug", "kd+both") and (args.augment, args.augment_n) != ("mask,ngram", 5):
        augmenters = f"-{args.augment.replace(',', '+')}-n{args.augment_n}"  # cells of other augmenters stand apart
    out = Path(args.root) / f"f{fraction:g}-{student}-{setting.replace('+', '-')}{augmenters}-s{seed}"
    cell = {"fraction": fraction, "student": student, "setting": setting, "seed": seed, "run": str(out)}
    if augmenters:
        cell.update(augment=args.augment, augment_n=args.augment_n)
    if not (out / "metrics.json").is_file():
        n = len((data / "train.jsonl").read_text(encoding="utf-8").splitlines())
        n *= 1 + (len(args.augment.split(",")) * args.augment_n if "aug" in setting or "both" in setting else 0)
        n += args.max_unlabelled if "unl" in setting or "both" in setting else 0
        epochs = min(300, max(10, math.ceil(args.student_steps / math.ceil(n / 32))))
        patience = max(3, math.ceil(args.patience_steps / math.ceil(n / 32)))
        cmd = [args.kdexam, "distill", "--resume", "--teacher", str(teacher), "--data", str(data), "--student", student,
               *STUDENT_FLAGS.get(student, []), "--out", str(out), "--seed", str(seed), "--num-threads", str(args.threads),
               "--epochs", str(epochs), "--patience", str(patience)]
        if setting == "gold":
            cmd += ["--objective", "gold"]
        if setting in ("kd+aug", "kd+both"):
            cmd += ["--augment", args.augment, "--augment-n", str(args.augment_n)]
        if setting in ("kd+unl", "kd+both"):
            cmd += ["--unlabelled", args.unlabelled, "--max-unlabelled", str(args.max_unlabelled)]
        err = run(cmd, out)
        if err:
            return {**cell, "error": err}
    m = json.loads((out / "metrics.json").read_text())
    pm = m["primary_metric"]
    return {**cell, pm: m["student"]["metrics"][pm], "retention": m["retention"], "label_loyalty": m["student"]["loyalty"]["label"],
            "teacher": m["teacher"]["metrics"][pm], "metric": pm, "seconds": m.get("seconds"),
            "transfer_examples": m.get("transfer", {}).get("total")}


def summarise(cells: list[dict]) -> list[dict]:
    rows = []
    keys = sorted({(c["fraction"], c["student"]) for c in cells})
    for fraction, student in keys:
        for setting in SETTINGS:
            group = [c for c in cells if (c["fraction"], c["student"], c["setting"]) == (fraction, student, setting) and "error" not in c]
            if not group:
                continue
            metric = group[0]["metric"]
            row = {"fraction": fraction, "student": student, "setting": setting, "n": len(group), "teacher": group[0]["teacher"],
                   "transfer_examples": group[0]["transfer_examples"], "seconds": statistics.mean(c["seconds"] or 0 for c in group)}
            for key in (metric, "retention", "label_loyalty"):
                values = [c[key] for c in group]
                row[key] = statistics.mean(values)
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="movie-sentiment")
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05, 0.2, 1.0])
    p.add_argument("--teacher-full", default=None, help="an existing teacher for fraction 1.0 (e.g. runs/teacher-ms)")
    p.add_argument("--students", nargs="+", default=["bilstm", "cnn"])
    p.add_argument("--settings", nargs="+", default=SETTINGS, choices=SETTINGS)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--augment", default="mask,ngram")
    p.add_argument("--augment-n", type=int, default=5)
    p.add_argument("--unlabelled", default="movie-dialog")
    p.add_argument("--max-unlabelled", type=int, default=5000)
    p.add_argument("--teacher-steps", type=int, default=400, help="teacher epochs: enough for this many steps (at least 2)")
    p.add_argument("--teacher-lr", type=float, default=1e-4)
    p.add_argument("--student-steps", type=int, default=1500, help="student epochs: enough for this many steps (at least 10)")
    p.add_argument("--patience-steps", type=int, default=400,
                   help="early-stopping patience: this many steps' worth of epochs (at least 3)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--root", default="runs/study-transfer")
    p.add_argument("--out", default="bench/results/study_transfer.json")
    p.add_argument("--kdexam", default=str(Path(sys.executable).with_name("kdexam")))
    args = p.parse_args()
    Path(args.root).mkdir(parents=True, exist_ok=True)
    grid = []
    for fraction in args.fractions:
        data, teacher = prepare_fraction(args, fraction)
        grid += [(fraction, data, teacher, s, setting, seed) for seed in args.seeds for s in args.students for setting in args.settings]
    with ThreadPoolExecutor(args.jobs) as pool:
        cells = list(pool.map(lambda c: run_cell(args, *c), grid))
    rows = summarise(cells)
    print("| labelled | student | setting | transfer examples | accuracy | retention | label loyalty | run time |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = next(k for k in r if k.endswith("_std") and k not in ("retention_std", "label_loyalty_std"))[:-4]
        print(f"| {r['fraction']:.0%} (teacher {r['teacher']:.4f}) | {r['student']} | {r['setting']} | {r['transfer_examples']:,} | "
              f"{r[m]:.4f} ± {r[m + '_std']:.4f} | {r['retention']:.3f} ± {r['retention_std']:.3f} | "
              f"{r['label_loyalty']:.3f} ± {r['label_loyalty_std']:.3f} | {r['seconds']:.0f} s |")
    for c in cells:
        if "error" in c:
            print(f"failed: {c}", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "cells": cells, "summary": rows}, indent=1))


if __name__ == "__main__":
    main()
