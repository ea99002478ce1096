"""Peak memory of a fresh serving process for one model and backend (part of ``kdexam bench``).

The peak resident set size (Linux ``VmHWM``; ``ru_maxrss`` elsewhere) of a new process that
loads the model for one backend and predicts every text at one batch size: for ``pytorch``
``python -m kdexam.evaluation.memory --rss …`` (kdexam with torch and transformers), for ONNX the
export folder's own ``kdexam_serving.py --rss`` (onnxruntime, tokenizers and numpy: what a
service runs). ``baseline_mb`` is the same process after its imports, before the model loads, so
``peak_mb − baseline_mb`` is the model's own share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kdexam.inference.serving import peak_rss_mb as _maxrss_mb  # (VmHWM on Linux: ru_maxrss carries a parent's peak over exec)
from kdexam.teachers.loader import allow_remote_code, remote_code


def peak_rss(model_path: Path, backend: str, quantized: bool, texts_file: Path, batch_size: int, threads: int,
             timeout: float = 600, max_tokens: int | None = None) -> dict:
    """Peak memory of a fresh serving process for one model and backend (MB): ``pytorch`` runs
    ``python -m kdexam.evaluation.memory --rss`` (kdexam's PyTorch predictor); ``onnx`` runs
    the export folder's own ``kdexam_serving.py --rss`` (onnxruntime, tokenizers and numpy only,
    as a service would); either with its default token cap unless ``max_tokens`` is given (0: none)."""
    import kdexam

    if backend == "onnx":
        from kdexam.export.onnx import SERVING_FILE

        cmd = [sys.executable, str(Path(model_path) / SERVING_FILE), str(model_path), "--rss", str(texts_file),
               "--batch-size", str(batch_size), "--threads", str(threads), "--unchecked"]  # (measured, not judged)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), RAYON_RS_NUM_CPUS=str(threads))
        env.pop("PYTHONPATH", None)
    else:
        cmd = [sys.executable, "-m", "kdexam.evaluation.memory", "--rss", str(model_path), "--backend", backend,
               "--texts", str(texts_file), "--batch-size", str(batch_size), "--threads", str(threads)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(kdexam.__file__).parents[1]), os.environ.get("PYTHONPATH")])))
    if quantized:
        cmd.append("--quantized")
    if max_tokens is not None:
        cmd += ["--max-tokens", str(max_tokens)]
    if backend != "onnx" and remote_code()["trust_remote_code"]:  # the fresh process loads the model as this one does
        cmd.append("--trust-remote-code")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"peak-memory process for {model_path} ({backend}) failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _import_architecture(run: Path) -> None:
    """Import the code a Hugging Face model's loading imports (transformers imports lazily: its
    modeling and tokenizer modules, ~140 MB for a BERT teacher), so that the baseline holds it and
    ``peak - baseline`` is the model's share; nothing for kdexam's own students."""
    if not (run / "config.json").is_file() or not _known_architecture(run):
        return  # (a model that brings its own code: its loading imports it, counted as the model's)
    try:
        from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast  # noqa: F401

        AutoModel._model_mapping[type(AutoConfig.from_pretrained(run))]  # (the lookup imports the modeling module)
    except Exception:  # an architecture transformers does not know: its loading counts it, as before
        pass


def _known_architecture(run: Path) -> bool:
    """A config.json without ``auto_map`` (a model whose code is transformers', not its own)."""
    try:
        return "auto_map" not in json.loads((run / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _rss_child(argv: list[str]) -> None:
    """``python -m kdexam.evaluation.memory --rss MODEL --backend pytorch --texts FILE …``: load
    the model, predict every text, print ``{"baseline_mb", "loaded_mb", "peak_mb"}`` as JSON."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m kdexam.evaluation.memory")
    ap.add_argument("--rss", required=True)
    ap.add_argument("--backend", choices=("pytorch",), required=True)
    ap.add_argument("--quantized", action="store_true")
    ap.add_argument("--texts", required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--trust-remote-code", action="store_true")
    ap.add_argument("--max-tokens", type=int, default=None, help="padded positions per call (default: the predictor's; 0: none)")
    a = ap.parse_args(argv)
    import torch

    from kdexam.inference.predictor import load_student

    allow_remote_code(a.trust_remote_code)

    torch.set_num_threads(a.threads)
    # the libraries loading needs are counted in the baseline, so peak - baseline is the model's share
    import transformers  # noqa: F401

    import kdexam.data.encode  # noqa: F401
    import kdexam.students.registry  # noqa: F401  (kdexam.tasks and the student classes)

    _import_architecture(Path(a.rss))
    baseline = _maxrss_mb()
    predictor = load_student(a.rss, backend="pytorch", threads=a.threads)
    loaded = _maxrss_mb()
    items = json.loads(Path(a.texts).read_text(encoding="utf-8"))
    cap = {} if a.max_tokens is None else {"max_tokens": a.max_tokens or None}
    predictor.predict_logits(items, batch_size=a.batch_size, **cap)
    print(json.dumps({"baseline_mb": baseline, "loaded_mb": loaded, "peak_mb": _maxrss_mb()}))


if __name__ == "__main__":
    _rss_child(sys.argv[1:])
