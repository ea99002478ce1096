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
from kdexam.config.flags import (  # noqa: F401  (the flag tables and parsers are part of the api)
    DISTILL_FLAGS,
    TEACHER_FLAGS,
    Flag,
    _no_flags_with_a_config,
    _overrides,
    _resolve,
    parse_objective,
    parse_set,
    split_top_level,
)
from kdexam.errors import KdexamError, UnknownArguments
from kdexam.inference.serving import MAX_TOKENS
from kdexam.teachers.loader import allow_remote_code


def teacher_config(config: str | Path | None = None, set: Any = None, **flags: Any) -> TeacherRunConfig:
    """Resolve a teacher config: the YAML file, then ``set`` (``["train.warmup_ratio=0.2", ...]``
    as ``--set`` takes them, or a mapping of dotted keys to values), then the keyword flags
    (:data:`TEACHER_FLAGS`, the CLI flag names with underscores; ``None`` means not given)."""
    return _resolve(TeacherRunConfig, config, _overrides(flags, TEACHER_FLAGS, set))


def finetune_teacher(config: str | Path | TeacherRunConfig | None = None, resume: bool = False, overwrite: bool = False,
                     **flags: Any) -> dict:
    """Fine-tune a teacher; returns the content of its ``metrics.json``."""
    from kdexam.teachers.finetune import finetune_teacher as _finetune

    from kdexam.rundir import check_config_file

    _no_flags_with_a_config(config, TeacherRunConfig, flags)
    cfg = config if isinstance(config, TeacherRunConfig) else teacher_config(config, **flags)
    check_config_file(None if isinstance(config, TeacherRunConfig) else config, cfg.out, resume)
    return _finetune(cfg, resume=resume, overwrite=overwrite)


def distill_config(config: str | Path | None = None, set: Any = None, **flags: Any) -> DistillRunConfig:
    """Resolve a distillation config: the YAML file, then ``set`` (as for :func:`teacher_config`),
    then the keyword flags (:data:`DISTILL_FLAGS`): e.g. ``text_column="sentence"``,
    ``layers="0,5"``, ``objective=["kl:temperature=2,weight=0.5", "gold:weight=0.5"]`` (strings as
    on the command line, or the config's own values: ``layers=[0, 5]``, ``objective=[{"name": "kl"}]``)."""
    overrides = _overrides(flags, DISTILL_FLAGS, set)
    if "teachers" in overrides:  # --teacher (once or repeated) replaces the config file's teacher (and a --set one)
        if flags.get("teacher"):
            overrides.pop("teacher", None)
        overrides = {"teacher": None, **overrides}
    return _resolve(DistillRunConfig, config, overrides)


def distill(config: str | Path | DistillRunConfig | None = None, resume: bool = False, overwrite: bool = False,
            **flags: Any) -> dict:
    """Distil a teacher run directory into a student; returns the content of its ``metrics.json``
    (for a ``general=True`` run: ``"general": true`` and no task metrics).

    >>> api.distill(teacher="runs/teacher-ms", data="movie-sentiment", student="bilstm", out="runs/bilstm")
    """
    from kdexam.training.distill import distill as _distill

    from kdexam.rundir import check_config_file

    _no_flags_with_a_config(config, DistillRunConfig, flags)
    cfg = config if isinstance(config, DistillRunConfig) else distill_config(config, **flags)
    check_config_file(None if isinstance(config, DistillRunConfig) else config, cfg.out, resume)
    result = _distill(cfg, resume=resume, overwrite=overwrite)
    return result.to_dict() if hasattr(result, "to_dict") else result


def evaluate(run: str | Path, data: str | None = None, split: str = "test", max_eval: int | None = None,
             teacher: str | Path | None = None, batch_size: int = 64, out: str | Path | None = None,
             trust_remote_code: bool = False, **data_options: Any) -> dict:
    """Score a teacher or student run on another dataset, split or held-out file, with loyalty
    and retention when the student's teacher is at hand; returns the result as ``metrics.json``
    holds one (plus ``evaluated``). ``data_options``: ``DataConfig`` fields such as
    ``text_column`` or ``label_column`` (the run's own by default). ``out``: also write it there.
    ``trust_remote_code``: let a model whose config names its own Python code run it (as for
    :func:`distill`; this and the other serving functions below take it too).

    >>> api.evaluate("runs/bilstm-ms", data="heldout.csv")["student"]["metrics"]["accuracy"]
    """
    from kdexam.evaluation.evaluate import evaluate_run_dir

    allow_remote_code(trust_remote_code)
    return evaluate_run_dir(run, data=data, split=split, max_eval=max_eval, teacher=teacher, batch_size=batch_size,
                            data_options=data_options, out=out).to_dict()


def load_student(path: str | Path, backend: str = "auto", quantized: bool = False, threads: int | None = None,
                 device: str | None = None, trust_remote_code: bool = False):
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

    allow_remote_code(trust_remote_code)
    return _load(path, backend=backend, quantized=quantized, threads=threads, device=device)


def export(run: str | Path, format: str = "onnx", quantize: str | None = None, out: str | Path | None = None,
           data: str | None = None, max_examples: int | None = None, batch_size: int = 32, trust_remote_code: bool = False) -> dict:
    """Export a student or teacher run to ONNX (``out``, default ``RUN/onnx``), int8 too with
    ``quantize="int8"``; checks parity with PyTorch on the validation split and returns
    ``export.json``'s content (``max_abs_logit_diff``, ``prediction_agreement``, ``metrics`` per
    backend, ``files``, ``opset``, ``parity_ok``)."""
    from kdexam.errors import KdexamError
    from kdexam.export.onnx import export_onnx

    if format != "onnx":
        raise KdexamError(f"Unknown export format '{format}'; kdexam exports --format onnx.")
    if max_examples is not None and max_examples < 1 or batch_size < 1:
        raise KdexamError(f"max_examples and batch_size must be at least 1 (got {max_examples} and {batch_size}).")
    allow_remote_code(trust_remote_code)
    return export_onnx(run, out, quantize=quantize, data=data, max_examples=max_examples, batch_size=batch_size)


def benchmark(config: str | Path | None = None, **flags: Any) -> dict:
    """Measure parameters, disk size, latency (p50/p95 per batch size, PyTorch and ONNX Runtime),
    throughput and peak memory of run directories and their teachers (see
    :mod:`kdexam.evaluation.efficiency`). Keyword arguments are the fields of
    :class:`~kdexam.evaluation.efficiency.BenchConfig` (``models``, ``data``, ``threads``,
    ``batch_sizes``, ``n_texts``, ``repeats``, ``warmup``, ``onnx``, ``rss``, ``gpu``, ``save``, ``out``,
    ``trust_remote_code``).

    >>> report = api.benchmark(models=["runs/bilstm-ms"], n_texts=200, out="bench.json")
    """
    from kdexam.evaluation.efficiency import BenchConfig, benchmark as _benchmark

    unknown = set(flags) - set(BenchConfig.model_fields)
    if unknown:
        raise UnknownArguments(sorted(unknown))
    if isinstance(flags.get("models"), (str, Path)):  # (one run: a string was read as a list of its characters)
        flags["models"] = [flags["models"]]
    overrides = {k: ([str(m) for m in v] if k == "models" else str(v) if isinstance(v, Path) else v) for k, v in flags.items()}
    return _benchmark(load_config(BenchConfig, config, overrides))


def predict(model: str | Path, input: str | Path, output: str | Path | None = None, backend: str = "auto",
            quantized: bool = False, batch_size: int = 32, max_tokens: int | None = MAX_TOKENS, trust_remote_code: bool = False) -> list[dict]:
    """Predict every input of a file (.txt, .jsonl, .conll; see
    :func:`kdexam.inference.inputs.read_inputs`); returns the JSONL records (input fields,
    then ``label``/``scores``, ``value`` or ``tokens``/``tags``) and writes them to ``output``.
    Batches hold at most ``batch_size`` inputs and ``max_tokens`` padded positions (``None``: no cap)."""
    from kdexam.inference.inputs import predict_file

    allow_remote_code(trust_remote_code)
    return predict_file(model, input, output, backend=backend, quantized=quantized, batch_size=batch_size, max_tokens=max_tokens)


def prepare_data(name: str, force: bool = False) -> Path:
    """Prepare a built-in dataset under the kdexam home; returns its directory."""
    from kdexam.data.builtin import prepare_dataset

    return prepare_dataset(name, force=force)


def prepare_model(name: str, force: bool = False) -> Path:
    """Prepare a built-in model under the kdexam home; returns its directory."""
    from kdexam.teachers.builtin_models import prepare_model as _prepare

    return _prepare(name, force=force)


def compare_runs(runs: list[str | Path]) -> list[dict]:
    """One row per run directory (its :class:`~kdexam.evaluation.results.RunResult`): model,
    parameters, primary metric and score, for students retention and loyalty, and once
    ``kdexam bench`` has run, the fastest CPU backend at batch 1 with its p50 latency and
    speedup over the teacher. A general-distillation run shows its validation objective."""
    from kdexam.evaluation.results import read_result

    rows = []
    for run in map(Path, runs):
        r = read_result(run)
        side = r.student or r.teacher
        loyal = side.loyalty or {}
        seconds = r.seconds or side.extra.get("total_seconds")
        metric = "validation objective" if r.general else f"{r.primary_metric} ({r.split})"
        score = side.metrics.get("validation_objective") if r.general else r.score
        rows.append({
            "run": str(run), "model": side.name if r.student else f"teacher {Path(side.name).name}",
            "params": side.params, "metric": metric, "score": score,
            "retention": r.retention, "label_loyalty": loyal.get("label"), "probability_loyalty": loyal.get("probability"),
            "regression_loyalty": loyal.get("regression"), "loyalty_pearson": loyal.get("pearson"),
            "minutes": None if seconds is None else seconds / 60,
            **_fastest_batch1(side.efficiency),
        })
    return rows


def _fastest_batch1(efficiency: dict | None) -> dict:
    """From ``kdexam bench`` figures: the fastest CPU backend at batch 1 end to end (text in,
    prediction out), its p50 latency and speedup. Figures of an older bench (model-only) are not used."""
    rows = [r for r in (efficiency or {}).get("latency", []) if r["batch_size"] == 1 and r["device"] == "cpu" and "e2e_ms" in r]
    if not rows:
        return {"backend": None, "p50_ms": None, "speedup": None}
    best = min(rows, key=lambda r: r["e2e_ms"]["p50"])
    return {"backend": best["backend"], "p50_ms": best["e2e_ms"]["p50"], "speedup": best["speedup"]}


def exam(config: str | Path | None = None, out: str | Path | None = None, set: Any = None,
         max_latency_ms: float | None = None, max_size_mb: float | None = None, min_retention: float | None = None,
         export_best: bool = False, trust_remote_code: bool = False) -> dict:
    """Run an exam (:mod:`kdexam.exam`) or report on one already run.

    ``config``: an exam YAML file or a built-in exam (``default``, ``quick``, ``full``; default
    ``default``), run into ``out``; or an exam directory (holding ``results.sqlite``) to report on
    again, e.g. with another budget. ``set``: dotted overrides of the exam config (``["seeds=[1,2]"]``).
    The budget (``max_latency_ms``, ``max_size_mb``, ``min_retention``) picks the recommended student;
    ``export_best`` exports it. ``trust_remote_code``: let models that bring their own Python code run
    it (the exam config's ``trust_remote_code``). Returns ``{"summary", "recommendations", "files",
    "exported"?, "run"?}``.

    >>> api.exam("quick", out="exams/quick", max_latency_ms=1.0)
    """
    from kdexam.exam import load_exam_config
    from kdexam.exam.recommend import export_best as _export_best
    from kdexam.exam.report import render
    from kdexam.exam.runner import run_exam
    from kdexam.exam.store import Store

    limits = {"max_latency_ms": max_latency_ms, "max_size_mb": max_size_mb, "min_retention": min_retention}
    given = {k: v for k, v in limits.items() if v is not None}
    for k, v in given.items():
        if not 0 < v < float("inf"):  # (NaN too)
            raise KdexamError(f"--{k.replace('_', '-')} must be a positive number (got {v}).")
    if config is not None and (Path(config) / "results.sqlite").is_file():
        exam_dir, ran = Path(config), None
        if out is not None and Path(out).resolve() != exam_dir.resolve():
            raise KdexamError(f"'{config}' is an exam directory, reported in place; drop --out or pass the exam config instead.")
        if set:
            raise KdexamError(f"'{config}' is an exam directory, reported again without running anything, so --set has "
                              "no effect there; drop --set, or pass the exam config with --out to run it.")
    elif config is not None and Path(config).is_dir():
        raise KdexamError(f"'{config}' is a directory without results.sqlite; pass an exam YAML file, a built-in exam, "
                          "or a directory written by 'kdexam exam'.")
    else:
        overrides = dict(parse_set(s) for s in ([set] if isinstance(set, str) else set or []))
        if trust_remote_code:
            overrides["trust_remote_code"] = True
        cfg = load_exam_config(config, overrides)  # (first: a mistyped exam directory is said as such)
        if out is None:
            raise KdexamError("No exam directory given; pass --out DIR.")
        trust_remote_code = cfg.trust_remote_code
        here = Path(out).resolve()
        for t in cfg.teachers:  # a given teacher run is read, never written into (or around)
            there = Path(t.run).resolve() if t.run else None
            if there is not None and (here == there or here in there.parents or there in here.parents):
                raise KdexamError(f"--out '{out}' {'is' if here == there else 'is inside' if there in here.parents else 'holds'} "
                                  f"the teacher run '{t.run}' of this exam; pass another --out.")
        exam_dir, ran = Path(out), run_exam(cfg, out)
    with Store(exam_dir / "results.sqlite") as store:
        if ran is None:  # reported in place: the exam's own trust_remote_code holds for --export-best too
            trust_remote_code = trust_remote_code or bool((store.get("config") or {}).get("trust_remote_code"))
        # the limits given now apply on top of the exam config's own; none given: the last report's budget
        configured = (cfg.budget.model_dump(exclude_none=True) if ran is not None else
                      {k: v for k, v in ((store.get("config") or {}).get("budget") or {}).items() if v is not None})
        budget = {**configured, **given} if given or ran is not None else store.get("budget") or configured
        result = render(exam_dir, store, budget)
        if ran is None:  # (a run says its own count)
            cells = store.get("cells") or []
            done = sum(r["status"] == "done" for r in store.rows(cells))
            if done < len(cells):
                result["unfinished"] = {"done": done, "cells": len(cells)}
    if ran is not None:
        result["run"] = ran
    if export_best:
        result["exported"] = _export_best(result["recommendations"], exam_dir, trust_remote_code)
    return result
