"""Benchmark: a distilled student exported to int8 ONNX against its teacher in PyTorch fp32,
measured in one run — CPU speed (batch-1 p50 latency) and accuracy on the test split.

1. ``kdexam export STUDENT --format onnx --quantize int8`` (with its parity check);
2. test-split task metric of the teacher (PyTorch fp32) and of the student (PyTorch fp32,
   ONNX fp32, ONNX int8), each through ``kdexam.load_student(...).predict``;
3. ``kdexam bench TEACHER STUDENT… --threads T``: latency p50/p95 at batch 1 and 32 of
   every backend on the same validation texts, peak memory in a fresh process.

Prints the ratios and writes JSON: ``speedup`` = teacher PyTorch p50 / student p50 at
batch 1, end to end (the whole predict call, text in, prediction out; the ONNX backends
served by the torch-free predictor), the model-only ratio beside it, and ``retention`` =
student test metric / teacher test metric, for each student backend. Targets: issue 5's
int8 ONNX speedup ≥ 20× (then model-only) and issue 11's ≥ 50× end to end, at retention ≥ 0.95.

    python bench/deploy_speedup.py --teacher runs/teacher-ms --students runs/bilstm-ms runs/cnn-ms \
        --threads 1 --out bench/results/deploy_speedup.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def test_metric(run: str, backend: str, quantized: bool, examples, task, threads: int) -> float:
    import kdexam

    clf = kdexam.load_student(run, backend=backend, quantized=quantized, threads=threads)
    items = [(e.text, e.text_pair) if task.text_pair else e.text for e in examples]
    preds = clf.predict(items, batch_size=64)
    key = {"classification": "label", "regression": "value", "token-classification": "tags"}[task.kind]
    return task.metrics([e.label for e in examples], [p[key] for p in preds])[task.primary_metric]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--students", nargs="+", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-texts", type=int, default=200)
    ap.add_argument("--out", default="bench/results/deploy_speedup.json")
    a = ap.parse_args()

    import torch

    from kdexam import api
    from kdexam.config import DistillRunConfig, load_config
    from kdexam.data.splits import load_data

    torch.set_num_threads(a.threads)
    cfg = load_config(DistillRunConfig, Path(a.students[0]) / "config.yaml", {})
    data = load_data(cfg.data, cfg.seed)  # the test split, as the distillation run read it
    started = time.perf_counter()
    exports = {s: api.export(s, quantize="int8") for s in a.students}
    teacher_score = test_metric(a.teacher, "pytorch", False, data.test, data.task, a.threads)
    scores = {s: {"pytorch": test_metric(s, "pytorch", False, data.test, data.task, a.threads),
                  "onnx": test_metric(s, "onnx", False, data.test, data.task, a.threads),
                  "onnx-int8": test_metric(s, "onnx", True, data.test, data.task, a.threads)} for s in a.students}
    report = api.benchmark(models=[a.teacher, *a.students], threads=a.threads, n_texts=a.n_texts, batch_sizes=[1, 32])
    by_run = {m["run"]: m for m in report["models"]}

    pm = data.task.primary_metric
    result = {"benchmark": "deploy_speedup", "dataset": data.name, "split": "test", "primary_metric": pm,
              "threads": a.threads, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "cpu": report["settings"].get("cpu"), "teacher": {"run": a.teacher, pm: teacher_score}, "students": []}
    print(f"teacher {a.teacher}: test {pm} {teacher_score:.4f} (PyTorch fp32)")
    for s in a.students:
        m = by_run[str(s)]
        rows = {(r["backend"], r["batch_size"]): r for r in m["latency"]}
        entry = {"run": s, "params": m["params"], "disk_bytes": m["disk_bytes"], "peak_rss_mb": m.get("peak_rss_mb"),
                 "parity": {"max_abs_logit_diff": exports[s]["max_abs_logit_diff"],
                            "prediction_agreement": exports[s]["prediction_agreement"]},
                 "backends": {}}
        for backend, score in scores[s].items():
            b1, b32 = rows[(backend, 1)], rows[(backend, 32)]
            entry["backends"][backend] = {pm: score, "retention": score / teacher_score,
                                          "e2e_p50_ms_batch1": b1["e2e_ms"]["p50"], "speedup_batch1": b1["speedup"],
                                          "model_p50_ms_batch1": b1["latency_ms"]["p50"],
                                          "model_speedup_batch1": b1["model_speedup"],
                                          "e2e_throughput_batch32": b32["e2e_throughput"], "speedup_batch32": b32["speedup"]}
            print(f"{s} {backend:>9}: test {pm} {score:.4f} (retention {score / teacher_score:.3f}), batch-1 end-to-end p50 "
                  f"{b1['e2e_ms']['p50']:.3f} ms ({b1['speedup']:.1f}x; model only {b1['latency_ms']['p50']:.3f} ms, "
                  f"{b1['model_speedup']:.1f}x), batch-32 {b32['e2e_throughput']:.0f} ex/s ({b32['speedup']:.1f}x)")
        int8 = entry["backends"]["onnx-int8"]
        entry["targets"] = {"e2e_speedup_batch1_ge_50": int8["speedup_batch1"] >= 50,
                            "model_speedup_batch1_ge_20": int8["model_speedup_batch1"] >= 20,
                            "retention_ge_0.95": int8["retention"] >= 0.95}
        result["students"].append(entry)
    t = by_run[str(a.teacher)]
    result["teacher"]["e2e_p50_ms"] = {f"{r['backend']}@{r['batch_size']}": r["e2e_ms"]["p50"] for r in t["latency"]}
    result["teacher"]["model_p50_ms"] = {f"{r['backend']}@{r['batch_size']}": r["latency_ms"]["p50"] for r in t["latency"]}
    result["teacher"]["peak_rss_mb"] = t.get("peak_rss_mb")
    result["seconds"] = round(time.perf_counter() - started, 1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()
