"""Export a student or teacher run to ONNX (fp32, and int8 with dynamic quantization), checked
against PyTorch on the validation split.

``kdexam export RUN --format onnx [--quantize int8] [--out DIR]`` writes into ``RUN/onnx/``
(or ``DIR``) a self-contained deployment folder:

- ``model.onnx``: inputs ``input_ids``, ``attention_mask`` and, when the model reads them,
  ``token_type_ids`` (int64, [batch, sequence]); output ``logits`` ([batch, labels], or
  [batch, sequence, labels] for tagging); batch and sequence are dynamic axes. Exported with
  the TorchScript-based ``torch.onnx.export(..., dynamo=False)``, which maps the BiLSTM
  students' packed sequences to ONNX ``LSTM`` with ``sequence_lens``, so padding never
  reaches the recurrence. The example batch it is traced on always holds padding, so
  attention masks are traced as computed values, never as constants.
  A ``static`` student with mean pooling and a linear head is exported *folded*: its table times
  the head, one column per label (:func:`kdexam.students.static.fold_linear_head`; the same
  logits from a table 128 times smaller for a binary task with 256-d vectors); ``folded_head``
  in ``export.json`` says so, and parity is checked against the unfolded PyTorch student.
- ``model.int8.onnx`` (``--quantize int8``): ``onnxruntime.quantization.quantize_dynamic``
  with int8 weights (``MatMul``, ``LSTM``, ``Conv``; embedding tables ``Gather`` as uint8)
  and activations quantized on the fly.
- the tokenizer files, ``crf.safetensors`` (CRF taggers: the transitions for Viterbi
  decoding, which stays outside the graph), ``kdexam_serving.py`` (the torch-free
  predictor, :mod:`kdexam.inference.serving`: a service needs only this folder and
  ``onnxruntime``, ``tokenizers`` and ``numpy``), and ``export.json``, written last.

Parity (in ``export.json``): the PyTorch model and each ONNX model run on the same
validation batches (padded as in training), and

- ``max_abs_logit_diff`` = max over examples, positions and labels of
  ``|logit_onnx − logit_pytorch|`` (tagging: real positions only);
- ``prediction_agreement`` = share of predictions that are equal: labels (classification),
  word tags (tagging, over all words), or values within 1 % of the range of the PyTorch
  predictions, ``max(0.01 · (max y − min y), 1e-5)`` (regression);
- ``metrics``: the task metrics of PyTorch, ONNX fp32 and ONNX int8 on the same examples.

- ``serving``: the same checks for the torch-free predictor (raw validation texts in,
  its own tokenization, padding and decoding) against PyTorch, per ONNX model.

fp32 passes when ``max_abs_logit_diff < 1e-4`` and ``prediction_agreement == 1``, for the
ONNX model and for the torch-free predictor on it (``parity_ok``); int8 is reported, not judged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from kdexam.errors import KdexamError
from kdexam.inference import serving
from kdexam.inference.predictor import (CRF_FILE, EXPORT_FILE, FP32_FILE, INT8_FILE, MODEL_INPUTS, ONNX_DIR, OnnxRunner,
                                        TorchModel, TorchRunner, batched_logits, decode_predictions, load_torch_model,
                                        logits_module, onnx_session)
from kdexam.paths import check_writable_folder

OPSET = 17
SERVING_FILE = "kdexam_serving.py"
PARITY_ATOL = 1e-4
QUANTIZE = ("int8",)


# ---- data -------------------------------------------------------------------------------------


def run_examples(run_dir: str | Path, data: str | None = None, limit: int | None = None, task=None,
                 settings: dict | None = None) -> tuple[list, object]:
    """The validation examples of the run's dataset (``config.yaml`` ``data``, read with the
    run's seed so a carved validation split is the same one), or of ``data`` read with the
    run's column settings, or of the data ``settings`` (``DataConfig`` fields) give; the first
    ``limit`` of them. Returns ``(examples, the data's Task)`` (``Task.dataset`` is the dataset
    name); with ``task``, a dataset of another task kind or pair setting is a :class:`KdexamError`."""
    from kdexam.config import DataConfig
    from kdexam.data.splits import load_data
    from kdexam.paths import read_run_config

    raw = read_run_config(run_dir, strict=False)
    p = Path(run_dir) / "config.yaml"
    section = dict(raw["data"]) if isinstance(raw.get("data"), dict) else {}
    if settings:
        section = dict(settings)
    if data is not None:
        section["name"] = str(data)
    if not section.get("name"):
        raise KdexamError(f"'{run_dir}' has no config.yaml naming its data; pass --data with the dataset to check and time the model on.")
    section.update(max_train=None, max_eval=None)
    try:
        cfg = DataConfig.model_validate(section)
    except ValueError:
        raise KdexamError(f"The data settings in '{p}' are not valid; pass --data with the dataset to use.") from None
    splits = load_data(cfg, int(raw.get("seed", 42)))
    if task is not None:
        check_task(splits.task, task, str(cfg.name))
        check_labels(splits.task, task, str(cfg.name))
    examples = splits.validation[:limit] if limit else splits.validation
    return examples, splits.task


def check_task(data_task, model_task, name: str) -> None:
    """A :class:`KdexamError` when the data's task kind or pair setting is not the model's."""
    if data_task.shape != model_task.shape:
        raise KdexamError(f"Dataset '{name}' is {data_task.shape} but the model does {model_task.shape}; pass --data with the model's task.")


def check_labels(data_task, model_task, name: str) -> None:
    """A :class:`KdexamError` when the data holds labels the model's head does not know (the export
    scores the model on them; they ended in a KeyError while encoding). ``kdexam bench`` times texts
    alone and does not ask this."""
    extra = set(data_task.labels or []) - set(model_task.labels or [])
    if extra:
        raise KdexamError(f"Labels {sorted(extra)} of dataset '{name}' are unknown to the model (it knows {model_task.labels}); "
                          "pass --data with its label set.")


# ---- writing the ONNX files -----------------------------------------------------------------------


def trace_batch(features, tokenizer, task) -> dict:
    """The example batch the exporter traces: the longest and the shortest example, plus one
    padding column, so the traced graph always sees masked positions."""
    import torch

    from kdexam.data.encode import Collator

    lengths = features.lengths
    rows = [features.rows[int(np.argmax(lengths))], features.rows[int(np.argmin(lengths))]]
    batch = Collator(tokenizer, task)([dict(r, index=i) for i, r in enumerate(rows)])
    out = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    pad = {"input_ids": tokenizer.pad_token_id or 0, "attention_mask": 0, "token_type_ids": 0}
    return {k: torch.cat([v, torch.full((v.shape[0], 1), pad[k], dtype=v.dtype)], dim=1) for k, v in out.items()}


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence C++ warnings written straight to file descriptor 2 (the TorchScript exporter's
    shape-inference notes on packed sequences); Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def write_onnx(tm: TorchModel, sample: dict, path: Path, opset: int = OPSET) -> list[str]:
    """Export ``tm.module`` to ``path`` (through a temporary file); returns the graph's inputs."""
    import onnx
    import torch

    names = [k for k in MODEL_INPUTS if k in sample]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch", 1: "sequence"} if tm.task.kind == "token-classification" else {0: "batch"}
    tmp = path.with_name(f".{path.name}.tmp")
    module = tm.module.cpu().eval()
    try:
        with warnings.catch_warnings(), _quiet_native_stderr():
            warnings.simplefilter("ignore")  # tracer and deprecation notes; parity is checked instead
            torch.onnx.export(module, tuple(sample[n] for n in names), str(tmp), input_names=names,
                              output_names=["logits"], dynamic_axes=axes, opset_version=opset, dynamo=False,
                              do_constant_folding=True)
        module.eval()  # the exporter restores the wrapper's training flag, which would re-enable dropout
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return [i.name for i in model.graph.input]


def check_quantize(quantize: str | None) -> None:
    """A :class:`KdexamError` for a ``--quantize`` that is not int8 (or none)."""
    if quantize not in (None, *QUANTIZE):
        raise KdexamError(f"Unknown quantization '{quantize}'; use --quantize int8 or leave it out.")


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization (int8 weights, activations quantized at run time), after
    :func:`inline_shared_weights`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp, shared = dst.with_name(f".{dst.name}.tmp"), dst.with_name(f".{dst.name}.shared.tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint on the root logger
    try:
        model = onnx.load(str(src))
        if inline_shared_weights(model):
            onnx.save(model, str(shared))
            src = shared
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
        os.replace(tmp, dst)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)
        shared.unlink(missing_ok=True)


def inline_shared_weights(model) -> bool:
    """Turn every ``Identity`` of a weight into a weight of its own (a copy under the ``Identity``'s
    output name); True if any was. The exporter writes a weight used twice (the one LSTM of a
    siamese BiLSTM, run on each text of a pair) as the weight plus ``Identity`` copies, and
    ``quantize_dynamic`` quantizes an operator only when its weights are initializers: the second
    LSTM stayed fp32, beside its fp32 weights. Each consumer gets its own copy, not the shared
    original: ONNX Runtime's LSTM quantizer transposes a weight it has quantized in place, so two
    LSTMs reading one initializer scrambled each other's weights. Graphs with subgraphs are left as
    they are."""
    import onnx

    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        return False
    weights, outputs = {i.name: i for i in graph.initializer}, {o.name for o in graph.output}
    copies = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in weights and n.output[0] not in outputs]
    if not copies:
        return False
    for n in copies:
        copy = onnx.TensorProto()
        copy.CopyFrom(weights[n.input[0]])
        copy.name = n.output[0]
        graph.initializer.append(copy)
    dropped = {id(n) for n in copies}
    kept = [n for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    return True


def folded_for_export(tm: TorchModel) -> TorchModel:
    """``tm`` with a static student of mean pooling and a linear head folded into a per-token logit
    table (:func:`kdexam.students.static.fold_linear_head`); any other model as it is."""
    inner = getattr(tm.module, "model", None)
    if tm.role != "student" or getattr(inner, "family", None) != "static":
        return tm
    from kdexam.students.static import fold_linear_head

    folded = fold_linear_head(inner)
    return tm if folded is None else dataclasses.replace(tm, module=logits_module(folded, "student"))


def write_export_dir(tm: TorchModel, features, out: Path, quantize: str | None = None, opset: int = OPSET) -> dict:
    """Write the ONNX model(s), tokenizer and CRF transitions into ``out``; returns the
    description that ``export.json`` starts from (without parity)."""
    import onnxruntime
    import torch

    from kdexam.data.encode import unknown_word
    from kdexam.paths import sha256_file, temp_prefix

    check_quantize(quantize)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(serving.__file__), out / SERVING_FILE)  # first: it marks the folder as an export's (see export_onnx)
    started = time.perf_counter()
    unfolded, tm = tm, folded_for_export(tm)
    inputs = write_onnx(tm, trace_batch(features, tm.tokenizer, tm.task), out / FP32_FILE, opset)
    files = [FP32_FILE]
    if quantize == "int8":
        quantize_int8(out / FP32_FILE, out / INT8_FILE)
        files.append(INT8_FILE)
    else:
        (out / INT8_FILE).unlink(missing_ok=True)  # an int8 model of older weights must not stay behind
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=temp_prefix("tokenizer")))
    try:
        tm.tokenizer.save_pretrained(tmp)
        for f in tmp.iterdir():
            if f.is_file():
                os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (out / CRF_FILE).unlink(missing_ok=True)
    if tm.crf is not None:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tm.crf.items()}, str(out / CRF_FILE))
    weights = tm.run_dir / "model.safetensors"
    return {
        "format": "onnx", "opset": opset, "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
        "source": {"run": str(tm.run_dir), "role": tm.role, "name": tm.name,
                   "weights_sha256": sha256_file(weights) if weights.is_file() else None},
        "task": tm.task.to_dict(), "max_length": tm.max_length, "padding_side": tm.tokenizer.padding_side,
        "truncation_side": getattr(tm.tokenizer, "truncation_side", "right"), "pad_token_id": tm.tokenizer.pad_token_id or 0,
        "unk_token": unknown_word(tm.tokenizer),
        "inputs": inputs, "output": "logits", "crf": tm.crf is not None, "folded_head": tm is not unfolded,
        "files": {f: (out / f).stat().st_size for f in files},
        "export_seconds": round(time.perf_counter() - started, 2),
    }


# ---- parity -------------------------------------------------------------------------------------------


def agreement(task, a: list, b: list) -> float:
    """Share of equal predictions: labels, word tags (over all words), or regression values
    within 1 % of the range of ``a`` (``|a − b| ≤ max(0.01 · (max a − min a), 1e-5)``)."""
    if task.kind == "regression":
        x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        tol = max(0.01 * float(np.ptp(x)) if len(x) else 0.0, 1e-5)
        return float(np.mean(np.abs(x - y) <= tol)) if len(x) else 1.0
    if task.kind == "token-classification":
        pairs = [(s, t) for sa, sb in zip(a, b) for s, t in zip(sa, sb)]
        return float(np.mean([s == t for s, t in pairs])) if pairs else 1.0
    return float(np.mean([s == t for s, t in zip(a, b)])) if a else 1.0


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Largest ``|a − b|`` over all examples (arrays cut to each example's real length)."""
    return float(max((np.abs(x.astype(np.float64) - y).max(initial=0.0) for x, y in zip(a, b)), default=0.0))


def _metrics(task, examples, preds) -> dict:
    m = task.metrics([e.label for e in examples], preds)
    return {k: v for k, v in m.items() if k != "per_class"}


def serving_parity(out: Path, record: dict, examples: list, task, ref: list, ref_preds: list, batch_size: int) -> dict:
    """Logit difference and prediction agreement of the torch-free predictor (from raw
    texts) with PyTorch, per ONNX model of the folder."""
    from kdexam.paths import atomic_write_json

    atomic_write_json(out / EXPORT_FILE, record)  # the predictor reads it (rewritten with parity below)
    inputs = [list(e.text) if task.kind == "token-classification" else
              ((e.text, e.text_pair) if task.text_pair else e.text) for e in examples]
    found = {}
    for backend, f in (("onnx", FP32_FILE), ("onnx-int8", INT8_FILE)):
        if f not in record["files"]:
            continue
        preds, logits = serving.ServingPredictor(out, quantized=f == INT8_FILE, unchecked=True).predict_with_logits(inputs, batch_size)
        if task.kind == "regression":
            preds = [r["value"] for r in preds]
        elif task.kind == "classification":
            preds = [r["label"] for r in preds]
        else:
            preds = [r["tags"] for r in preds]
        found[backend] = {"max_abs_logit_diff": max_abs_diff(logits, ref), "prediction_agreement": agreement(task, preds, ref_preds)}
    return found


def export_onnx(run_dir: str | Path, out_dir: str | Path | None = None, quantize: str | None = None,
                data: str | None = None, max_examples: int | None = None, batch_size: int = 32,
                opset: int = OPSET) -> dict:
    """Export a student or teacher run to ONNX (``out_dir``, default ``RUN/onnx``), check parity
    with PyTorch on the validation split, write and return ``export.json``'s content."""
    from kdexam.data.encode import encode
    from kdexam.paths import atomic_write_json

    check_quantize(quantize)  # (before anything in the folder is touched)
    tm = load_torch_model(run_dir)
    examples, data_task = run_examples(run_dir, data, max_examples, tm.task)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / ONNX_DIR
    if out.exists() and not out.is_dir():
        raise KdexamError(f"Output path '{out}' is a file; pass a directory to --out.")
    if out.resolve() == Path(run_dir).resolve():
        raise KdexamError(f"Output folder '{out}' is the run directory itself; pass another folder to --out (default RUN/onnx).")
    if out.is_dir() and any(out.iterdir()) and not (out / SERVING_FILE).is_file():
        raise KdexamError(f"Output folder '{out}' already holds files and is not a kdexam export folder (it has no "
                          f"{SERVING_FILE}); pass a new or empty folder to --out, or an earlier export folder to rewrite it.")
    check_writable_folder(out, "--out")
    features = encode(examples, tm.tokenizer, tm.task, tm.max_length)
    (out / EXPORT_FILE).unlink(missing_ok=True)  # the folder is incomplete until export.json is written again
    record = write_export_dir(tm, features, out, quantize, opset)

    task = tm.task
    ref = batched_logits(TorchRunner(tm.module), features, tm.tokenizer, task, batch_size)
    ref_preds = decode_predictions(task, ref, features, tm.crf)
    metrics = {"pytorch": _metrics(task, examples, ref_preds)}
    parity = {}
    for backend, f in (("onnx", FP32_FILE), ("onnx-int8", INT8_FILE)):
        if f not in record["files"]:
            continue
        logits = batched_logits(OnnxRunner(onnx_session(out / f)), features, tm.tokenizer, task, batch_size)
        preds = decode_predictions(task, logits, features, tm.crf)
        parity[backend] = {"max_abs_logit_diff": max_abs_diff(logits, ref),
                           "prediction_agreement": agreement(task, preds, ref_preds)}
        metrics[backend] = _metrics(task, examples, preds)
    fp32 = parity["onnx"]
    served = serving_parity(out, record, examples, task, ref, ref_preds, batch_size)
    record.update({
        "validation": {"dataset": data_task.dataset, "split": "validation", "examples": len(examples)},
        "max_abs_logit_diff": fp32["max_abs_logit_diff"], "prediction_agreement": fp32["prediction_agreement"],
        "parity_ok": all(p["max_abs_logit_diff"] < PARITY_ATOL and p["prediction_agreement"] == 1.0
                         for p in (fp32, served["onnx"])),
        "atol": PARITY_ATOL, "parity": parity, "serving": served, "primary_metric": task.primary_metric, "metrics": metrics,
    })
    atomic_write_json(out / EXPORT_FILE, record)
    return record
