"""Benchmark: a training step's forward + backward with torch's dropout against kdexam's FastDropout.

Each student kind is built as ``kdexam distill`` builds it (``bench/train_throughput.py``'s set-up:
KL at T = 4, cached teacher logits, batch 32, movie-sentiment's first 1,000 training sentences),
and its plain ``nn.Dropout`` modules are swapped between torch's own and
:class:`kdexam.training.dropout.FastDropout` on every batch, the order alternating, over the same
batches (``--batches``, ``--repeats`` passes), one thread. Reports the mean time of each, their
ratio, and the median of the per-batch ratios (the machine's drift falls on both).

    python bench/dropout_ab.py --teacher exams/default/teachers/teacher-movie-sentiment-minilm-l6-dc2db290 \\
        --kinds bert-mini teacher-layers:2 bilstm cnn --out bench/results/dropout_ab.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import torch

import train_throughput
from kdexam.training.dropout import FastDropout


def measure(kind: str, a) -> dict:
    model, loader, side, *_ = train_throughput.setup(a.teacher, kind, a.max_train, a.batch_size)
    model.train()
    batches = [b for _, b in zip(range(a.batches), loader)]
    modules = dict(model.named_modules())
    plain = [(parent, name, child) for parent in modules.values() for name, child in parent.named_children()
             if type(child) is torch.nn.Dropout]

    def use(fast: bool) -> None:
        for parent, name, child in plain:
            setattr(parent, name, FastDropout(child.p) if fast else child)

    def step(batch) -> float:
        t = time.perf_counter()
        model(batch, side(batch, "cpu"))[0].backward()
        model.zero_grad()
        return time.perf_counter() - t

    times = {False: [], True: []}
    for _ in range(a.repeats):
        for i, batch in enumerate(batches):
            for fast in ((False, True) if i % 2 == 0 else (True, False)):
                use(fast)
                times[fast].append(step(batch))
    torch_ms, fast_ms = (1000 * statistics.fmean(times[f]) for f in (False, True))
    row = {"kind": kind, "dropouts": len(plain), "torch_ms": round(torch_ms, 1), "fast_ms": round(fast_ms, 1),
           "ratio": round(torch_ms / fast_ms, 3),
           "median_batch_ratio": round(statistics.median(x / y for x, y in zip(times[False], times[True])), 3)}
    print(row)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--kinds", nargs="+", default=["bert-mini", "teacher-layers:2", "bilstm", "cnn"])
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/dropout_ab.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = [measure(kind, a) for kind in a.kinds]
    lines = ["| student | nn.Dropout modules | torch dropout ms | FastDropout ms | ratio | median per-batch ratio |", "|---" * 6 + "|"]
    lines += [f"| {r['kind']} | {r['dropouts']} | {r['torch_ms']} | {r['fast_ms']} | {r['ratio']:.3f} | {r['median_batch_ratio']:.3f} |" for r in rows]
    print("\n".join(lines))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"benchmark": "dropout_ab", "torch": torch.__version__, "threads": 1,
                                       "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows,
                                       "table": "\n".join(lines)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
