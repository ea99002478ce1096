"""Study: logits-only distillation against the XtremeDistil recipe, with and without an
unlabelled transfer set, for BiLSTM and CNN students (issue 13).

Cells: student (bilstm 192/200, cnn 128-d with 64 filters) × recipe (default: one stage of
KL + gold, for ``--epochs`` and, as a control of the training budget, for 5 × ``--epochs``;
``--recipe xtremedistil``: representation, logits with gradual unfreezing, gold: 5 stages)
× transfer (the labelled subset alone; + ``--unlabelled movie-dialog --max-unlabelled N``)
× seeds. Every run is ``kdexam distill`` on the first ``--max-train`` labelled sentences of
the teacher's dataset, ``--epochs`` per stage, 1 thread; runs go ``--jobs`` at a time after
one warm-up run per transfer setting (it fills the teacher cache the others read). A run
whose ``metrics.json`` exists is not run again. Writes a JSON summary (test accuracy mean
± std per cell) and prints a table.

    python bench/study_representation.py --teacher runs/teacher-ms --data movie-sentiment \\
        --out-dir runs/study-rep --max-train 2000 --unlabelled 10000 --seeds 1 2 3 --epochs 3 \\
        --json bench/results/study_representation.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

STUDENTS = {"bilstm": ["--student", "bilstm", "--embedding-dim", "192", "--hidden-size", "200"],
            "cnn": ["--student", "cnn", "--embedding-dim", "128", "--set", "student.num_filters=64"]}
RECIPES = {"logits": ([], 1), "logits-5x": ([], 5), "xtremedistil": (["--recipe", "xtremedistil"], 1)}
"""Recipe -> (flags, epochs multiplier). xtremedistil runs 5 stages of --epochs each; ``logits-5x`` gives the
one-stage recipe the same epoch budget (a control: does the staged recipe help, or only the longer training?)."""


def cells(a) -> list[dict]:
    out = []
    for student, recipe, transfer, seed in itertools.product(a.students, a.recipes, (False, True)[: 1 if a.no_transfer else 2],
                                                             a.seeds):
        name = f"{student}-{recipe}-{'unl' if transfer else 'gold'}-s{seed}"
        flags, times = RECIPES[recipe]
        args = ["--teacher", a.teacher, "--data", a.data, "--max-train", str(a.max_train), "--epochs", str(a.epochs * times),
                "--seed", str(seed), "--num-threads", "1", "--out", str(Path(a.out_dir) / name),
                *STUDENTS[student], *flags]
        if transfer:
            args += ["--unlabelled", a.unlabelled_source, "--max-unlabelled", str(a.unlabelled)]
        out.append({"name": name, "student": student, "recipe": recipe, "transfer": transfer, "seed": seed, "args": args})
    return out


def run(cell: dict, kdexam: str, out_dir: Path) -> dict:
    metrics = out_dir / cell["name"] / "metrics.json"
    if not metrics.is_file():
        started = time.perf_counter()
        with open(out_dir / f"{cell['name']}.log", "w") as log:
            subprocess.run([kdexam, "distill", "--resume", *cell["args"]], stdout=log, stderr=subprocess.STDOUT, check=True)
        print(f"{cell['name']}: {time.perf_counter() - started:.0f} s", flush=True)
    m = json.loads(metrics.read_text())
    return {**{k: v for k, v in cell.items() if k != "args"}, "accuracy": m["student"]["metrics"][m["primary_metric"]],
            "retention": m["retention"], "seconds": m.get("seconds")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS))
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES), help="the recipes to run (default all)")
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--unlabelled", type=int, default=10000, help="unlabelled lines in the transfer set")
    ap.add_argument("--unlabelled-source", default="movie-dialog")
    ap.add_argument("--no-transfer", action="store_true", help="only the labelled-subset cells (e.g. a language without unlabelled text here)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kdexam = str(Path(sys.executable).with_name("kdexam"))
    todo = cells(a)
    # one warm-up per transfer setting fills the teacher cache (logits and the [CLS] states) before parallel runs
    warm = [next((c for c in todo if c["recipe"] == "xtremedistil" and c["transfer"] == t), next(c for c in todo if c["transfer"] == t))
            for t in sorted({c["transfer"] for c in todo})]
    results = [run(c, kdexam, out_dir) for c in warm]
    with ThreadPoolExecutor(a.jobs) as pool:
        results += list(pool.map(lambda c: run(c, kdexam, out_dir), [c for c in todo if c not in warm]))
    summary = {}
    for key, group in itertools.groupby(sorted(results, key=lambda r: (r["student"], r["transfer"], r["recipe"])),
                                        key=lambda r: (r["student"], r["transfer"], r["recipe"])):
        accs = [r["accuracy"] for r in group]
        summary["/".join(map(str, key))] = {"mean": statistics.mean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                                            "n": len(accs), "runs": accs}
    print("| student | transfer set | recipe | test accuracy (mean ± std) | seeds |\n|---|---|---|---|---|")
    for key, s in summary.items():
        student, transfer, recipe = key.split("/")
        print(f"| {student} | {'+ ' + str(a.unlabelled) + ' unlabelled' if transfer == 'True' else 'labelled only'} | "
              f"{recipe} | {s['mean']:.4f} ± {s['std']:.4f} | {s['n']} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"settings": {k: v for k, v in vars(a).items() if k != "json"},
                                            "summary": summary, "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
