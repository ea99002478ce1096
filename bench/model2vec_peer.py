"""The model2vec side of ``bench/vs_model2vec.py``; runs in model2vec's own environment
(``bench/model2vec_env.sh``), never imports kdexam.

    .venv-m2v/bin/python bench/model2vec_peer.py --encoder DIR --train train.jsonl --test test.jsonl \\
        --out result.json --threads 1 [--pca-dims 256] [--name NAME]

What it does and measures (train/test JSONL lines are ``{"text", "label"}``):

1. ``model2vec.distill.distill(DIR, pca_dims=…)``: every vocabulary token through the encoder,
   mean-pooled, PCA, SIF weighting (model2vec's defaults otherwise) — ``distill_seconds``;
2. ``StaticModelForClassification.from_static_model(...).fit(texts, labels)`` with model2vec's
   defaults (embeddings fine-tuned with an MLP head, early stopping on a 10 % split of the
   training texts, seed 42) — ``fit_seconds``; then ``to_pipeline()``, model2vec's serving form
   (numpy only: embedding table + MLP head), saved with ``save_pretrained`` to ``--save``;
3. test accuracy of the saved pipeline, loaded back from disk;
4. end-to-end latency, text in → label out: ``pipeline.predict(batch)`` timed with
   ``time.perf_counter``; test texts in order (wrapping), 5 warm-up calls, then 200 timed
   calls at batch 1 and 40 at batch 32; p50, p95, mean in ms;
5. serving memory: peak RSS (``VmHWM``) of a fresh process of this environment that imports
   model2vec, loads the saved pipeline and predicts every test text at batch 32;
6. bytes on disk of the saved pipeline folder.

Threads: OMP/MKL/OpenBLAS/tokenizers (``RAYON_RS_NUM_CPUS``) set to ``--threads`` before any import.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WARMUP, CALLS = 5, {1: 200, 32: 40}


def pin_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_RS_NUM_CPUS"):
        os.environ[var] = str(threads)


def read_jsonl(path: str) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["text"] for r in rows], [str(r["label"]) for r in rows]


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_child(folder: str, test: str) -> None:
    """``--rss FOLDER --test FILE``: load the saved pipeline, predict every test text, print memory."""
    from model2vec.inference import StaticModelPipeline

    baseline = peak_rss_mb()
    pipe = StaticModelPipeline.from_pretrained(folder)
    loaded = peak_rss_mb()
    texts, _ = read_jsonl(test)
    pipe.predict(texts, batch_size=32, use_multiprocessing=False)
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "sklearn"})
    print(json.dumps({"baseline_mb": baseline, "loaded_mb": loaded, "peak_mb": peak_rss_mb(), "imported": heavy}))


def latency(predict, texts: list[str], batch_size: int) -> dict:
    import numpy as np

    def batch(i):
        return [texts[(i * batch_size + k) % len(texts)] for k in range(batch_size)]

    for i in range(WARMUP):
        predict(batch(i))
    times = []
    for i in range(CALLS[batch_size]):
        b = batch(i)
        t0 = time.perf_counter()
        predict(b)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "mean": float(ms.mean()), "calls": len(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder")
    ap.add_argument("--train")
    ap.add_argument("--test", required=True)
    ap.add_argument("--out")
    ap.add_argument("--save", help="folder for the served pipeline (default: next to --out)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pca-dims", type=int, default=256)
    ap.add_argument("--name", default="model2vec")
    ap.add_argument("--rss", help=argparse.SUPPRESS)
    a = ap.parse_args()
    pin_threads(a.threads)
    if a.rss:
        rss_child(a.rss, a.test)
        return

    import numpy as np
    import torch

    import model2vec
    from model2vec.distill import distill
    from model2vec.inference import StaticModelPipeline
    from model2vec.train import StaticModelForClassification

    torch.set_num_threads(a.threads)
    train_x, train_y = read_jsonl(a.train)
    test_x, test_y = read_jsonl(a.test)
    save = Path(a.save or Path(a.out).with_suffix("")).resolve()

    t0 = time.perf_counter()
    static = distill(model_name=a.encoder, pca_dims=a.pca_dims)
    distill_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    clf = StaticModelForClassification.from_static_model(model=static).fit(train_x, train_y)
    fit_seconds = time.perf_counter() - t0
    clf.to_pipeline().save_pretrained(str(save))

    pipe = StaticModelPipeline.from_pretrained(str(save))  # what a service loads
    preds = pipe.predict(test_x, batch_size=1024, use_multiprocessing=False)
    accuracy = float(np.mean([str(p) == y for p, y in zip(preds, test_y)]))

    def predict(batch):
        return pipe.predict(batch, use_multiprocessing=False)

    lat = {str(bs): latency(predict, test_x, bs) for bs in CALLS}
    child = subprocess.run([sys.executable, __file__, "--rss", str(save), "--test", a.test, "--threads", str(a.threads)],
                           capture_output=True, text=True, check=True)
    memory = json.loads(child.stdout.strip().splitlines()[-1])
    result = {"name": a.name, "encoder": a.encoder, "model2vec_version": model2vec.__version__, "pca_dims": a.pca_dims,
              "vocab_size": int(pipe.model.embedding.shape[0]), "dim": int(pipe.model.embedding.shape[1]),
              "distill_seconds": distill_seconds, "fit_seconds": fit_seconds, "test_accuracy": accuracy, "latency": lat,
              "serving_memory": memory, "disk_bytes": sum(f.stat().st_size for f in save.rglob("*") if f.is_file()),
              "threads": a.threads, "saved": str(save)}
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{a.name}: test accuracy {accuracy:.4f}, distill {distill_seconds:.0f} s + fit {fit_seconds:.0f} s, "
          f"e2e p50 {lat['1']['p50']:.3f} ms (batch 1) {lat['32']['p50']:.3f} ms (batch 32), "
          f"serving peak {memory['peak_mb']:.0f} MB, {result['disk_bytes'] / 1e6:.2f} MB on disk")


if __name__ == "__main__":
    main()
