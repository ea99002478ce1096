"""Study: which knowledge and which initialisation for a 3-layer student (docs/studies/objectives-and-init.md).

A grid of ``kdexam distill`` runs, one fresh process each at a fixed thread count, ``--jobs``
at a time; a cell whose run directory already holds ``metrics.json`` is skipped, so an
interrupted study resumes. Prints the table (mean ± std over seeds of the test metric,
retention and label loyalty) and writes every cell and the summary to ``--out`` (JSON).

    python bench/study_objectives_init.py --teacher runs/teacher-ms --data movie-sentiment \\
        --max-train 2000 --epochs 3 --seeds 1 2 3 --jobs 2 --threads 1 --root runs/study-oi \\
        --out bench/results/study_objectives_init.json

Objectives (each on top of logit KD = KL at T=2 (0.5) + gold cross-entropy (0.5); every
intermediate term weight 1, uniform layer mapping student i ↔ teacher 2i):
logits, +hidden (hidden_mse), +attention (attention_kl), +value (value_relation).
Initialisations of ``teacher-layers:3``: lower (teacher layers 1-3), upper (4-6), uniform
(1, 4, 6), random (the same architecture, random weights). ``--init-from NAME=DIR`` adds an
initialisation from a general-distilled encoder (``kdexam distill --general``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

KD = [{"name": "kl", "temperature": 2.0, "weight": 0.5}, {"name": "gold", "weight": 0.5}]
OBJECTIVES = {
    "logits": KD,
    "+hidden": KD + [{"name": "hidden_mse", "weight": 1.0, "layers": "uniform"}],
    "+attention": KD + [{"name": "attention_kl", "weight": 1.0, "layers": "uniform"}],
    "+value": KD + [{"name": "value_relation", "weight": 1.0, "layers": "uniform"}],
}
INITS = ["lower", "upper", "uniform", "random"]


def run_cell(args, objective: str, init: str, seed: int, encoder: str | None) -> dict:
    out = Path(args.root) / f"{objective.strip('+')}-{init}-s{seed}"
    if not (out / "metrics.json").is_file():
        cmd = [args.kdexam, "distill", "--resume", "--teacher", args.teacher, "--data", args.data, "--student", f"teacher-layers:{args.layers}",
               "--out", str(out), "--seed", str(seed), "--epochs", str(args.epochs), "--num-threads", str(args.threads),
               "--set", "objectives=" + json.dumps(OBJECTIVES[objective])]
        cmd += ["--init-from", encoder] if encoder else ["--layers", init]
        if args.max_train:
            cmd += ["--max-train", str(args.max_train)]
        if args.lr:
            cmd += ["--lr", str(args.lr)]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            return {"objective": objective, "init": init, "seed": seed, "error": done.stderr.strip().splitlines()[-1:]}
        print(f"{out.name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    m = json.loads((out / "metrics.json").read_text())
    pm = m["primary_metric"]
    return {"objective": objective, "init": init, "seed": seed, "run": str(out), pm: m["student"]["metrics"][pm],
            "retention": m["retention"], "label_loyalty": m["student"]["loyalty"]["label"], "seconds": m.get("seconds"),
            "teacher": m["teacher"]["metrics"][pm], "metric": pm}


def summarise(cells: list[dict]) -> list[dict]:
    rows = []
    for objective in OBJECTIVES:
        for init in sorted({c["init"] for c in cells}, key=lambda i: (INITS + [i]).index(i)):
            group = [c for c in cells if c["objective"] == objective and c["init"] == init and "error" not in c]
            if not group:
                continue
            metric = group[0]["metric"]
            row = {"objective": objective, "init": init, "n": len(group)}
            for key in (metric, "retention", "label_loyalty"):
                values = [c[key] for c in group]
                row[key] = statistics.mean(values)
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True)
    p.add_argument("--data", default="movie-sentiment")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--max-train", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    p.add_argument("--inits", nargs="*", default=INITS)
    p.add_argument("--init-from", nargs="*", default=[], metavar="NAME=DIR", help="extra initialisations from encoders")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--root", default="runs/study-oi")
    p.add_argument("--out", default="bench/results/study_objectives_init.json")
    p.add_argument("--kdexam", default=str(Path(sys.executable).with_name("kdexam")))
    args = p.parse_args()
    encoders = dict(item.split("=", 1) for item in args.init_from)
    grid = [(o, i, s, None) for s in args.seeds for o in args.objectives for i in args.inits]
    grid += [(o, name, s, d) for s in args.seeds for o in args.objectives for name, d in encoders.items()]
    with ThreadPoolExecutor(args.jobs) as pool:
        cells = list(pool.map(lambda c: run_cell(args, *c), grid))
    rows = summarise(cells)
    metric = next((c["metric"] for c in cells if "metric" in c), "score")
    print(f"| objectives | init | n | {metric} | retention | label loyalty |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['objective']} | {r['init']} | {r['n']} | {r[metric]:.4f} ± {r[metric + '_std']:.4f} | "
              f"{r['retention']:.3f} ± {r['retention_std']:.3f} | {r['label_loyalty']:.3f} ± {r['label_loyalty_std']:.3f} |")
    for c in cells:
        if "error" in c:
            print(f"failed: {c}", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "cells": cells, "summary": rows}, indent=1))


if __name__ == "__main__":
    main()
