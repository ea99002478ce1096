"""Predict with a trained student (or a fine-tuned teacher), in PyTorch or ONNX Runtime.

>>> import kdexam
>>> clf = kdexam.load_student("runs/bilstm-ms")          # ONNX when exported, else PyTorch
>>> clf.predict(["a gripping, funny film", "dull and far too long"])
[{'label': 'pos', 'scores': {'neg': 0.03, 'pos': 0.97}}, {'label': 'neg', 'scores': {...}}]

What :meth:`Predictor.predict` accepts, per task kind:

- classification / regression: strings; for text pairs ``(text, text_pair)`` tuples or
  ``{"text": ..., "text_pair": ...}`` dicts;
- token classification: word lists, or strings (split on whitespace), or
  ``{"tokens": [...]}`` / ``{"text": ...}`` dicts.

A list is always a list of inputs: one sentence of words is ``[["The", "cat", "sat"]]``
(or ``"The cat sat"``); a lone string, dict, or for pair models a lone tuple, is one input.

Each input becomes an :class:`~kdexam.data.readers.Example` without a label and is
encoded by :func:`kdexam.data.encode.encode`, so inference tokenises, truncates
(``data.max_length`` of the run) and pads exactly as training did; predictions are
decoded by :func:`kdexam.evaluation.predict.decode` (Viterbi for CRF taggers). Output
per input: ``{"label", "scores": {label: probability}}`` (classification, softmax of the
logits), ``{"value"}`` (regression), ``{"tokens", "tags"}`` (tagging; ``"truncated": true``
is added when words beyond ``max_length`` subwords got the fill tag).

Sources (:func:`load_student`): a student run directory (``kdexam distill``), a teacher
run directory (``kdexam teacher``, or any fine-tuned HF model directory), or an export
folder written by ``kdexam export`` (``model.onnx`` + tokenizer + ``export.json``), which
is self-contained: it needs neither the run directory nor the PyTorch model, and is served
without PyTorch by :mod:`kdexam.inference.serving` (same inputs, same outputs).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdexam.errors import KdexamError
from kdexam.inference.serving import MAX_TOKENS, onnx_session  # noqa: F401  (onnx_session: one session set-up; export and bench import it here)

BACKENDS = ("auto", "pytorch", "onnx")
ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
EXPORT_FILE = "export.json"
CRF_FILE = "crf.safetensors"
STUDENT_FILE = "student.json"  # kdexam.students.registry.STUDENT_FILE; not imported here, it would load torch
DEFAULT_MAX_LENGTH = 128
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# ---- the PyTorch model of a run directory ------------------------------------------------------


@dataclass
class TorchModel:
    """A run's model loaded in PyTorch: ``module(input_ids, attention_mask, token_type_ids)``
    returns the logits tensor; ``crf`` holds a CRF tagger's transitions (numpy) or ``None``."""

    module: Any
    tokenizer: Any
    task: Any
    max_length: int
    role: str  # "student" or "teacher"
    name: str
    run_dir: Path
    crf: dict | None = None


def logits_module(model, role: str):
    """Wrap a student (dict outputs) or a HF ``AutoModelFor…`` (``.logits``) as
    ``forward(input_ids, attention_mask, token_type_ids=None) -> logits``: one signature
    for timing, prediction and ONNX export (output ``logits``)."""
    import inspect

    import torch

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model
            takes = inspect.signature(model.forward).parameters
            self.takes_token_types = role == "student" or "token_type_ids" in takes

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None and self.takes_token_types:
                kwargs["token_type_ids"] = token_type_ids
            out = self.model(**kwargs)
            return out["logits"] if isinstance(out, dict) else out.logits

    return Logits(model).eval()


def run_max_length(run_dir: str | Path) -> int:
    """``data.max_length`` of the run's ``config.yaml`` (the training truncation), default 128, cut
    at what the run's model has positions for (:func:`~kdexam.teachers.loader.input_limit`), as
    training cut it: a teacher fine-tuned with a longer ``--max-length`` records the longer value."""
    from kdexam.paths import read_run_config
    from kdexam.teachers.loader import input_limit

    value = DEFAULT_MAX_LENGTH
    try:
        value = int((read_run_config(run_dir, strict=False).get("data") or {}).get("max_length") or DEFAULT_MAX_LENGTH)
    except (ValueError, TypeError, AttributeError):
        pass
    return min(value, input_limit(run_dir) or value)


def task_from_hf_config(model_dir: str | Path):
    """The task of a fine-tuned HF model directory without ``task.json``, from its
    ``config.json`` (architecture, ``id2label``, ``problem_type``); ``None`` if it has no head."""
    from kdexam.tasks import Task

    p = Path(model_dir) / "config.json"
    if not p.is_file():
        return None
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
        arch = (cfg.get("architectures") or [""])[0]
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    id2label = cfg.get("id2label") or {}
    labels = [id2label[k] for k in sorted(id2label, key=int)] if id2label else None
    if arch.endswith("ForTokenClassification"):
        return Task("token-classification", labels)
    if arch.endswith("ForSequenceClassification"):
        if cfg.get("problem_type") == "regression" or (labels is not None and len(labels) == 1):
            return Task("regression")
        return Task("classification", labels)
    return None


def model_role(run_dir: str | Path) -> str:
    """``"student"`` (``student.json``), ``"teacher"`` (a fine-tuned HF model directory) or
    ``"onnx"`` (an export folder); a :class:`KdexamError` for anything else."""
    d = Path(run_dir)
    if not d.exists():
        raise KdexamError(f"Model '{run_dir}' does not exist; pass a run directory written by 'kdexam distill' or 'kdexam teacher'.")
    if d.is_dir():
        if (d / STUDENT_FILE).is_file():
            return "student"
        if (d / EXPORT_FILE).is_file() and (d / FP32_FILE).is_file():
            return "onnx"
        if (d / "config.json").is_file() and ((d / "task.json").is_file() or task_from_hf_config(d) is not None):
            return "teacher"
        if (d / "encoder.json").is_file():  # (students.encoder.ENCODER_FILE, not imported: it loads transformers)
            raise KdexamError(f"'{run_dir}' is a general encoder ('kdexam distill --general'), which has no task head to "
                              "predict with; distil a task student from it with --init-from, and use that run.")
        if (d / "task.json").is_file() or (d / "model.safetensors").is_file():  # (a teacher run that lost a file)
            missing = [f for f in ("config.json", "task.json", "model.safetensors") if not (d / f).is_file()
                       and not (f == "task.json" and (d / "config.json").is_file())]
            if missing:
                raise KdexamError(f"'{run_dir}' looks like a teacher run without its {' and '.join(missing)}; the run was "
                                  "not saved completely: fine-tune the teacher again, or copy the files back.")
    raise KdexamError(f"'{run_dir}' holds no model (no student.json, task.json or export.json); pass a run directory "
                      "written by 'kdexam distill' or 'kdexam teacher', or a folder written by 'kdexam export'.")


def crf_of(model) -> dict | None:
    """A CRF tagger's transitions as numpy arrays (``kdexam.students.crf.crf_params``), else ``None``."""
    if getattr(model, "crf", None) is None:
        return None
    from kdexam.students.crf import crf_params

    return crf_params(model)


def load_torch_model(run_dir: str | Path) -> TorchModel:
    """The model of a student or teacher run directory, in eval mode, with its tokenizer, task and
    training ``max_length``. A teacher directory needs ``task.json`` or a task head in ``config.json``."""
    run = Path(run_dir)
    role = model_role(run)
    if role == "onnx":
        raise KdexamError(f"'{run_dir}' is an ONNX export folder, not a PyTorch model; pass the run directory it was exported from.")
    if role == "student":
        from kdexam.students.registry import load_student as load_registry_student

        model, tokenizer, spec, task = load_registry_student(run)
        return TorchModel(logits_module(model, role), tokenizer, task, run_max_length(run), role, spec.kind, run,
                          crf_of(model))
    from kdexam.teachers.loader import load_for_task, load_tokenizer, read_task

    task = read_task(run) if (run / "task.json").is_file() else task_from_hf_config(run)
    if not (run / "model.safetensors").is_file() and not list(run.glob("model*.safetensors")):
        raise KdexamError(f"'{run_dir}' has no model.safetensors; pass a directory written by 'kdexam teacher'.")
    model = load_for_task(str(run), task, fine_tuned=True).float()  # fp32 on the CPU, whatever dtype it was saved in
    return TorchModel(logits_module(model, role), load_tokenizer(str(run)), task, run_max_length(run), role,
                      f"teacher {run.name}", run)


# ---- backends: a batch of tensors in, logits (numpy) out ----------------------------------------


class TorchRunner:
    """Runs a logits module on ``device`` (inputs moved there, CUDA synchronised)."""

    backend = "pytorch"

    def __init__(self, module, device: str | None = None):
        import torch

        self.device = torch.device(device or "cpu")
        self.module = module.to(self.device).eval()

    def __call__(self, inputs: dict) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.module(**{k: v.to(self.device) for k, v in inputs.items()})
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            return logits.float().cpu().numpy()


class OnnxRunner:
    """Runs an ONNX Runtime session: feeds the inputs the graph declares (the exporter drops an
    unused ``token_type_ids``; a declared one the tokenizer does not give is fed as zeros)."""

    backend = "onnx"

    def __init__(self, session):
        self.session = session
        self.inputs = [i.name for i in session.get_inputs()]

    def __call__(self, inputs: dict) -> np.ndarray:
        ids = inputs["input_ids"]
        feed = {n: (inputs[n] if n in inputs else np.zeros_like(ids)) for n in self.inputs}
        feed = {n: np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.int64) for n, v in feed.items()}
        return self.session.run(["logits"], feed)[0]


def batched_logits(runner: Callable[[dict], np.ndarray], features, tokenizer, task, batch_size: int = 32,
                   max_tokens: int | None = None) -> list[np.ndarray]:
    """Per-example logits in input order: length-sorted batches (at most ``max_tokens`` padded
    positions each when set, :func:`kdexam.inference.serving.capped_batches`) padded as in
    training (:class:`kdexam.data.encode.Collator`); tagging logits cut to each example's length."""
    from kdexam.data.encode import Collator
    from kdexam.inference.serving import capped_batches

    out: list = [None] * len(features)
    collate = Collator(tokenizer, task)
    for idx in capped_batches(features.lengths, batch_size, max_tokens):
        batch = collate([dict(features.rows[i], index=i) for i in idx])
        logits = runner({k: v for k, v in batch.items() if k in MODEL_INPUTS})
        for row, i in enumerate(batch["index"].tolist()):
            n = len(features.rows[i]["input_ids"])
            out[i] = logits[row, :n] if task.kind == "token-classification" else logits[row]
    return out


def decode_predictions(task, logits: list[np.ndarray], features, crf: dict | None = None) -> list:
    """Labels, tag sequences or floats (:func:`kdexam.evaluation.predict.decode`; Viterbi with ``crf``)."""
    from kdexam.evaluation.predict import decode

    return decode(task, logits, features) if crf is None else decode(task, logits, features, crf=crf)


# ---- inputs ---------------------------------------------------------------------------------------


def _where(i: int) -> str:
    return f"input {i}"


def to_example(item: Any, task, where: str = ""):
    """One input (see the module docstring) as an unlabelled :class:`Example`; the checks and
    their sentences are the torch-free predictor's (:func:`kdexam.inference.serving.normalise`)."""
    from kdexam.data.readers import Example
    from kdexam.inference.serving import normalise

    x = normalise(item, task, where or "an input")
    if task.kind == "token-classification":
        return Example(list(x))
    return Example(x[0], x[1]) if task.text_pair else Example(x)


# ---- the predictor ----------------------------------------------------------------------------------


class Predictor:
    """Turns raw inputs into predictions: tokenise (as in training), run the backend, decode.

    Attributes: ``task`` (:class:`~kdexam.tasks.Task`), ``tokenizer``, ``backend``
    (``"pytorch"`` or ``"onnx"``), ``max_length``, ``quantized``, ``source`` (the path it
    was loaded from), ``crf`` (CRF transitions or ``None``)."""

    def __init__(self, runner, tokenizer, task, max_length: int, source: str = "", quantized: bool = False,
                 crf: dict | None = None, name: str = ""):
        self.runner, self.tokenizer, self.task, self.max_length = runner, tokenizer, task, max_length
        self.backend = runner.backend
        self.source, self.quantized, self.crf, self.name = source, quantized, crf, name

    def __repr__(self) -> str:
        return (f"Predictor({self.name or self.source!r}, task={self.task.kind}, backend={self.backend}"
                f"{', int8' if self.quantized else ''})")

    def examples(self, texts: Sequence) -> list:
        """Inputs as unlabelled examples (a single string is one input)."""
        if isinstance(texts, (str, dict)) or (self.task.text_pair and isinstance(texts, tuple)):
            texts = [texts]
        return [to_example(t, self.task, _where(i)) for i, t in enumerate(texts)]

    def encode(self, examples: list):
        """:func:`kdexam.data.encode.encode` with the run's ``max_length``."""
        from kdexam.data.encode import encode

        return encode(examples, self.tokenizer, self.task, self.max_length)

    def predict_logits(self, texts: Sequence, batch_size: int = 32, max_tokens: int | None = MAX_TOKENS) -> list[np.ndarray]:
        """Per-input logits: [C] (classification), [1] (regression), [subwords, C] (tagging)."""
        features = self.encode(self.examples(texts))
        return batched_logits(self.runner, features, self.tokenizer, self.task, batch_size, max_tokens)

    def predict(self, texts: Sequence, batch_size: int = 32, max_tokens: int | None = MAX_TOKENS) -> list[dict]:
        """One dict per input: ``{"label", "scores"}``, ``{"value"}`` or ``{"tokens", "tags"}``; batches
        of at most ``batch_size`` inputs and ``max_tokens`` padded positions (``None``: no cap)."""
        examples = self.examples(texts)
        features = self.encode(examples)
        logits = batched_logits(self.runner, features, self.tokenizer, self.task, batch_size, max_tokens)
        preds = decode_predictions(self.task, logits, features, self.crf)
        if self.task.kind == "regression":
            return [{"value": float(p)} for p in preds]
        if self.task.kind == "classification":
            labels = self.task.labels or []
            out = []
            for p, l in zip(preds, logits):
                probs = np.exp(l - l.max())
                probs /= probs.sum()
                out.append({"label": p, "scores": {lab: float(s) for lab, s in zip(labels, probs)}})
            return out
        out = []
        for e, tags, row in zip(examples, preds, features.rows):
            item = {"tokens": list(e.text), "tags": list(tags)}
            seen = [w for w in row["word_ids"] if w >= 0]
            if seen and len(row["input_ids"]) >= self.max_length and max(seen) < row["n_words"] - 1:
                item["truncated"] = True  # (the rule of the torch-free predictor)
            out.append(item)
        return out


# ---- loading -------------------------------------------------------------------------------------------


def export_record(export_dir: Path) -> dict:
    """The ``export.json`` of an export folder; ``{}`` when it cannot be read as a JSON object."""
    try:
        record = json.loads((export_dir / EXPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def export_is_fresh(run_dir: Path, export_dir: Path) -> bool:
    """Whether ``export_dir`` was exported from the weights now in ``run_dir`` (SHA-256 match)."""
    from kdexam.paths import sha256_file

    weights = run_dir / "model.safetensors"
    want = (export_record(export_dir).get("source") or {}).get("weights_sha256")
    return bool(want) and weights.is_file() and sha256_file(weights) == want


def export_passed_parity(export_dir: Path) -> bool:
    """Whether ``kdexam export`` finished its parity check on ``export_dir`` and it passed
    (``parity_ok`` in ``export.json``; an export that failed or stopped before the check has not)."""
    return export_record(export_dir).get("parity_ok") is True


def _onnx_predictor(export_dir: Path, quantized: bool, threads: int | None):
    """The torch-free :class:`~kdexam.inference.serving.ServingPredictor` of an export folder (it
    refuses an export stopped before its parity check)."""
    from kdexam.inference.serving import ServingPredictor

    return ServingPredictor(export_dir, quantized, threads)


def load_student(path: str | Path, backend: str = "auto", quantized: bool = False, threads: int | None = None,
                 device: str | None = None):
    """A predictor for a student run, a teacher run or an export folder; no teacher needed.

    With ONNX (an export folder, or a run with a current export) it is the torch-free
    :class:`~kdexam.inference.serving.ServingPredictor` (onnxruntime, tokenizers and numpy only;
    torch and transformers are never imported); with PyTorch a :class:`Predictor`. Both have
    ``predict``, ``predict_logits``, ``task``, ``backend``, ``max_length``, ``quantized``.

    ``backend``: ``"pytorch"``, ``"onnx"`` (``RUN/onnx/`` written by ``kdexam export``, or an
    export folder given directly) or ``"auto"`` (ONNX when an export of the current weights
    that passed its parity check exists, else PyTorch). ``quantized`` picks the int8 ONNX model
    (ONNX only). ``threads``: intra-op
    threads of ONNX Runtime (PyTorch keeps its global setting). ``device``: PyTorch device
    (e.g. ``"cuda"``)."""
    if backend not in BACKENDS:
        raise KdexamError(f"Unknown backend '{backend}'; use one of {', '.join(BACKENDS)}.")
    if backend == "pytorch" and quantized:
        raise KdexamError("The int8 model is an ONNX export; use backend 'onnx' (or 'auto') with it, "
                          "or drop the quantized option for PyTorch.")
    p = Path(path)
    if p.is_file() and p.suffix == ".onnx":
        quantized = quantized or p.name == INT8_FILE
        p = p.parent
    role = model_role(p)
    if role == "onnx":
        if backend == "pytorch":
            raise KdexamError(f"'{path}' is an ONNX export folder; use backend 'onnx' or pass the run directory for PyTorch.")
        return _onnx_predictor(p, quantized, threads)
    export_dir = p / ONNX_DIR
    exported = (export_dir / EXPORT_FILE).is_file() and (export_dir / (INT8_FILE if quantized else FP32_FILE)).is_file()
    if backend == "onnx" or quantized:
        if not exported:
            flag = " --quantize int8" if quantized else ""
            raise KdexamError(f"'{path}' has no ONNX export{' (int8)' if quantized else ''}; run 'kdexam export {path} --format onnx{flag}' first.")
        if not export_is_fresh(p, export_dir):
            raise KdexamError(f"The ONNX export in '{export_dir}' is older than the model in '{path}'; run 'kdexam export' again.")
        return _onnx_predictor(export_dir, quantized, threads)
    if backend == "auto" and exported and export_is_fresh(p, export_dir) and export_passed_parity(export_dir):
        return _onnx_predictor(export_dir, False, threads)
    tm = load_torch_model(p)
    return Predictor(TorchRunner(tm.module, device), tm.tokenizer, tm.task, tm.max_length, str(p), False, tm.crf, tm.name)
