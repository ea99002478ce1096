"""Benchmark: how close the BiLSTM student's step runs to the core's own fp32 arithmetic rate.

An LSTM layer's arithmetic is its two matrix products per step and direction, ``x·W_ihᵀ`` and
``h·W_hhᵀ``: 2·B·L·4H·(E + H) floating-point operations a direction for the forward pass, and about
twice that for the backward pass. Dividing by the measured time gives GFLOP/s, set against the
fastest of plain square fp32 matrix products (``torch.mm``, sides ``--gemm``) timed in the same
process, interleaved with it, one thread. A ratio near 1 means the step is bound by arithmetic: no engine change makes it
cheaper in fp32, only less arithmetic (a smaller student) or cheaper arithmetic (bf16) does.

The LSTM runs as kdexam's BiLSTM student runs it on CPU (``kdexam.students.bilstm.bidirectional_lstm``:
two one-way passes that reach PyTorch's oneDNN kernel) on a right-padded batch of ``--batch`` rows
of ``--length`` tokens.

    python bench/lstm_arithmetic.py --out bench/results/lstm_arithmetic.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from kdexam.students.bilstm import bidirectional_lstm

SIZES = {"bilstm": (384, 300), "bilstm-192": (192, 200)}  # (embedding width E, hidden size H) of vs_textbrewer's students


def lstm_forward_flops(batch: int, length: int, width: int, hidden: int) -> int:
    """Multiply-adds ×2 of one bidirectional layer's forward pass: 2 directions · 2·B·L·4H·(E + H)."""
    return 2 * 2 * batch * length * 4 * hidden * (width + hidden)


def gflops(work: int, seconds: float) -> float:
    return work / seconds / 1e9


def timed(fn, repeats: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def measure(name: str, batch: int, length: int, gemm_sides: list[int], rounds: int, repeats: int) -> dict:
    width, hidden = SIZES[name]
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(width, hidden, batch_first=True, bidirectional=True)
    x = torch.randn(batch, length, width)
    lengths, mask = torch.full((batch,), length), torch.ones(batch, length, dtype=torch.bool)
    squares = {n: (torch.randn(n, n), torch.randn(n, n)) for n in gemm_sides}
    xg = x.clone().requires_grad_(True)

    def forward():
        with torch.inference_mode():
            bidirectional_lstm(lstm, x, lengths, mask)

    def train_step():
        bidirectional_lstm(lstm, xg, lengths, mask).sum().backward()

    flops = lstm_forward_flops(batch, length, width, hidden)
    parts = {f"gemm_{n}": (lambda a=a, b=b: a @ b, 2 * n ** 3, None) for n, (a, b) in squares.items()}
    parts.update(lstm_forward=(forward, flops, False),
                 lstm_train_step=(train_step, 3 * flops, True))  # a training step: forward + backward ≈ 3× the forward's
    rates: dict[str, list[float]] = {k: [] for k in parts}
    for r in range(rounds + 1):  # round 0 warms up
        for key, (fn, work, training) in parts.items():
            if training is not None:
                lstm.train(training)
            rate = gflops(work, timed(fn, repeats))
            if r:
                rates[key].append(rate)
    med = {k: statistics.median(v) for k, v in rates.items()}
    med["gemm"] = max(v for k, v in med.items() if k.startswith("gemm_"))  # the reference: the fastest product
    return {"student": name, "embedding_dim": width, "hidden_size": hidden, "batch": batch, "length": length,
            "gflops_median": {k: round(v, 1) for k, v in med.items()},
            "forward_over_gemm": round(med["lstm_forward"] / med["gemm"], 2),
            "train_step_over_gemm": round(med["lstm_train_step"] / med["gemm"], 2),
            "train_step_ms": round(3 * flops / med["lstm_train_step"] / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=30, help="tokens a row (movie-sentiment's bucketed batches: about 20-40)")
    ap.add_argument("--gemm", type=int, nargs="+", default=[256, 512, 1024], help="sides of the reference square matrix products")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default="bench/results/lstm_arithmetic.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = [measure(name, a.batch, a.length, a.gemm, a.rounds, a.repeats) for name in SIZES]
    for r in rows:
        g = r["gflops_median"]
        print(f"{r['student']:11s} GEMM {g['gemm']:6.1f} GFLOP/s | LSTM forward {g['lstm_forward']:6.1f} "
              f"({r['forward_over_gemm']:.2f}× GEMM) | training step {g['lstm_train_step']:6.1f} "
              f"({r['train_step_over_gemm']:.2f}× GEMM, {r['train_step_ms']} ms)")
    report = {"benchmark": "lstm_arithmetic", "threads": 1, "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
