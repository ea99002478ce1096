"""The Python API. Every CLI command is a thin wrapper over one of these functions.

>>> from kdexam import api
>>> metrics = api.finetune_teacher(data="movie-sentiment", model="minilm-l6", out="runs/teacher-ms", epochs=2)
>>> clf = api.load_student("runs/bilstm-ms")
>>> clf.predict(["a gripping, funny film"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdexam.config import DistillRunConfig, TeacherRunConfig, load_config

TEACHER_FLAGS = {
    "data": "data.name", "task": "data.task", "text_column": "data.text_column",
    "text_pair_column": "data.text_pair_column", "label_column": "data.label_column",
    "max_train": "data.max_train", "max_eval": "data.max_eval", "max_length": "data.max_length",
    "model": "model", "out": "out", "seed": "seed", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "learning_rate": "train.learning_rate", "patience": "train.patience",
    "evals_per_epoch": "train.evals_per_epoch", "num_threads": "train.num_threads",
    "mixed_precision": "train.mixed_precision",
}


DISTILL_FLAGS = {
    **{k: v for k, v in TEACHER_FLAGS.items() if k != "model"},
    "teacher": "teacher", "student": "student.kind", "embeddings": "student.embeddings",
    "vectors_file": "student.vectors_file", "embedding_dim": "student.embedding_dim",
    "hidden_size": "student.hidden_size", "pooling": "student.pooling", "pair_mode": "student.pair_mode",
    "crf": "student.crf", "cache_teacher": "cache_teacher",
}


def _overrides(flags: dict[str, Any], table: dict[str, str]) -> dict[str, Any]:
    unknown = set(flags) - set(table)
    if unknown:
        raise TypeError(f"unknown argument(s): {', '.join(sorted(unknown))}")
    return {table[k]: (str(v) if isinstance(v, Path) else v) for k, v in flags.items()}


def teacher_config(config: str | Path | None = None, **flags: Any) -> TeacherRunConfig:
    """Resolve a teacher config from a YAML file and keyword overrides (the CLI flag names)."""
    return load_config(TeacherRunConfig, config, _overrides(flags, TEACHER_FLAGS))


def finetune_teacher(config: str | Path | TeacherRunConfig | None = None, resume: bool = False, **flags: Any) -> dict:
    """Fine-tune a teacher; returns the content of its ``metrics.json``."""
    from kdexam.teachers.finetune import finetune_teacher as _finetune

    cfg = config if isinstance(config, TeacherRunConfig) else teacher_config(config, **flags)
    return _finetune(cfg, resume=resume)


def distill_config(config: str | Path | None = None, **flags: Any) -> DistillRunConfig:
    """Resolve a distillation config from a YAML file and keyword overrides (the CLI flag names)."""
    return load_config(DistillRunConfig, config, _overrides(flags, DISTILL_FLAGS))


def distill(config: str | Path | DistillRunConfig | None = None, resume: bool = False, **flags: Any) -> dict:
    """Distil a teacher run directory into a student; returns the content of its ``metrics.json``.

    >>> api.distill(teacher="runs/teacher-ms", data="movie-sentiment", student="bilstm", out="runs/bilstm")
    """
    from kdexam.training.distill import distill as _distill

    cfg = config if isinstance(config, DistillRunConfig) else distill_config(config, **flags)
    return _distill(cfg, resume=resume)


def load_student(path: str | Path, backend: str = "auto", quantized: bool = False, threads: int | None = None,
                 device: str | None = None):
    """A :class:`~kdexam.inference.predictor.Predictor` for a student run, a teacher run or an
    export folder: ``.predict(texts)`` tokenises, runs and decodes; no teacher needed.

    ``backend``: ``"auto"`` (ONNX when ``RUN/onnx`` holds an export of the current weights, else
    PyTorch), ``"pytorch"`` or ``"onnx"``; ``quantized=True`` uses the int8 ONNX model. (The
    PyTorch model itself, with tokenizer, spec and task: :func:`kdexam.students.registry.load_student`.)

    >>> clf = api.load_student("runs/bilstm-ms")
    >>> clf.predict(["a gripping, funny film"])
    [{'label': 'positive', 'scores': {'negative': 0.005, 'positive': 0.995}}]
    """
    from kdexam.inference.predictor import load_student as _load

    return _load(path, backend=backend, quantized=quantized, threads=threads, device=device)


def export(run: str | Path, format: str = "onnx", quantize: str | None = None, out: str | Path | None = None,
           data: str | None = None, max_examples: int | None = None, batch_size: int = 32) -> dict:
    """Export a student or teacher run to ONNX (``out``, default ``RUN/onnx``), int8 too with
    ``quantize="int8"``; checks parity with PyTorch on the validation split and returns
    ``export.json``'s content (``max_abs_logit_diff``, ``prediction_agreement``, ``metrics`` per
    backend, ``files``, ``opset``, ``parity_ok``)."""
    from kdexam.errors import KdexamError
    from kdexam.export.onnx import export_onnx

    if format != "onnx":
        raise KdexamError(f"Unknown export format '{format}'; kdexam exports --format onnx.")
    return export_onnx(run, out, quantize=quantize, data=data, max_examples=max_examples, batch_size=batch_size)


def benchmark(config: str | Path | None = None, **flags: Any) -> dict:
    """Measure parameters, disk size, latency (p50/p95 per batch size, PyTorch and ONNX Runtime),
    throughput and peak memory of run directories and their teachers (see
    :mod:`kdexam.evaluation.efficiency`). Keyword arguments are the fields of
    :class:`~kdexam.evaluation.efficiency.BenchConfig` (``models``, ``data``, ``threads``,
    ``batch_sizes``, ``n_texts``, ``repeats``, ``warmup``, ``onnx``, ``rss``, ``gpu``, ``save``, ``out``).

    >>> report = api.benchmark(models=["runs/bilstm-ms"], n_texts=200, out="bench.json")
    """
    from kdexam.evaluation.efficiency import BenchConfig, benchmark as _benchmark

    unknown = set(flags) - set(BenchConfig.model_fields)
    if unknown:
        raise TypeError(f"unknown argument(s): {', '.join(sorted(unknown))}")
    overrides = {k: ([str(m) for m in v] if k == "models" else str(v) if isinstance(v, Path) else v) for k, v in flags.items()}
    return _benchmark(load_config(BenchConfig, config, overrides))


def predict(model: str | Path, input: str | Path, output: str | Path | None = None, backend: str = "auto",
            quantized: bool = False, batch_size: int = 32) -> list[dict]:
    """Predict every input of a file (.txt, .jsonl, .conll; see
    :func:`kdexam.inference.predictor.read_inputs`); returns the JSONL records (input fields,
    then ``label``/``scores``, ``value`` or ``tokens``/``tags``) and writes them to ``output``."""
    from kdexam.inference.predictor import predict_file

    return predict_file(model, input, output, backend=backend, quantized=quantized, batch_size=batch_size)


def prepare_data(name: str, force: bool = False) -> Path:
    """Prepare a built-in dataset under the kdexam home; returns its directory."""
    from kdexam.data.builtin import prepare_dataset

    return prepare_dataset(name, force=force)


def prepare_model(name: str, force: bool = False) -> Path:
    """Prepare a built-in model under the kdexam home; returns its directory."""
    from kdexam.teachers.builtin_models import prepare_model as _prepare

    return _prepare(name, force=force)


def compare_runs(runs: list[str | Path]) -> list[dict]:
    """One row per run directory (from its ``metrics.json``): model, parameters, primary
    metric and score, for students retention and loyalty, and once ``kdexam bench`` has run,
    the fastest CPU backend at batch 1 with its p50 latency and speedup over the teacher."""
    import json

    from kdexam.errors import KdexamError

    rows = []
    for run in map(Path, runs):
        f = run / "metrics.json"
        if not f.is_file():
            raise KdexamError(f"'{run}' has no metrics.json; pass run directories written by 'kdexam teacher' or 'kdexam distill'.")
        m = json.loads(f.read_text(encoding="utf-8"))
        pm = m["primary_metric"]
        side = m.get("student") or m["teacher"]
        loyal = side.get("loyalty", {})
        seconds = m.get("seconds") or side.get("total_seconds")
        rows.append({
            "run": str(run), "model": side["name"] if "student" in m else f"teacher {Path(side['name']).name}",
            "params": side["params"], "metric": f"{pm} ({m['split']})", "score": side["metrics"].get(pm),
            "retention": m.get("retention"), "label_loyalty": loyal.get("label", loyal.get("regression")),
            "probability_loyalty": loyal.get("probability", loyal.get("pearson")),
            "minutes": None if seconds is None else seconds / 60,
            **_fastest_batch1(side.get("efficiency")),
        })
    return rows


def _fastest_batch1(efficiency: dict | None) -> dict:
    """From ``kdexam bench`` figures: the fastest CPU backend at batch 1, its p50 latency and speedup."""
    rows = [r for r in (efficiency or {}).get("latency", []) if r["batch_size"] == 1 and r["device"] == "cpu"]
    if not rows:
        return {"backend": None, "p50_ms": None, "speedup": None}
    best = min(rows, key=lambda r: r["latency_ms"]["p50"])
    return {"backend": best["backend"], "p50_ms": best["latency_ms"]["p50"], "speedup": best["speedup"]}
