"""Efficiency of students and their teachers: size, latency, throughput, memory (``kdexam bench``).

What is measured, per model (a student or teacher run directory):

- **parameters**: total, and without embeddings (every ``nn.Embedding``: word, position,
  segment), each shared tensor counted once;
- **disk**: bytes of ``model.safetensors``, ``model.onnx`` and ``model.int8.onnx`` (from
  ``RUN/onnx/`` when it holds an export of the current weights, else exported to a
  temporary folder for the run);
- **latency**, per backend (``pytorch`` fp32 through kdexam's PyTorch predictor; ``onnx``
  fp32 and ``onnx-int8`` through the torch-free serving predictor,
  :mod:`kdexam.inference.serving`; ``pytorch`` on ``cuda`` too when CUDA is present) and batch
  size: the same ``n_texts`` validation texts for every model, raw (strings, pairs or word
  lists), cut into batches in order (wrapping around). ``warmup`` predictions are run untimed,
  then ``repeats`` batches are timed (default ``max(20, ceil(n_texts / batch_size))``, so every
  text is timed at least once), twice (``time.perf_counter``):

  - **end to end** (``e2e_ms``, the headline figure): the whole ``predictor.predict(batch)``
    call, text in, prediction out — input checks, tokenization, padding, the model, decoding;
  - split: *tokenize* (``tokenize_ms``: raw inputs → padded tensors) and *model*
    (``latency_ms``, model only: the forward pass and the logits on the CPU; on CUDA after
    ``torch.cuda.synchronize``).

  Reported: ``p50`` and ``p95`` = the 50th and 95th percentiles of the per-batch times
  (``numpy.percentile``, linear interpolation) and their mean, in ms;
- **throughput** = batch size / mean model time (examples per second); ``e2e_throughput``
  = batch size / mean end-to-end time;
- **peak memory**: the peak resident set size (Linux ``VmHWM``; ``ru_maxrss`` elsewhere) of a
  fresh serving process that loads the model for one backend and predicts all texts at the
  largest batch size (``peak_mb``): for ``pytorch`` ``python -m kdexam.evaluation.memory
  --rss …`` (kdexam with torch and transformers), for ONNX the export folder's own
  ``kdexam_serving.py --rss`` (onnxruntime, tokenizers, numpy: what a service runs).
  ``baseline_mb`` is the same process after its imports, before loading the model, so
  ``peak_mb − baseline_mb`` is the model's own share;
- **ratios** to the student's teacher, measured in the same run: ``speedup`` = teacher's
  PyTorch end-to-end p50 (same device, same batch size) / this end-to-end p50;
  ``model_speedup`` the same ratio of model-only p50s; ``compression`` = teacher parameters
  / parameters, and teacher safetensors bytes / safetensors bytes.

Threads are fixed: ``torch.set_num_threads(threads)`` and ONNX Runtime
``intra_op_num_threads = threads``, ``inter_op_num_threads = 1``.
The timing itself is :mod:`kdexam.evaluation.timing`; the peak-memory child process
:mod:`kdexam.evaluation.memory`.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

from pydantic import ConfigDict, Field, field_validator

from kdexam.config.students import NumbersNotBooleans
from kdexam.errors import KdexamError
from kdexam.evaluation.memory import peak_rss
from kdexam.evaluation.timing import (  # noqa: F401  (re-exported: kdexam bench's timing)
    bench_threads,
    latency_row,
    stats_ms,
    steps,
    text_batches,
    time_batches,
)
from kdexam.rundir import check_output_file
from kdexam.teachers.loader import allow_remote_code

MIN_REPEATS = 20
CPU_BACKENDS = ("pytorch", "onnx", "onnx-int8")


class BenchConfig(NumbersNotBooleans):
    """``kdexam bench`` settings (a YAML file with these keys, or flags)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    models: list[str] = []
    """Student or teacher run directories; a student's teacher is added when not listed."""
    data: str | None = None
    """Dataset whose validation texts are timed; default: the first run's config.yaml data."""
    threads: int = Field(default=1, ge=1, le=4096)
    batch_sizes: list[int] = [1, 32]
    n_texts: int = Field(default=200, ge=1)
    repeats: int | None = Field(default=None, ge=1)
    """Timed batches per backend and batch size; default max(20, ceil(n_texts / batch size))."""
    warmup: int = Field(default=5, ge=0)
    onnx: bool = True
    rss: bool = True
    gpu: bool = True
    save: bool = True
    """Write ``efficiency`` into each run's metrics.json."""
    out: str | None = None
    trust_remote_code: bool = False
    """Let a model whose config names its own Python code run it (also in the peak-memory processes)."""

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(b < 1 for b in v):
            raise ValueError("batch sizes must be positive integers, e.g. 1,32")
        return sorted(set(v))


def _console():
    from rich.console import Console

    return Console(stderr=True)


# ---- which models ------------------------------------------------------------------------------


def find_teacher(run: Path) -> Path | None:
    """A student run's teacher directory: ``metrics.json`` ``teacher.name``, else ``config.yaml``
    ``teacher``; tried as given and next to the student run. ``None`` if not found."""
    from kdexam.paths import read_run_config

    names = []
    try:
        names.append(json.loads((run / "metrics.json").read_text(encoding="utf-8"))["teacher"]["name"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    names.append(read_run_config(run, strict=False).get("teacher"))
    for name in filter(None, names):
        for cand in (Path(name), run.parent / Path(name).name):
            if (cand / "config.json").is_file():
                return cand
    return None


def resolve_models(runs: list[str | Path]) -> tuple[list[Path], dict[Path, Path | None]]:
    """Run directories to measure (teachers of listed students added first when missing) and
    each one's reference teacher (a teacher is its own reference)."""
    from kdexam.inference.predictor import model_role

    first: dict[Path, Path] = {}
    for r in runs:  # (r2 and ./r2 are one run, measured once)
        first.setdefault(Path(r).resolve(), Path(r))
    listed = list(first.values())
    if not listed:
        raise KdexamError("No model given; pass student or teacher run directories, e.g. kdexam bench runs/bilstm-ms.")
    ref: dict[Path, Path | None] = {}
    order: list[Path] = []
    known = {p.resolve(): p for p in listed}
    for p in listed:
        role = model_role(p)
        if role == "onnx":
            raise KdexamError(f"'{p}' is an ONNX export folder; pass the run directory (bench measures PyTorch and ONNX itself).")
        if role == "student":
            t = find_teacher(p)
            if t is None:
                _console().print(f"[yellow]bench:[/] the teacher of '{p}' was not found; its ratios stay empty.")
            elif t.resolve() not in known:
                known[t.resolve()] = t
                order.append(t)
            ref[p] = known[t.resolve()] if t is not None else None
        else:
            ref[p] = p
    for t in order:
        ref[t] = t
    return order + listed, ref


def check_same_task(runs: list[Path], data_task) -> None:
    """Every model is timed on the same texts: one of another task kind or pair setting than the
    data's is refused before anything is measured (it failed after the others' timings)."""
    from kdexam.teachers.loader import read_task

    for r in runs:
        if (r / "task.json").is_file():
            t = read_task(r)
            if t.shape != data_task.shape:
                raise KdexamError(f"'{r}' does {t.shape} but the texts timed ('{data_task.dataset}', the first model's data "
                                  f"or --data) are {data_task.shape}; bench models of one task together.")


# ---- one model ---------------------------------------------------------------------------------------


def _bytes(*paths: Path) -> int | None:
    sizes = [p.stat().st_size for p in paths if p.is_file()]
    return sum(sizes) if sizes else None


def _safetensors_bytes(run: Path) -> int | None:
    return _bytes(*sorted(run.glob("model*.safetensors")))


def _onnx_dir(tm, features, tmp: Path, console) -> Path:
    """``RUN/onnx`` when it holds fp32 and int8 exports of the current weights (with this version's
    serving module), else a fresh export in ``tmp``."""
    from kdexam.export.onnx import SERVING_FILE, write_export_dir
    from kdexam.inference import serving
    from kdexam.inference.predictor import (
        EXPORT_FILE,
        INT8_FILE,
        ONNX_DIR,
        export_is_fresh,
    )
    from kdexam.paths import atomic_write_json

    d = tm.run_dir / ONNX_DIR
    current = (d / SERVING_FILE).is_file() and (d / SERVING_FILE).read_bytes() == Path(serving.__file__).read_bytes()
    if (d / INT8_FILE).is_file() and current and export_is_fresh(tm.run_dir, d):
        return d
    console.print(f"[dim]bench:[/] exporting {tm.name} to ONNX (fp32 + int8) in a temporary folder")
    d = tmp / "onnx"
    record = write_export_dir(tm, features, d, "int8")
    atomic_write_json(d / EXPORT_FILE, record)
    return d


def _texts_for_child(examples: list, task) -> list:
    if task.kind == "token-classification":
        return [{"tokens": list(e.text)} for e in examples]
    return [{"text": e.text, **({"text_pair": e.text_pair} if task.text_pair else {})} for e in examples]


def time_all(predictors: list[tuple[str, str, object]], examples: list, cfg: BenchConfig, name: str, console) -> list[dict]:
    """One latency row per (batch size, backend): the texts in batches of that size, ``cfg.warmup``
    untimed and ``cfg.repeats`` timed (default ``max(20, number of batches)``)."""
    rows = []
    for bs in cfg.batch_sizes:
        batches = text_batches(examples, bs)
        repeats = cfg.repeats or max(MIN_REPEATS, len(batches))
        for backend, device, p in predictors:
            console.print(f"[dim]bench:[/] {name} {backend} ({device}) batch {bs}: {cfg.warmup} warm-up + {repeats} timed batches")
            rows.append(latency_row(backend, device, bs, cfg.warmup, *time_batches(p, batches, cfg.warmup, repeats)))
    return rows


def measure_model(run: Path, examples: list, data_task, cfg: BenchConfig, tmp: Path, console) -> dict:
    """Every figure of one model (see the module docstring); ``speedup``/``compression`` filled later."""
    import torch

    from kdexam.data.readers import Example
    from kdexam.export.onnx import check_task
    from kdexam.inference.predictor import (
        FP32_FILE,
        INT8_FILE,
        Predictor,
        TorchRunner,
        load_torch_model,
    )
    from kdexam.inference.serving import ServingPredictor
    from kdexam.students.registry import count_parameters

    tmp.mkdir(parents=True, exist_ok=True)
    tm = load_torch_model(run)
    check_task(data_task, tm.task, data_task.dataset)
    items = _texts_for_child(examples, tm.task)  # raw inputs, unlabelled, as a service receives them
    predictors = {"pytorch": Predictor(TorchRunner(tm.module), tm.tokenizer, tm.task, tm.max_length, str(run), crf=tm.crf)}
    onnx_dir = None
    if cfg.onnx:
        features = predictors["pytorch"].encode([Example(e.text, e.text_pair) for e in examples])
        onnx_dir = _onnx_dir(tm, features, tmp, console)
        for backend, quantized in (("onnx", False), ("onnx-int8", True)):
            # torch-free, as served (unchecked: a bench export is timed; 'kdexam export' checks parity)
            predictors[backend] = ServingPredictor(onnx_dir, quantized, cfg.threads, unchecked=True)
    rows = time_all([(b, "cpu", p) for b, p in predictors.items()], items, cfg, tm.name, console)
    gpu = None
    if cfg.gpu and torch.cuda.is_available():  # after the CPU timings: the runner moves the module to the GPU
        gpu = torch.cuda.get_device_name(0)
        p = Predictor(TorchRunner(tm.module, "cuda"), tm.tokenizer, tm.task, tm.max_length, str(run), crf=tm.crf)
        rows += time_all([("pytorch", "cuda", p)], items, cfg, tm.name, console)
        tm.module.cpu()
    rss = {}
    if cfg.rss:
        texts_file = tmp / "texts.json"
        texts_file.write_text(json.dumps(items), encoding="utf-8")
        bs = max(cfg.batch_sizes)
        targets = [("pytorch", run, False)] + ([("onnx", onnx_dir, False), ("onnx-int8", onnx_dir, True)] if onnx_dir else [])
        for backend, path, quantized in targets:
            console.print(f"[dim]bench:[/] {tm.name} {backend}: peak memory in a fresh process")
            rss[backend] = peak_rss(path, "pytorch" if backend == "pytorch" else "onnx", quantized, texts_file, bs, cfg.threads)
    model = tm.module.model
    return {
        "run": str(run), "name": tm.name, "role": tm.role, "task": tm.task.kind,
        "params": {"total": count_parameters(model), "non_embedding": count_parameters(model, exclude_embeddings=True)},
        "disk_bytes": {"safetensors": _safetensors_bytes(run),
                       "onnx": _bytes(onnx_dir / FP32_FILE) if onnx_dir else None,
                       "onnx-int8": _bytes(onnx_dir / INT8_FILE) if onnx_dir else None},
        "latency": rows, "peak_rss_mb": rss, "gpu": gpu,
    }


def _ratio(a, b) -> float | None:
    return float(a) / float(b) if a and b else None


def add_ratios(models: list[dict], ref: dict[str, str | None]) -> None:
    """``speedup`` (end to end) and ``model_speedup`` (model only) on every latency row, and
    ``compression`` per model, against its teacher's PyTorch row of the same device and batch size."""
    by_run = {m["run"]: m for m in models}
    for m in models:
        t = by_run.get(ref.get(m["run"]) or "")
        m["reference"] = t["run"] if t else None
        if t is None:
            m["compression"] = None
            continue
        m["compression"] = {"params": _ratio(t["params"]["total"], m["params"]["total"]),
                            "disk": _ratio(t["disk_bytes"]["safetensors"], m["disk_bytes"]["safetensors"])}
        base = {(r["device"], r["batch_size"]): r for r in t["latency"] if r["backend"] == "pytorch"}
        for r in m["latency"]:
            b = base.get((r["device"], r["batch_size"]))
            r["speedup"] = _ratio(b["e2e_ms"]["p50"], r["e2e_ms"]["p50"]) if b else None
            r["model_speedup"] = _ratio(b["latency_ms"]["p50"], r["latency_ms"]["p50"]) if b else None


# ---- the whole bench ---------------------------------------------------------------------------------


def settings(cfg: BenchConfig, dataset: str, n_texts: int) -> dict:
    import onnxruntime
    import torch

    return {"threads": cfg.threads, "batch_sizes": cfg.batch_sizes, "n_texts": n_texts, "dataset": dataset,
            "split": "validation", "warmup": cfg.warmup, "repeats": cfg.repeats or f"max({MIN_REPEATS}, ceil(n_texts / batch_size))",
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "cuda": torch.cuda.get_device_name(0) if cfg.gpu and torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def save_efficiency(report: dict, only: list[str] | None = None) -> list[str]:
    """Write each model's figures into its run's ``metrics.json`` (``student.efficiency`` /
    ``teacher.efficiency``; a student run also gets its teacher's under ``teacher.efficiency``),
    atomically, other keys kept; with ``only``, into those runs alone. Returns the files written."""
    from kdexam.evaluation.card import refresh_card
    from kdexam.paths import atomic_write_json

    by_run = {m["run"]: m for m in report["models"]}
    written = []
    for m in report["models"]:
        if only is not None and m["run"] not in only:
            continue
        f = Path(m["run"]) / "metrics.json"
        if not f.is_file():
            continue
        try:
            metrics = json.loads(f.read_text(encoding="utf-8"))
        except ValueError:
            continue
        side = "student" if m["role"] == "student" else "teacher"
        metrics.setdefault(side, {})["efficiency"] = {"settings": report["settings"], **m}
        teacher = by_run.get(m.get("reference") or "")
        if side == "student" and teacher is not None:
            metrics.setdefault("teacher", {})["efficiency"] = {"settings": report["settings"], **teacher}
        atomic_write_json(f, metrics)
        written.append(str(f))
        refresh_card(f.parent)  # the card's cost section
    return written


def benchmark(cfg: BenchConfig) -> dict:
    """Measure every model of ``cfg`` (and the teachers of its students); returns the report
    ``{"settings", "models": [...]}``, also written to ``cfg.out`` and the runs' metrics.json."""
    from kdexam.export.onnx import run_examples
    from kdexam.paths import atomic_write_json

    allow_remote_code(cfg.trust_remote_code)
    console = _console()
    runs, ref = resolve_models(cfg.models)
    if cfg.out and Path(cfg.out).is_dir():
        raise KdexamError(f"--out '{cfg.out}' is a directory; name the JSON file to write.")
    check_output_file(cfg.out, runs, "--out")
    examples, data_task = run_examples(cfg.models[0], cfg.data, cfg.n_texts)
    if not examples:
        raise KdexamError(f"The validation split of '{data_task.dataset}' is empty; pass --data with a dataset that has validation texts.")
    check_same_task(runs, data_task)
    with bench_threads(cfg.threads), tempfile.TemporaryDirectory(prefix="kdexam-bench-") as tmp:
        models = [measure_model(r, examples, data_task, cfg, Path(tmp) / str(i), console) for i, r in enumerate(runs)]
    add_ratios(models, {str(k): (str(v) if v else None) for k, v in ref.items()})
    report = {"settings": settings(cfg, data_task.dataset, len(examples)), "models": models}
    if cfg.save:
        report["saved"] = save_efficiency(report)
    if cfg.out:
        atomic_write_json(cfg.out, report)
    return report


# ---- tables ------------------------------------------------------------------------------------------------


def tables(report: dict) -> list:
    """Two rich tables: models (size, memory, compression) and latency (per backend and batch size)."""
    from rich.table import Table

    def f(v, spec=".2f"):
        return "" if v is None else format(v, spec)

    def mb(b):
        return "" if b is None else f"{b / 1e6:.2f}"

    s = report["settings"]
    sizes = Table(title=f"model size and memory ({s['threads']} thread(s), peak RSS of a fresh process)")
    for c in ("model", "params", "non-emb. params", "safetensors MB", "onnx MB", "int8 MB", "compression",
              "RSS MB pytorch", "RSS MB onnx", "RSS MB int8"):
        sizes.add_column(c, justify="left" if c == "model" else "right")
    for m in report["models"]:
        comp = (m.get("compression") or {}).get("params")
        rss = m["peak_rss_mb"]
        sizes.add_row(Path(m["run"]).name, f"{m['params']['total']:,}", f"{m['params']['non_embedding']:,}",
                      mb(m["disk_bytes"]["safetensors"]), mb(m["disk_bytes"]["onnx"]), mb(m["disk_bytes"]["onnx-int8"]),
                      f(comp, ".1f") + ("x" if comp else ""),
                      *[f((rss.get(b) or {}).get("peak_mb"), ".0f") for b in CPU_BACKENDS])
    lat = Table(title=f"latency on {s['n_texts']} {s['dataset']} validation texts (ms per batch; end to end = text in, "
                      "prediction out; speedup vs the teacher's PyTorch end-to-end p50)")
    for c in ("model", "backend", "device", "batch", "e2e p50", "e2e p95", "model p50", "tokenize p50", "examples/s",
              "speedup", "model-only speedup"):
        lat.add_column(c, justify="left" if c in ("model", "backend", "device") else "right")
    for m in report["models"]:
        for r in m["latency"]:
            lat.add_row(Path(m["run"]).name, r["backend"], r["device"], str(r["batch_size"]), f(r["e2e_ms"]["p50"], ".3f"),
                        f(r["e2e_ms"]["p95"], ".3f"), f(r["latency_ms"]["p50"], ".3f"), f(r["tokenize_ms"]["p50"], ".3f"),
                        f(r["e2e_throughput"], ".1f"), f(r["speedup"], ".1f") + ("x" if r["speedup"] else ""),
                        f(r["model_speedup"], ".1f") + ("x" if r["model_speedup"] else ""))
    return [sizes, lat]
