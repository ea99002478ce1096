"""One kdexam export timed in a fresh torch-free process, for ``bench/vs_model2vec.py``'s interleaved
rounds (the counterpart of ``model2vec_peer.py --time``):

    python bench/onnx_latency_child.py EXPORT_DIR --test test.jsonl [--quantized] [--threads 1] [--batch-size 1]

Imports the export folder's own ``kdexam_serving.py`` (onnxruntime, tokenizers, numpy; never torch or
kdexam), then prints the end-to-end latency of ``predict`` with the peer's protocol (``latency`` in
``model2vec_peer.py``) as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model2vec_peer import latency, pin_threads, read_jsonl  # bench/ is on the path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export_dir")
    ap.add_argument("--test", required=True)
    ap.add_argument("--quantized", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1)
    a = ap.parse_args()
    pin_threads(a.threads)
    sys.path.insert(0, str(Path(a.export_dir).resolve()))
    import kdexam_serving

    texts, _ = read_jsonl(a.test)
    predictor = kdexam_serving.load(a.export_dir, quantized=a.quantized, threads=a.threads)
    print(json.dumps(latency(predictor.predict, texts, a.batch_size)))


if __name__ == "__main__":
    main()
