"""Benchmark: the torch-free predictor's token cap (``max_tokens``), peak memory against speed.

A model call's memory grows with its padded size, rows × longest row: ONNX Runtime's LSTM
keeps the input projections of every position, 4 × hidden floats a position and direction,
so one batch of 32 long inputs adds tens of MB to a BiLSTM's serving process. For each cap
(``0`` = none) this measures, on the test split of the run's dataset:

- the peak RSS of a fresh serving process (the export folder's ``kdexam_serving.py --rss``,
  as ``kdexam bench`` runs it) predicting every test text at batch 32;
- the end-to-end p50 of ``predict`` on batches of 32 consecutive test texts (text in,
  prediction out), the caps interleaved round by round so that drift touches them alike;
- that the predictions are the same as without a cap (the logits to within ``atol``).

    python bench/serving_token_cap.py RUN [--quantized] --caps 0 1024 512 256 --threads 1 \
        --out bench/results/serving_token_cap.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from time import perf_counter

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run directory with an ONNX export (kdexam export RUN [--quantize int8])")
    ap.add_argument("--quantized", action="store_true")
    ap.add_argument("--caps", type=int, nargs="+", default=[0, 1024, 512, 256])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="bench/results/serving_token_cap.json")
    a = ap.parse_args()

    from kdexam.config import DistillRunConfig, load_config
    from kdexam.data.splits import load_data
    from kdexam.evaluation.efficiency import _texts_for_child, peak_rss, text_batches
    from kdexam.inference.serving import load

    run = Path(a.run)
    export_dir = run / "onnx"
    cfg = load_config(DistillRunConfig, run / "config.yaml", {})
    data = load_data(cfg.data, cfg.seed)
    items = _texts_for_child(data.test, data.task)
    with tempfile.TemporaryDirectory() as tmp:
        texts = Path(tmp) / "texts.json"
        texts.write_text(json.dumps(items), encoding="utf-8")
        memory = {cap: peak_rss(export_dir, "onnx", a.quantized, texts, 32, a.threads, max_tokens=cap) for cap in a.caps}

    clf = load(export_dir, quantized=a.quantized, threads=a.threads)
    inputs = clf.items(items)
    reference = clf.predict_with_logits(inputs, 32, None)
    key = {"classification": "label", "token-classification": "tags"}.get(data.task.kind, "value")
    agree = {}
    for cap in a.caps:
        preds, logits = clf.predict_with_logits(inputs, 32, cap or None)
        agree[cap] = {"same_predictions": [p[key] for p in preds] == [p[key] for p in reference[0]],
                      "max_abs_logit_diff": float(max(np.abs(x - y).max() for x, y in zip(logits, reference[1])))}
    batches = text_batches(inputs, 32)
    times: dict[int, list[float]] = {cap: [] for cap in a.caps}
    for _ in range(a.rounds):
        for cap in a.caps:
            clf.predict(batches[0], 32, cap or None)  # warm
            for b in batches:
                t0 = perf_counter()
                clf.predict(b, 32, cap or None)
                times[cap].append(perf_counter() - t0)
    rows = []
    base = float(np.median(times[a.caps[0]]))
    for cap in a.caps:
        p50 = float(np.median(times[cap]))
        rows.append({"max_tokens": cap or None, **memory[cap], **agree[cap], "e2e_p50_b32_ms": p50 * 1000,
                     "e2e_p95_b32_ms": float(np.percentile(times[cap], 95)) * 1000, "p50_vs_first": p50 / base})
    print(f"{'max_tokens':>10} {'loaded MB':>10} {'peak MB':>8} {'e2e p50 b32 ms':>15} {'÷ first':>8} {'same preds':>10} {'max |Δ logit|':>14}")
    for r in rows:
        print(f"{str(r['max_tokens']):>10} {r['loaded_mb']:>10.1f} {r['peak_mb']:>8.1f} {r['e2e_p50_b32_ms']:>15.2f} "
              f"{r['p50_vs_first']:>8.3f} {str(r['same_predictions']):>10} {r['max_abs_logit_diff']:>14.2e}")
    out = {"run": str(run), "quantized": a.quantized, "threads": a.threads, "rounds": a.rounds,
           "n_texts": len(items), "machine": platform.processor() or platform.machine(), "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()
