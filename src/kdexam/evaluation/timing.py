"""Timing a predictor for ``kdexam bench`` (:mod:`kdexam.evaluation.efficiency`): fixed threads, the
texts cut into batches, each batch timed end to end (``predict``: text in, prediction out) and split
into *tokenize* and *model*, and the per-batch times summarised as p50, p95 and mean in ms.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager

import numpy as np


@contextmanager
def bench_threads(n: int):
    """Measure on ``n`` threads: torch's, and with ``n`` = 1 the Rust tokenizer's too (its batch calls
    in the PyTorch path would use every core; it reads the setting at each call). Both restored after."""
    import torch

    threads, parallel = torch.get_num_threads(), os.environ.get("TOKENIZERS_PARALLELISM")
    torch.set_num_threads(n)
    if n == 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if parallel is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = parallel


def text_batches(examples: list, batch_size: int) -> list[list]:
    """``ceil(n / batch_size)`` batches of consecutive texts, the last one wrapping around."""
    n = len(examples)
    return [[examples[(j * batch_size + k) % n] for k in range(batch_size)] for j in range(math.ceil(n / batch_size))]


def stats_ms(seconds: list[float]) -> dict:
    """``p50``, ``p95`` (percentiles, linear interpolation) and ``mean`` in milliseconds."""
    ms = np.asarray(seconds) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "mean": float(ms.mean())}


def steps(predictor):
    """``(prepare, run)`` of a predictor: raw inputs → the padded model inputs of each model call,
    and those inputs → logits; the calls are the ones ``predict`` makes (length-sorted, at most
    ``MAX_TOKENS`` padded positions each: :func:`~kdexam.inference.serving.capped_batches`), so the
    model-only time is the model's part of the end-to-end time. The torch-free
    :class:`~kdexam.inference.serving.ServingPredictor` or a PyTorch
    :class:`~kdexam.inference.predictor.Predictor`."""
    from kdexam.inference.serving import MAX_TOKENS, capped_batches

    if hasattr(predictor, "feed"):
        def prepare(items):
            return [predictor.feed(encs) for _, encs in predictor.batches(predictor.items(items), len(items), MAX_TOKENS)]

        return prepare, lambda feeds: [predictor.run(f) for f in feeds]

    def prepare_tensors(items):
        from kdexam.data.encode import Collator
        from kdexam.inference.predictor import MODEL_INPUTS

        features = predictor.encode(predictor.examples(items))
        collate = Collator(predictor.tokenizer, predictor.task)
        return [{k: v for k, v in collate([dict(features.rows[i], index=i) for i in idx]).items() if k in MODEL_INPUTS}
                for idx in capped_batches(features.lengths, len(items), MAX_TOKENS)]

    return prepare_tensors, lambda batches: [predictor.runner(b) for b in batches]


def time_batches(predictor, batches: list[list], warmup: int, repeats: int) -> tuple[list[float], list[float], list[float]]:
    """Untimed ``warmup`` predictions, then ``repeats`` timed batches, each timed twice: split into
    *tokenize* (raw inputs → padded tensors) and *model* (forward, logits on the CPU), and as the
    whole ``predictor.predict`` call (*end to end*: text in, prediction out). The two timings of a
    batch are taken one after the other, in alternating order, so that both see the machine in the
    same state (timed in two separate loops, the model alone could come out slower than the whole
    call on a busy machine). Seconds."""
    from time import perf_counter

    prepare, run = steps(predictor)
    for i in range(warmup):
        predictor.predict(batches[i % len(batches)], batch_size=len(batches[0]))
    tok, model, e2e = [], [], []

    def split(batch) -> None:
        t0 = perf_counter()
        inputs = prepare(batch)
        t1 = perf_counter()
        run(inputs)
        t2 = perf_counter()
        tok.append(t1 - t0)
        model.append(t2 - t1)

    def whole(batch) -> None:
        t0 = perf_counter()
        predictor.predict(batch, batch_size=len(batch))
        e2e.append(perf_counter() - t0)

    for i in range(repeats):
        batch = batches[i % len(batches)]
        first_split = (i + i // len(batches)) % 2 == 0  # (each batch in both orders, whatever the number of batches)
        for timing in ((split, whole) if first_split else (whole, split)):
            timing(batch)
    return tok, model, e2e


def latency_row(backend: str, device: str, batch_size: int, warmup: int, tok: list[float], model: list[float],
                e2e: list[float]) -> dict:
    """One measured configuration: latencies (ms), throughputs (examples/s) and the speedup slots."""
    return {"backend": backend, "device": device, "batch_size": batch_size, "warmup": warmup, "repeats": len(model),
            "e2e_ms": stats_ms(e2e), "latency_ms": stats_ms(model), "tokenize_ms": stats_ms(tok),
            "throughput": batch_size / float(np.mean(model)), "e2e_throughput": batch_size / float(np.mean(e2e)),
            "speedup": None, "model_speedup": None}
