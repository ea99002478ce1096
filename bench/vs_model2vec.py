"""Benchmark: kdexam's fastest students against model2vec, and against their teacher, in one run.

Peers (model2vec in its own environment, ``bench/model2vec_env.sh``; never a kdexam
dependency), each run by ``bench/model2vec_peer.py``: a static model distilled by model2vec
from (a) the base encoder and (b) the fine-tuned teacher, with model2vec's own classifier
fitted on the same training split, served in model2vec's fastest form.

kdexam: the teacher in PyTorch fp32 (``kdexam.load_student(..., backend="pytorch")``), and
each student run exported to ONNX (fp32 and int8) and served by the torch-free predictor
(``kdexam.load_student(RUN)`` → :mod:`kdexam.inference.serving`).

Measured for every model, one thread (torch, ONNX Runtime, BLAS, the tokenizers thread pool):

- test accuracy of the served form on the test split;
- training time: model2vec distillation + classifier fit; kdexam: the distillation run's
  wall time from its ``metrics.json`` (teacher outputs read from the cache, so the teacher's
  labelling pass is not in it) — the teacher's fine-tuning is not counted for either;
- end-to-end latency, text in → prediction out, the predict call timed with
  ``time.perf_counter``: test texts in order (wrapping), 5 warm-up calls, then 200 timed calls
  at batch 1 and 40 at batch 32; p50, p95, mean in ms;
- serving memory: peak RSS (``VmHWM``) of a fresh process that loads the served model and
  predicts the test texts at batch 32 (kdexam: the export folder's ``kdexam_serving.py``);
- size on disk of what is served (model file + tokenizer; model2vec: its saved folder);
- interleaved batch-1 latency (``--rounds R``, default 6): every served model (model2vec's
  pipelines, kdexam's ONNX exports; not the PyTorch teacher) timed again with the same protocol
  in a fresh process of its own environment (``model2vec_peer.py --time``,
  ``onnx_latency_child.py``), one model after another, R rounds with the order reversed every
  other round, so that the machine's drift falls on every model alike. Reported: each round's
  p50, their median, and the median over rounds of the model's p50 divided by the same round's
  p50 of the fastest model2vec (the same-run speed comparison).

    bash bench/model2vec_env.sh
    python bench/vs_model2vec.py --teacher runs/teacher-ms --base minilm-l6 \\
        --students runs/static-ms runs/cnn-ms runs/bilstm-ms --threads 1 --out bench/results/vs_model2vec.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from model2vec_peer import CALLS, WARMUP, latency, pin_threads  # one timing protocol for both sides (bench/ is on the path)


def accuracy(predict, examples) -> float:
    preds = predict([e.text for e in examples])
    return sum(p["label"] == e.label for p, e in zip(preds, examples)) / len(examples)


def run_seconds(run: Path) -> float | None:
    try:
        return json.loads((run / "metrics.json").read_text())["seconds"]
    except (OSError, KeyError, ValueError):
        return None


def kdexam_rows(teacher: str, students: list[str], test, threads: int, tmp: Path) -> list[dict]:
    import torch

    import kdexam
    from kdexam import api
    from kdexam.evaluation.efficiency import peak_rss
    from kdexam.inference.serving import TOKENIZER_FILE

    torch.set_num_threads(threads)
    if threads == 1:  # the teacher's batch calls to the Rust tokenizer stay on one thread too, as model2vec_peer.py's
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    texts = [e.text for e in test]
    texts_file = tmp / "texts.json"
    texts_file.write_text(json.dumps(texts))
    rows = []
    clf = kdexam.load_student(teacher, backend="pytorch")
    pt_rss = peak_rss(Path(teacher), "pytorch", False, texts_file, 32, threads)
    rows.append({"name": f"kdexam teacher {Path(teacher).name} (PyTorch fp32)", "kind": "teacher", "backend": "pytorch",
                 "test_accuracy": accuracy(lambda b: clf.predict(b, batch_size=64), test),
                 "train_seconds": None, "latency": {str(bs): latency(clf.predict, texts, bs) for bs in CALLS},
                 "serving_memory": pt_rss, "disk_bytes": sum(f.stat().st_size for f in Path(teacher).glob("model*.safetensors"))})
    for s in students:
        run = Path(s)
        onnx = run / "onnx"
        api.export(s, quantize="int8")  # always: the folder then serves with this version's kdexam_serving.py
        kind = json.loads((run / "student.json").read_text())["kind"]
        for quantized in (False, True):
            clf = kdexam.load_student(s, quantized=quantized, threads=threads)
            assert type(clf).__name__ == "ServingPredictor", clf
            model_file = onnx / ("model.int8.onnx" if quantized else "model.onnx")
            rows.append({"name": f"kdexam {kind} {run.name} (ONNX {'int8' if quantized else 'fp32'}, torch-free)",
                         "kind": kind, "backend": "onnx-int8" if quantized else "onnx",
                         "test_accuracy": accuracy(lambda b: clf.predict(b, batch_size=64), test),
                         "train_seconds": run_seconds(run),
                         "latency": {str(bs): latency(clf.predict, texts, bs) for bs in CALLS},
                         "serving_memory": peak_rss(onnx, "onnx", quantized, texts_file, 32, threads),
                         "timer": [sys.executable, str(Path(__file__).with_name("onnx_latency_child.py")), str(onnx),
                                   "--test", str(tmp / "test.jsonl"), "--threads", str(threads),
                                   *(["--quantized"] if quantized else [])],
                         "disk_bytes": model_file.stat().st_size + (onnx / TOKENIZER_FILE).stat().st_size})
    return rows


def peer_rows(python: str, encoders: dict[str, str], train: Path, test: Path, threads: int, tmp: Path) -> list[dict]:
    rows = []
    for label, encoder in encoders.items():
        out = tmp / f"m2v-{label}.json"
        cmd = [python, str(Path(__file__).with_name("model2vec_peer.py")), "--encoder", encoder, "--train", str(train),
               "--test", str(test), "--out", str(out), "--threads", str(threads), "--name", f"model2vec ({label})"]
        print("running", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=dict(os.environ))
        r = json.loads(out.read_text())
        rows.append({"name": r["name"], "kind": "model2vec", "backend": "model2vec", "test_accuracy": r["test_accuracy"],
                     "train_seconds": r["distill_seconds"] + r["fit_seconds"], "latency": r["latency"],
                     "serving_memory": r["serving_memory"], "disk_bytes": r["disk_bytes"], "peer": r,
                     "timer": [python, str(Path(__file__).with_name("model2vec_peer.py")), "--time", r["saved"],
                               "--test", str(test), "--threads", str(threads)]})
    return rows


def interleaved(rows: list[dict], rounds: int) -> None:
    """Batch-1 p50 of every row with a ``timer`` command, ``rounds`` times, each time in a fresh process,
    the order reversed every other round; adds ``interleaved_p50`` (one per round) to those rows."""
    timed = [r for r in rows if r.get("timer")]
    for r in timed:
        r["interleaved_p50"] = []
    for k in range(rounds):
        for r in timed if k % 2 == 0 else timed[::-1]:
            done = subprocess.run(r["timer"], capture_output=True, text=True, check=True)
            r["interleaved_p50"].append(json.loads(done.stdout.strip().splitlines()[-1])["p50"])
        print(f"interleaved round {k + 1}/{rounds}: " + ", ".join(f"{r['name']} {r['interleaved_p50'][-1]:.3f}" for r in timed),
              flush=True)


def table(rows: list[dict], teacher_p50: float, best_m2v: dict, fastest_m2v: dict | None) -> str:
    lines = ["| model | test acc. | Δ vs best model2vec | train s | e2e p50 b1 (ms) | p95 b1 | e2e p50 b32 (ms) | "
             "speedup b1 vs teacher | serving peak MB | disk MB | interleaved p50 b1 (ms) | ÷ fastest model2vec |",
             "|---" * 12 + "|"]
    for r in rows:
        b1, b32 = r["latency"]["1"], r["latency"]["32"]
        mem = (r.get("serving_memory") or {}).get("peak_mb")
        inter = ratio = ""
        if r.get("interleaved_p50"):
            inter = f"{median(r['interleaved_p50']):.3f}"
            if fastest_m2v is not None and fastest_m2v.get("interleaved_p50"):
                ratio = f"{r['vs_fastest_model2vec']:.2f}"
        lines.append(f"| {r['name']} | {r['test_accuracy']:.4f} | {100 * (r['test_accuracy'] - best_m2v['test_accuracy']):+.1f} pt | "
                     f"{'' if r['train_seconds'] is None else format(r['train_seconds'], '.0f')} | {b1['p50']:.3f} | {b1['p95']:.3f} | "
                     f"{b32['p50']:.3f} | {teacher_p50 / b1['p50']:.1f}x | {'' if mem is None else format(mem, '.0f')} | "
                     f"{r['disk_bytes'] / 1e6:.2f} | {inter} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--base", default="minilm-l6", help="the teacher's base encoder (built-in name or directory)")
    ap.add_argument("--students", nargs="+", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--peer-python", default=".venv-m2v/bin/python")
    ap.add_argument("--no-peer", action="store_true", help="measure kdexam only")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved batch-1 timing rounds (0: none)")
    ap.add_argument("--out", default="bench/results/vs_model2vec.json")
    a = ap.parse_args()
    pin_threads(a.threads)

    import tempfile

    from kdexam.config import TeacherRunConfig, load_config
    from kdexam.data.splits import load_data
    from kdexam.teachers.builtin_models import resolve_model

    cfg = load_config(TeacherRunConfig, Path(a.teacher) / "config.yaml", {})
    data = load_data(cfg.data, cfg.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vs-m2v-") as tmp:
        tmp = Path(tmp)
        for name, split in (("train", data.train), ("test", data.test)):
            with open(tmp / f"{name}.jsonl", "w", encoding="utf-8") as f:
                for e in split:
                    f.write(json.dumps({"text": e.text, "label": e.label}) + "\n")
        peers = [] if a.no_peer else peer_rows(a.peer_python, {"base encoder": resolve_model(a.base), "fine-tuned teacher": a.teacher},
                                               tmp / "train.jsonl", tmp / "test.jsonl", a.threads, tmp)
        ours = kdexam_rows(a.teacher, a.students, data.test, a.threads, tmp)
        rows = peers + ours
        if a.rounds:
            interleaved(rows, a.rounds)
    teacher_p50 = ours[0]["latency"]["1"]["p50"]
    best_m2v = max(peers, key=lambda r: r["test_accuracy"]) if peers else ours[0]
    if peers and a.rounds:
        fastest_m2v = min(peers, key=lambda r: median(r["interleaved_p50"]))
        for r in rows:
            if r.get("interleaved_p50"):
                r["vs_fastest_model2vec"] = median([x / y for x, y in zip(r["interleaved_p50"], fastest_m2v["interleaved_p50"])])
    else:
        fastest_m2v = min(peers, key=lambda r: r["latency"]["1"]["p50"]) if peers else None
    text = table(rows, teacher_p50, best_m2v, fastest_m2v)
    print(text)
    report = {
        "benchmark": "vs_model2vec", "dataset": data.task.dataset, "split": "test", "examples": len(data.test),
        "threads": a.threads, "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - started, 1), "protocol": {"warmup": WARMUP, "calls": CALLS, "interleaved_rounds": a.rounds},
        "teacher_e2e_p50_ms_batch1": teacher_p50, "best_model2vec": best_m2v["name"],
        "fastest_model2vec": fastest_m2v["name"] if fastest_m2v else None, "rows": rows, "table": text,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {a.out} in {report['seconds']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
