"""The model2vec side of ``bench/vs_model2vec.py``; runs in model2vec's own environment
(``bench/model2vec_env.sh``), never imports kdexam.

    .venv-m2v/bin/python bench/model2vec_peer.py --encoder DIR --train train.jsonl --test test.jsonl \\
        --out result.json --threads 1 [--pca-dims 256] [--name NAME] [--save DIR]

Train/test JSONL lines are ``{"text": str, "label": str}``. The encoder is a local Hugging Face
directory (the hub is switched off: ``HF_HUB_OFFLINE=1``). What is measured:

1. ``distill_seconds``: ``model2vec.distill.distill(DIR, pca_dims=…)`` — loading the encoder,
   every vocabulary token through it, mean pooling, PCA, SIF weighting (model2vec's defaults
   otherwise, float16 table);
2. ``fit_seconds``: ``StaticModelForClassification.from_static_model(...).fit(texts, labels,
   random_seed=42)`` with model2vec's defaults (embeddings fine-tuned with an MLP head, early
   stopping on a stratified 10 % split of the training texts). It is then turned into
   model2vec's serving form, ``to_pipeline()`` (a ``StaticModelPipeline``: tokenizer, embedding
   table and head, numpy only), and saved with ``save_pretrained`` to ``--save`` (default: the
   ``--out`` path without its suffix);
3. ``test_accuracy``: of that pipeline, loaded back from disk, on the test split;
4. ``latency``: end to end, text in → label out: ``pipeline.predict(batch)`` timed alone with
   ``time.perf_counter``; test texts in order (wrapping), 5 warm-up calls, then 200 timed calls at
   batch 1 and 40 at batch 32; p50, p95, mean in ms;
5. ``serving_memory``: ``VmHWM`` (peak RSS, MB = 2^20 bytes) of a fresh process of this
   environment: ``baseline_mb`` after importing ``model2vec.inference``, ``loaded_mb`` after
   loading the saved pipeline, ``peak_mb`` after predicting every test text in batches of 32;
   ``imported``: which of torch / transformers / sklearn that process ended up importing;
6. ``disk_bytes``: bytes of the files in the saved pipeline folder.

Threads: OMP/MKL/OpenBLAS (numpy), rayon (tokenizers) set to ``--threads`` before any import,
and ``torch.set_num_threads`` for distillation and fitting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WARMUP, CALLS, SEED = 5, {1: 200, 32: 40}, 42
HEAVY = {"torch", "transformers", "sklearn"}


def pin_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS", "RAYON_RS_NUM_CPUS"):
        os.environ[var] = str(threads)
    if threads == 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["HF_HUB_OFFLINE"] = "1"  # encoders are local directories
    os.environ.setdefault("TQDM_DISABLE", "1")  # model2vec's per-step progress bars flood the caller's log


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

    texts, _ = read_jsonl(test)
    baseline = peak_rss_mb()
    pipe = StaticModelPipeline.from_pretrained(folder)
    loaded = peak_rss_mb()
    for i in range(0, len(texts), 32):
        pipe.predict(texts[i:i + 32], use_multiprocessing=False)
    imported = sorted({m.split(".")[0] for m in sys.modules} & HEAVY)
    print(json.dumps({"baseline_mb": baseline, "loaded_mb": loaded, "peak_mb": peak_rss_mb(), "imported": imported}))


def time_child(folder: str, test: str, batch_size: int) -> None:
    """``--time FOLDER --test FILE``: load the saved pipeline in this fresh process and print the
    :func:`latency` of its predict call at ``batch_size`` as JSON (``bench/vs_model2vec.py``'s
    interleaved rounds)."""
    from model2vec.inference import StaticModelPipeline

    texts, _ = read_jsonl(test)
    pipe = StaticModelPipeline.from_pretrained(folder)
    print(json.dumps(latency(lambda b: pipe.predict(b, use_multiprocessing=False), texts, batch_size)))


def latency(predict, texts: list[str], batch_size: int) -> dict:
    import numpy as np

    def batch(i):
        return [texts[(i * batch_size + k) % len(texts)] for k in range(batch_size)]

    for i in range(WARMUP):
        predict(batch(i))
    times = []
    for i in range(WARMUP, WARMUP + CALLS[batch_size]):
        b = batch(i)
        t0 = time.perf_counter()
        predict(b)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "mean": float(ms.mean()),
            "calls": len(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder")
    ap.add_argument("--train")
    ap.add_argument("--test", required=True)
    ap.add_argument("--out")
    ap.add_argument("--save", help="folder for the served pipeline (default: --out without its suffix)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pca-dims", type=int, default=256)
    ap.add_argument("--name", default="model2vec")
    ap.add_argument("--rss", help=argparse.SUPPRESS)
    ap.add_argument("--time", help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args()
    pin_threads(a.threads)
    if a.rss:
        rss_child(a.rss, a.test)
        return
    if a.time:
        time_child(a.time, a.test, a.batch_size)
        return
    if not (a.encoder and a.train and a.out):
        ap.error("--encoder, --train and --out are required")

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
    clf = StaticModelForClassification.from_static_model(model=static).fit(train_x, train_y, random_seed=SEED)
    fit_seconds = time.perf_counter() - t0
    clf.to_pipeline().save_pretrained(str(save))

    pipe = StaticModelPipeline.from_pretrained(str(save))  # what a service loads
    preds = pipe.predict(test_x, use_multiprocessing=False)
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
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{a.name}: test accuracy {accuracy:.4f}, distill {distill_seconds:.1f} s + fit {fit_seconds:.1f} s, "
          f"e2e p50 {lat['1']['p50']:.3f} ms (batch 1) {lat['32']['p50']:.3f} ms (batch 32), "
          f"serving peak {memory['peak_mb']:.0f} MB, {result['disk_bytes']:,} bytes on disk")


if __name__ == "__main__":
    main()
