"""Benchmark: kdexam against TextBrewer and the Hugging Face Trainer recipe (issue 16), in one run.

For each student — ``bert-mini`` from scratch and ``bilstm`` (kdexam's default, and ``bilstm-192``:
192-d embeddings, hidden 200) with logit KD, and
``teacher-layers:2`` with logit KD + hidden-state MSE — the same fine-tuned teacher, data
subset, initial student weights (built by kdexam's own code, same seed), epochs, batch size,
learning rate (kdexam's default for the kind), schedule and loss, trained by:

- ``kdexam``: ``kdexam distill`` (``api.distill``) with a teacher cache of its own that holds only
  what ``kdexam teacher`` leaves there — its logits on the test split it was scored on, found in
  the user's cache when the teacher was trained by a kdexam that stores them — so its time
  includes filling the cache (the teacher's one pass over the training set; over the test split
  too, for loyalty, with ``--cold-cache`` or a teacher trained before 2026-12-03); the cache fill
  is also timed alone (``Teacher.outputs*`` wrapped);
- ``textbrewer-fixed``: TextBrewer's ``GeneralDistiller`` as its examples use it — inputs padded
  to 128 tokens, the teacher run on every batch (``bench/textbrewer_peer.py`` in ``.venv-tb``);
- ``textbrewer-bucketed``: the same, fed kdexam's length-bucketed dynamic batches;
- ``hf-trainer``: a ``Trainer`` subclass running the teacher every step (``bench/trainer_peer.py``);
- ``kdexam-labels-only``: kdexam's control (``--objective gold``: cross-entropy on the gold
  labels, the teacher never read), for the KD overhead: distillation train time over this.

Every system validates the student once an epoch and scores the best validation weights on the
test split (kdexam's early stopping is kept off: ``patience`` > epochs). Each run is a fresh
process, one at a time, one thread (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``); its
``seconds`` runs from after its imports to its test score, ``peak_rss_mb`` is its own
``VmHWM`` (before 2026-12-04, ``ru_maxrss``, which Linux carries over from the driver: every figure
then was at least the driver's own peak). Ratios are peer seconds over kdexam seconds *with* the cache fill.

``--device cuda`` (``auto``: cuda when there is one) runs every system on the GPU, the peers in fp32
(TextBrewer's fp16 needs apex; the Trainer recipe's default is fp32), kdexam in its default
``mixed_precision: auto`` (fp32 for students since 2026-12-04; bf16 autocast before);
``--kdexam-set train.mixed_precision=bf16`` gives kdexam's bf16 figure. Rows then carry ``peak_gpu_mb``
(``torch.cuda.max_memory_allocated``). ``--max-train 0 --max-eval 0``: the whole dataset.

    bash bench/textbrewer_env.sh
    python bench/vs_textbrewer.py --teacher exams/default/teachers/teacher-movie-sentiment-minilm-l6-dc2db290 \\
        --max-train 1000 --max-eval 500 --epochs 10 --out bench/results/vs_textbrewer.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from textbrewer_peer import pin_threads  # (bench/ is on the path; one environment for every peer; no TextBrewer import at its top)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
STUDENTS = {  # name: (kdexam kind, hidden-state pairs [teacher_layer, student_layer], student settings)
    "bert-mini": ("bert-mini", [], {}),
    "bilstm": ("bilstm", [], {}),  # kdexam's default BiLSTM: the teacher's width (384 for MiniLM), hidden 300
    "bilstm-192": ("bilstm", [], {"embedding_dim": 192, "hidden_size": 200}),  # docs/results.md's best BiLSTM
    "teacher-layers:2+hidden": ("teacher-layers:2", [[3, 1], [6, 2]], {}),
}
SYSTEMS = ("kdexam", "textbrewer-fixed", "textbrewer-bucketed", "hf-trainer", "kdexam-labels-only")
PEERS = ("textbrewer-fixed", "textbrewer-bucketed", "hf-trainer")


# ---- pure helpers (tested in tests/test_bench_peers.py) --------------------------------------------


def ratio(peer_seconds: float | None, ours_seconds: float | None) -> float | None:
    """How many times longer the peer took; None when either is missing."""
    if not peer_seconds or not ours_seconds:
        return None
    return peer_seconds / ours_seconds


def verdict(value: float | None, target: float, at_most: bool = False) -> str:
    """'met' / 'missed' against a target (``value ≥ target``, or ``≤`` with ``at_most``); 'not measured'."""
    if value is None:
        return "not measured"
    return "met" if (value <= target if at_most else value >= target) else "missed"


def kd_kwargs(pairs: list, labels_only: bool = False) -> dict:
    """kdexam's settings for the benchmark's loss (``api.distill`` keywords; on the command line
    ``--objective kl:temperature=4 --match teacher_layer=T,student_layer=S,feature=hidden,loss=mse``):
    KL at T=4 (weight 1), plus one hidden-state MSE match per pair (TextBrewer's declarative
    matches: each contributes weight · loss). ``labels_only``: the control, ``--objective gold``."""
    if labels_only:
        return {"objective": ["gold"]}
    kw: dict = {"objective": ["kl:temperature=4"]}
    if pairs:
        kw["match"] = [f"teacher_layer={t},student_layer={s},feature=hidden,loss=mse" for t, s in pairs]
    return kw


def fmt(x, spec: str, none: str = "–") -> str:
    return none if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
    """One line per (student, system): wall time, kdexam's without the cache fill, the peer/kdexam
    ratio (kdexam with its cache fill), peak memory and test accuracy with its gap to kdexam's."""
    lines = ["| student | system | wall s | wall s w/o cache fill | time ÷ kdexam | peak RSS MB | test acc. | Δ acc. vs kdexam (pt) |",
             "|---|---|---|---|---|---|---|---|"]
    by = {(r["student"], r["system"]): r for r in rows if r.get("seconds") is not None}
    for r in rows:
        if r.get("seconds") is None:
            lines.append(f"| {r['student']} | {r['system']} | failed: {r.get('error', '?')} | | | | | |")
            continue
        ours = by.get((r["student"], "kdexam"))
        rt = ratio(r["seconds"], ours["seconds"]) if ours and r["system"] != "kdexam" else None
        gap = 100 * (r["test_accuracy"] - ours["test_accuracy"]) if ours and r["system"] != "kdexam" else None
        lines.append(f"| {r['student']} | {r['system']} | {r['seconds']:.0f} | {fmt(r.get('seconds_without_cache_fill'), '.0f')} | "
                     f"{fmt(rt, '.2f', '1' if r['system'] == 'kdexam' else '–')}{'' if rt is None else '×'} | "
                     f"{fmt(r.get('peak_rss_mb'), '.0f')} | {r['test_accuracy']:.4f} | {fmt(gap, '+.1f')} |")
    return "\n".join(lines)


def summary(rows: list[dict], device: str = "cpu") -> dict:
    """Ratios per student, the KD overhead, and the issue's targets (met / missed); the targets are
    CPU targets, so a run on a GPU is not judged against them."""
    by = {(r["student"], r["system"]): r for r in rows if r.get("seconds") is not None}
    out: dict = {"ratios": {}, "kd_overhead": {}, "targets": {}}
    for student in {r["student"] for r in rows}:
        ours = by.get((student, "kdexam"))
        if not ours:
            continue
        out["ratios"][student] = {p: {"with_cache_fill": ratio(by[(student, p)]["seconds"], ours["seconds"]),
                                      "without_cache_fill": ratio(by[(student, p)]["seconds"], ours.get("seconds_without_cache_fill")),
                                      "accuracy_kdexam_minus_peer_points": 100 * (ours["test_accuracy"] - by[(student, p)]["test_accuracy"])}
                                  for p in PEERS if (student, p) in by}
        control = by.get((student, "kdexam-labels-only"))
        if control and ours.get("train_seconds") and control.get("train_seconds"):
            out["kd_overhead"][student] = ours["train_seconds"] / control["train_seconds"]

    def r(student, peer):
        return (out["ratios"].get(student, {}).get(peer) or {}).get("with_cache_fill")

    bm_bucket = out["ratios"].get("bert-mini", {}).get("textbrewer-bucketed")
    if device != "cpu":
        out["targets"] = {"(the issue's targets are CPU targets)": f"not judged on {device}"}
        return out
    out["targets"] = {
        "bert-mini ≥3× TextBrewer as its examples": verdict(r("bert-mini", "textbrewer-fixed"), 3.0),
        "bilstm ≥10× TextBrewer as its examples": verdict(r("bilstm", "textbrewer-fixed"), 10.0),
        "bilstm-192 ≥10× TextBrewer as its examples": verdict(r("bilstm-192", "textbrewer-fixed"), 10.0),
        "bert-mini ≥1.7× TextBrewer on the same batches": verdict(r("bert-mini", "textbrewer-bucketed"), 1.7),
        "bert-mini accuracy within 0.5 pt of TextBrewer on the same batches":
            verdict(None if not bm_bucket else abs(bm_bucket["accuracy_kdexam_minus_peer_points"]), 0.5, at_most=True),
        "KD overhead ≤1.15× (every student)":
            verdict(max(out["kd_overhead"].values()) if out["kd_overhead"] else None, 1.15, at_most=True),
    }
    return out


# ---- one kdexam run (a fresh process) --------------------------------------------------------------


def kdexam_child(spec: dict) -> None:
    """Run ``kdexam distill`` with a private cache holding only the teacher run's scored logits
    (``spec["teacher_run_cache"]``, copied in before the clock starts; none: empty); print its
    timings as JSON."""
    import torch

    import sklearn.metrics  # noqa: F401  (kdexam's metrics import it at the first validation: ~1 s, an import)
    import kdexam.training.distill  # noqa: F401  (imported before the clock starts, as the peers import theirs)
    from textbrewer_peer import gpu_memory  # (from this folder; it imports no TextBrewer at its top)
    from kdexam import api
    from kdexam.inference.serving import peak_rss_mb
    from kdexam.teachers.teacher import Teacher

    torch.set_num_threads(1)
    os.environ["KDEXAM_HOME"] = tempfile.mkdtemp(prefix="kdexam-vs-tb-")  # a private cache (data is passed as a path)
    if seed := spec.pop("teacher_run_cache", None):
        shutil.copytree(seed, Path(os.environ["KDEXAM_HOME"]) / "cache" / "teacher" / Path(seed).name)
    fill, depth = {"seconds": 0.0}, {"n": 0}
    for name in ("outputs_of_segments", "outputs"):  # the first calls the second: time the outermost call only
        original = getattr(Teacher, name)

        def timed(self, *args, _original=original, **kw):
            depth["n"] += 1
            t0 = time.perf_counter()
            try:
                return _original(self, *args, **kw)
            finally:
                depth["n"] -= 1
                if depth["n"] == 0:
                    fill["seconds"] += time.perf_counter() - t0

        setattr(Teacher, name, timed)
    t0 = time.perf_counter()
    r = api.distill(**spec)
    seconds = time.perf_counter() - t0
    train_seconds = sum(s["train_seconds"] for s in r["stages"])
    log = [json.loads(line) for line in (Path(spec["out"]) / "train_log.jsonl").read_text().splitlines()]
    history = [{"step": e["step"], "validation_accuracy": e["validation"]["accuracy"], "seconds": e.get("seconds")}
               for e in log if "accuracy" in e.get("validation", {})]  # per epoch, as the peers record theirs
    print("KDEXAM_RESULT " + json.dumps({
        "seconds": round(seconds, 2), "cache_fill_seconds": round(fill["seconds"], 2),
        "seconds_without_cache_fill": round(seconds - fill["seconds"], 2), "train_seconds": round(train_seconds, 2),
        "steps": sum(s["steps"] for s in r["stages"]), "test_accuracy": r["student"]["metrics"]["accuracy"],
        "best_validation_accuracy": r["stages"][-1]["best_validation"],
        "teacher_forward_calls": r["teacher_cache"]["teacher_forward_calls"],
        "peak_rss_mb": round(peak_rss_mb(), 1), "history": history, **gpu_memory()}))


# ---- the driver ------------------------------------------------------------------------------------


def installed(md, package: str) -> str | None:
    """The installed version of ``package`` (None for kdexam run from a source tree on PYTHONPATH)."""
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return None


def gpu_name(device: str) -> dict:
    import torch

    return {"gpu": torch.cuda.get_device_name(0)} if device == "cuda" else {}


def prepare(a, work: Path) -> tuple[str, dict[str, dict]]:
    """The data files (kdexam's splits and order) and each student's initial weights."""
    import torch
    from safetensors.torch import save_file

    from kdexam import api
    from kdexam.data.builtin import BUILTIN_DATASETS, prepare_dataset
    from kdexam.data.splits import load_data
    from kdexam.data.transfer import build_transfer_set
    from kdexam.students.registry import build_student
    from kdexam.teachers.teacher import Teacher
    from kdexam.training.run_checks import check_data_fits_teacher, with_teacher_data

    data_path = str(prepare_dataset(a.data)) if a.data in BUILTIN_DATASETS else a.data
    cfg = with_teacher_data(api.distill_config(teacher=a.teacher, data=data_path, student="bilstm", out=str(work / "x"),
                                               max_train=a.max_train, max_eval=a.max_eval, seed=a.seed), Path(a.teacher))
    teacher = Teacher(a.teacher, max_length=cfg.data.max_length)
    data = load_data(cfg.data.model_copy(update={"task": teacher.task.kind}), a.seed)
    task = check_data_fits_teacher(data, teacher.task, Path(a.teacher))
    transfer = build_transfer_set(cfg.transfer, data, task, a.seed, cfg.data, a.teacher, teacher.tokenizer.mask_token)
    (work / "data").mkdir()
    for name, examples in (("train", transfer.examples), ("validation", data.validation), ("test", data.test)):
        with open(work / "data" / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": e.text, "label": task.label2id[str(e.label)]}) + "\n" for e in examples)
    inits = {}
    for name in a.students:
        kind, pairs, settings = STUDENTS[name]
        c = api.distill_config(teacher=a.teacher, data=data_path, student=kind, out=str(work / "x"), seed=a.seed, **settings)
        # the peers take a plain HF model, so a preset's word embeddings stay untrimmed for them; kdexam's
        # presets are untrimmed too unless --kdexam-set student.trim_vocab=true, whose kept rows (same seed)
        # and every other weight are these
        spec = c.student.model_copy(update={"trim_vocab": False}) if kind.startswith("bert-") else c.student
        torch.manual_seed(a.seed)
        student, _ = build_student(spec, task, a.teacher, train_texts=[e.text for e in transfer.examples])
        d = work / "init" / name.replace(":", "-")
        d.mkdir(parents=True)
        if kind == "bilstm":
            (d / "bilstm.json").write_text(json.dumps(student.config.to_dict()))
            save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(d / "bilstm.safetensors"))
        else:
            student.model.save_pretrained(str(d))
        inits[name] = {"kind": kind, "pairs": pairs, "settings": settings, "init": str(d), "lr": c.train.learning_rate}
    print(f"data: {len(transfer.examples)} train, {len(data.validation)} validation, {len(data.test)} test "
          f"({data_path}); students initialised in {work / 'init'}", flush=True)
    return data_path, inits, None if a.cold_cache else scored_logits(teacher, data.split(data.eval_split))


def scored_logits(teacher, examples) -> str | None:
    """The cache folder where ``kdexam teacher`` left its logits on ``examples`` (the split it was
    scored on, which is the student runs' too), or None when it holds none (a teacher trained
    before kdexam stored them)."""
    from kdexam.teachers.cache import cache_dir, content_order_key, read_output

    d = cache_dir(content_order_key(teacher.key, examples, teacher.task, teacher.max_length)[1])
    return str(d) if read_output(d, "logits") is not None else None


def run_cell(a, student: str, system: str, s: dict, data_path: str, work: Path, teacher_run_cache: str | None = None) -> dict:
    env = dict(os.environ)
    if a.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # kdexam takes a GPU whenever it sees one
    base = {"student": student, "system": system, "kind": s["kind"], "lr": s["lr"]}
    if system.startswith("kdexam"):
        spec = dict(teacher=a.teacher, data=data_path, student=s["kind"], out=str(work / "runs" / f"{student}-{system}".replace(":", "-")),
                    max_train=a.max_train, max_eval=a.max_eval, epochs=a.epochs, batch_size=a.batch_size, patience=a.epochs + 1,
                    seed=a.seed, num_threads=1, **s["settings"], **kd_kwargs(s["pairs"], labels_only=system == "kdexam-labels-only"),
                    **({"set": a.kdexam_set} if a.kdexam_set else {}), teacher_run_cache=teacher_run_cache)
        shutil.rmtree(spec["out"], ignore_errors=True)  # a second kdexam cell of the invocation starts afresh (not a rerun)
        cmd = [sys.executable, __file__, "--kdexam-child", json.dumps(spec)]
        marker = "KDEXAM_RESULT "
    else:
        out = work / f"{student}-{system}.json".replace(":", "-")
        python, script = ((a.peer_python, "textbrewer_peer.py") if system.startswith("textbrewer") else (sys.executable, "trainer_peer.py"))
        cmd = [python, str(BENCH / script), "--teacher", a.teacher, "--student-init", s["init"], "--data", str(work / "data"),
               "--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--lr", str(s["lr"]), "--temperature", "4",
               "--matches", json.dumps(s["pairs"]), "--seed", str(a.seed), "--device", a.device, "--out", str(out)]
        if system.startswith("textbrewer"):
            cmd += ["--padding", system.split("-")[1]]
        marker = None
    print(f"[{time.strftime('%H:%M:%S')}] {student} / {system}: {' '.join(cmd)[:400]}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    log = work / "logs" / f"{student}-{system}.log".replace(":", "-")
    log.parent.mkdir(exist_ok=True)
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {**base, "seconds": None, "error": f"exit {proc.returncode} (log {log})", "process_seconds": round(wall, 1)}
    if marker:
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith(marker)][-1]
        result = json.loads(line[len(marker):])
    else:
        result = json.loads(out.read_text())
    row = {**result, **base, "process_seconds": round(wall, 1)}
    gpu = f", peak GPU {row['peak_gpu_mb']} MB" if row.get("peak_gpu_mb") is not None else ""
    print(f"    {row['seconds']:.0f} s, test accuracy {row['test_accuracy']:.4f}, peak RSS {row.get('peak_rss_mb')} MB{gpu}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kdexam-child", help=argparse.SUPPRESS)
    ap.add_argument("--teacher")
    ap.add_argument("--data", default="movie-sentiment")
    ap.add_argument("--max-train", type=int, default=1000, help="0: every training example")
    ap.add_argument("--max-eval", type=int, default=500, help="0: every validation and test example")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when there is a GPU")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS))
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    ap.add_argument("--kdexam-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config setting for the kdexam runs only (repeatable), e.g. student.trim_vocab=true")
    ap.add_argument("--cold-cache", action="store_true",
                    help="kdexam's runs start from an empty teacher cache: the teacher's test-split logits are computed "
                         "in the timed run too (the protocol before 2026-12-03)")
    ap.add_argument("--peer-python", default=str(ROOT / ".venv-tb" / "bin" / "python"))
    ap.add_argument("--out", default="bench/results/vs_textbrewer.json")
    ap.add_argument("--summarize", action="store_true", help="recompute the table and summary of --out from its rows; no runs")
    a = ap.parse_args()
    a.max_train, a.max_eval = a.max_train or None, a.max_eval or None
    pin_threads(1)
    if a.summarize:
        report = json.loads(Path(a.out).read_text())
        report["table"] = table(report["rows"])
        report.update(summary(report["rows"], report.get("device", "cpu")))
        Path(a.out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(report["table"])
        print(json.dumps({k: report[k] for k in ("ratios", "kd_overhead", "targets")}, indent=2, ensure_ascii=False))
        return
    if a.kdexam_child:
        kdexam_child(json.loads(a.kdexam_child))
        return
    if not a.teacher:
        ap.error("--teacher is required")
    a.teacher = str(Path(a.teacher).resolve())
    if a.device == "auto":
        import torch

        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="vs-tb-"))
    data_path, inits, teacher_run_cache = prepare(a, work)
    probe = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
             "('textbrewer', 'torch', 'transformers', 'tokenizers', 'tensorboard', 'numpy')}))")
    peer_versions = subprocess.run([a.peer_python, "-c", probe], capture_output=True, text=True, check=False).stdout.strip()
    import importlib.metadata as md

    report = {"benchmark": "vs_textbrewer", "data": a.data, "device": a.device, "max_train": a.max_train, "max_eval": a.max_eval, "epochs": a.epochs,
              "batch_size": a.batch_size, "seed": a.seed, "threads": 1, "teacher": a.teacher, "kdexam_set": a.kdexam_set,
              "teacher_run_logits": teacher_run_cache,
              "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                          "platform": platform.platform(), "python": platform.python_version(), **gpu_name(a.device)},
              "versions": {"kdexam_env": {p: installed(md, p) for p in ("kdexam", "torch", "transformers", "accelerate", "tokenizers")},
                           "textbrewer_env": json.loads(peer_versions) if peer_versions else None},
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "work": str(work), "rows": []}
    for student in a.students:
        for system in a.systems:
            report["rows"].append(run_cell(a, student, system, inits[student], data_path, work, teacher_run_cache))
            report["table"] = table(report["rows"])
            report.update(summary(report["rows"], a.device))
            report["seconds"] = round(time.perf_counter() - started, 1)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(report["table"])
    print(json.dumps({k: report[k] for k in ("ratios", "kd_overhead", "targets")}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
