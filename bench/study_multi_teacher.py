"""Study: students distilled from one teacher, from another with a different tokenizer, and from
the two together (issue 12).

Cells: teacher setting (:data:`SETTINGS`: ``--teacher-a`` alone, ``--teacher-b`` alone, the
ensemble of both with probabilities averaged and equal weights, and with validation-score
weights; a labels-only control) × student (bilstm, cnn: the exam's default shapes) × seeds. Every run is ``kdexam
distill`` on the first ``--max-train`` labelled examples of ``--data`` (the teachers were
fine-tuned on the same subset), ``--max-eval`` validation/test examples, 1 thread; runs go
``--jobs`` at a time after one warm-up run per teacher setting (it fills the teacher caches the
others read). A run whose ``metrics.json`` exists is not run again. Writes a JSON summary (test
score mean ± std per cell, each teacher's own test score, the ensemble students' loyalty to each
member) and prints a table.

    python bench/study_multi_teacher.py --data movie-sentiment \\
        --teacher-a exams/default/teachers/teacher-movie-sentiment-minilm-l6-dc2db290 \\
        --teacher-b runs/mt/teacher-movie-sentiment-mpnet --out-dir runs/mt/ms \\
        --json bench/results/study_multi_teacher_ms.json
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

STUDENTS = {"bilstm": ["--student", "bilstm"], "cnn": ["--student", "cnn"]}
SETTINGS = {
    "a": "A alone",
    "b-on-a": "B alone, student on A's tokenizer",
    "ensemble": "A + B, mean of probabilities",
    "ensemble-val": "A + B, validation weights",
    "labels-only": "labels only (no teacher)",
    "b": "B alone, student on B's tokenizer",
}
"""Teacher settings. Every student but ``b``'s is built on A's tokenizer and input embeddings (the first
member's), so that only the soft targets differ: ``b-on-a`` is the ensemble with weights 0 and 1 (B's
targets exactly). ``b`` is B alone as a user would run it: its own tokenizer and its (wider) embeddings."""


def settings(a) -> dict[str, list[str]]:
    both = ["--teacher", a.teacher_a, "--teacher", a.teacher_b]
    return {"a": ["--teacher", a.teacher_a], "b-on-a": both + ["--teacher-weights", "0,1"],
            "ensemble": both, "ensemble-val": both + ["--weighting", "validation"],
            "labels-only": ["--teacher", a.teacher_a, "--objective", "gold"], "b": ["--teacher", a.teacher_b]}


def cells(a) -> list[dict]:
    out = []
    for setting, student, seed in itertools.product(a.settings, a.students, a.seeds):
        name = f"{student}-{setting}-s{seed}"
        args = [*settings(a)[setting], "--data", a.data, "--max-train", str(a.max_train), "--max-eval", str(a.max_eval),
                "--seed", str(seed), "--num-threads", "1", "--out", str(Path(a.out_dir) / name), *STUDENTS[student]]
        out.append({"name": name, "setting": setting, "student": student, "seed": seed, "args": args})
    return out


def run(cell: dict, kdexam: str, out_dir: Path) -> dict:
    metrics = out_dir / cell["name"] / "metrics.json"
    if not metrics.is_file():
        started = time.perf_counter()
        with open(out_dir / f"{cell['name']}.log", "w") as log:
            subprocess.run([kdexam, "distill", "--resume", *cell["args"]], stdout=log, stderr=subprocess.STDOUT, check=True)
        print(f"{cell['name']}: {time.perf_counter() - started:.0f} s", flush=True)
    m = json.loads(metrics.read_text())
    pm = m["primary_metric"]
    row = {**{k: v for k, v in cell.items() if k != "args"}, "score": m["student"]["metrics"][pm],
           "teacher_score": m["teacher"]["metrics"][pm], "loyalty": m["student"]["loyalty"], "seconds": m.get("seconds")}
    ensemble = m["teacher"].get("ensemble")
    if ensemble:
        row["members"] = {e["name"]: {"score": e["metrics"][pm], "weight": e.get("weight"), "loyalty": e["student_loyalty"]}
                          for e in ensemble["members"]}
    return row


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--teacher-a", required=True)
    ap.add_argument("--teacher-b", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS))
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--max-eval", type=int, default=500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kdexam = str(Path(sys.executable).with_name("kdexam"))
    todo = cells(a)
    warm = [next(c for c in todo if c["setting"] == s) for s in ("a", "b-on-a") if s in a.settings]  # fill the caches once
    results = [run(c, kdexam, out_dir) for c in warm]
    with ThreadPoolExecutor(a.jobs) as pool:
        results += list(pool.map(lambda c: run(c, kdexam, out_dir), [c for c in todo if c not in warm]))
    summary = {}
    for (student, setting), group in itertools.groupby(sorted(results, key=lambda r: (r["student"], r["setting"])),
                                                       key=lambda r: (r["student"], r["setting"])):
        group = list(group)
        entry = {**mean_std([r["score"] for r in group]), "runs": [r["score"] for r in group],
                 "teacher_score": group[0]["teacher_score"],
                 "label_loyalty": statistics.mean(r["loyalty"].get("label", float("nan")) for r in group)}
        if group[0].get("members"):
            entry["members"] = {m: {"score": v["score"], "weight": v["weight"],
                                    "label_loyalty": statistics.mean(r["members"][m]["loyalty"]["label"] for r in group)}
                                for m, v in group[0]["members"].items()}
        summary[f"{student}/{setting}"] = entry
    names = dict(SETTINGS)
    print("| student | teacher | teacher's test score | student test score (mean ± std) | label loyalty | seeds |")
    print("|---|---|---|---|---|---|")
    for key, s in summary.items():
        student, setting = key.split("/")
        teacher = "" if setting == "labels-only" else f"{s['teacher_score']:.4f}"
        loyal = "" if setting == "labels-only" else f"{s['label_loyalty']:.3f}"
        print(f"| {student} | {names[setting]} | {teacher} | {s['mean']:.4f} ± {s['std']:.4f} | {loyal} | {s['n']} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"settings": {k: v for k, v in vars(a).items() if k != "json"},
                                            "summary": summary, "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
