"""Students: what a student spec may say, how a student is built, saved and loaded.

A :class:`StudentSpec` names a student ``kind`` and its settings; :func:`build_student`
turns it into an ``nn.Module`` and its tokenizer for a task and a teacher;
:func:`save_student` / :func:`load_student` write and read a student directory
without needing the teacher again.

Every student's ``forward(input_ids, attention_mask, token_type_ids=None,
output_hidden_states=False, output_attentions=False)`` returns a dict with
``logits`` ([B, C]; [B, 1] for regression; [B, L, C] for tagging) and, when asked
and available, ``hidden_states`` (a tuple of [B, L, H]) and ``attentions``; the
BiLSTM and CNN students also give ``pooled`` (the sequence head's input) with
hidden states.

Kinds (sources in each module's docstring):

- ``bilstm`` — Tang et al. (2019), :mod:`kdexam.students.bilstm`;
- ``cnn`` — Kim (2014), :mod:`kdexam.students.cnn`;
- ``static`` — mean of static token embeddings and a small head, initialised the model2vec
  way (Tulkens & van Dongen 2024), :mod:`kdexam.students.static`;
- ``bert-tiny``, ``bert-mini``, ``bert-small``, ``bert-medium`` — Turc et al. (2019),
  :mod:`kdexam.students.transformer`;
- ``teacher-layers:K`` — K of the teacher's layers, DistilBERT / PKD,
  :mod:`kdexam.students.teacher_layers`.

Settings left at ``None`` take the kind's default. A setting that does not apply to
the kind is an error when it differs from its default (so a saved spec re-loads).
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from kdexam.errors import KdexamError
from kdexam.paths import atomic_write_json, plain_mode, sha256_file, temp_prefix
from kdexam.config.students import StudentSpec
from kdexam.tasks import TASK_KINDS, Task

KINDS = ["bilstm", "cnn", "static", "bert-tiny", "bert-mini", "bert-small", "bert-medium", "teacher-layers:K"]
KIND_HELP = ("bilstm (Tang et al. 2019), cnn (Kim 2014), static (mean of token embeddings, model2vec init), bert-tiny | bert-mini | bert-small | bert-medium "
             "(Turc et al. 2019, random init, teacher's tokenizer), teacher-layers:K (K of the teacher's layers, "
             "DistilBERT/PKD)")
STUDENT_FILE = "student.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1

DEFAULT_BILSTM_HIDDEN = 300
DEFAULT_BILSTM_LAYERS = 1
DEFAULT_DROPOUT = 0.2
EMBEDDING_FAMILIES = ("bilstm", "cnn", "static")
"""Students built on a word-embedding table (``StudentSpec.embeddings``), not on transformer layers."""
DEFAULT_EMBEDDINGS = {"bilstm": "teacher", "cnn": "teacher", "static": "model2vec"}


APPLIES: dict[str, set[str]] = {
    "bilstm": {"embeddings", "embedding_dim", "vectors_file", "hidden_size", "num_layers", "pooling", "pair_mode",
               "dropout", "freeze_embeddings", "trim_vocab", "min_token_count", "crf"},
    "cnn": {"embeddings", "embedding_dim", "vectors_file", "num_layers", "filter_widths", "num_filters", "pair_mode",
            "dropout", "freeze_embeddings", "trim_vocab", "min_token_count"},
    "static": {"embeddings", "embedding_dim", "vectors_file", "hidden_size", "pooling", "dropout", "freeze_embeddings",
               "trim_vocab", "min_token_count", "token_weights", "ngram_buckets", "ngram_lr_scale"},
    "preset": {"dropout", "freeze_embeddings", "trim_vocab"},
    "teacher-layers": {"layers", "freeze_embeddings"},
}
SEQUENCE_ONLY = {"bilstm": {"pooling", "pair_mode"}, "cnn": {"filter_widths", "pair_mode"}, "static": {"pooling"}}
POOLINGS = {"bilstm": ("max", "mean", "attention"), "static": ("mean", "max", "mean-max")}
TAGGING_ONLY = {"cnn": {"num_layers"}, "bilstm": {"crf"}}


def _valid_kind_names() -> list[str]:
    return KINDS[:-1] + ["teacher-layers"]


def parse_kind(spec: StudentSpec) -> tuple[str, int | None]:
    """``(family, K)``: family is bilstm, cnn, a preset name or teacher-layers."""
    kind = spec.kind.strip().lower()
    if kind in EMBEDDING_FAMILIES:
        return kind, None
    from kdexam.students.transformer import PRESETS

    if kind in PRESETS:
        return kind, None
    if kind == "teacher-layers" or kind.startswith("teacher-layers:"):
        _, _, k = kind.partition(":")
        if not k:
            if isinstance(spec.layers, list):
                return "teacher-layers", len(spec.layers)
            raise KdexamError("Student kind 'teacher-layers' needs a layer count; write teacher-layers:K, e.g. teacher-layers:3.")
        if not k.isdigit() or int(k) < 1:
            raise KdexamError(f"Student kind '{spec.kind}' needs a positive layer count; write teacher-layers:K, e.g. teacher-layers:3.")
        return "teacher-layers", int(k)
    close = difflib.get_close_matches(kind, _valid_kind_names(), n=1, cutoff=0.4)
    hint = f"did you mean '{close[0] if close[0] != 'teacher-layers' else 'teacher-layers:K'}'? " if close else ""
    raise KdexamError(f"Unknown student kind '{spec.kind}'; {hint}valid kinds: {', '.join(KINDS)}.")


def check_spec(spec: StudentSpec, task: Task | None = None) -> tuple[str, int | None]:
    """Raise a :class:`KdexamError` for a spec that cannot work (before any teacher is loaded);
    return ``(family, K)`` as :func:`parse_kind`."""
    family, k = parse_kind(spec)
    group = "preset" if family not in (*EMBEDDING_FAMILIES, "teacher-layers") else family
    defaults = StudentSpec()
    tagging = task is not None and task.kind == "token-classification"
    for name in StudentSpec.model_fields:
        if name in ("kind", "teacher") or getattr(spec, name) == getattr(defaults, name):  # (teacher: the member, any kind)
            continue
        if name not in APPLIES[group]:
            raise KdexamError(f"Student setting '{name}' does not apply to {spec.kind} students; remove it "
                              f"(settings for {spec.kind}: {', '.join(sorted(APPLIES[group])) or 'none'}).")
        if task is not None and tagging and name in SEQUENCE_ONLY.get(group, set()):
            raise KdexamError(f"Student setting '{name}' does not apply to token classification with {spec.kind}; remove it.")
        if task is not None and not tagging and name in TAGGING_ONLY.get(group, set()):
            raise KdexamError(f"Student setting '{name}' of {spec.kind} only applies to token classification; remove it.")
    if spec.pooling is not None and spec.pooling not in POOLINGS.get(family, (spec.pooling,)):
        raise KdexamError(f"Pooling '{spec.pooling}' is not one of {spec.kind}'s: {', '.join(POOLINGS[family])}.")
    if family in EMBEDDING_FAMILIES:
        if spec.embeddings == "glove" and not spec.vectors_file:
            raise KdexamError("Embeddings 'glove' need a vectors file; pass --vectors-file with a word2vec/GloVe text file "
                              "(student.vectors_file).")
        if spec.vectors_file and spec.embeddings != "glove":
            raise KdexamError(f"vectors_file is only read with embeddings 'glove' (got '{spec.embeddings}'); "
                              "pass --embeddings glove, or drop --vectors-file.")
        if spec.min_token_count > 1 and spec.trim_vocab is False and spec.embeddings != "glove":
            raise KdexamError(f"min_token_count {spec.min_token_count} drops rows of a trimmed table, and trim_vocab "
                              "is false; remove one of the two.")
        if any(w < 1 for w in spec.filter_widths):
            raise KdexamError(f"filter_widths {spec.filter_widths} must all be positive; e.g. [3, 4, 5].")
    if task is not None and spec.pair_mode == "siamese" and not task.text_pair:
        raise KdexamError("pair_mode 'siamese' is for text-pair tasks, and this task reads single texts; remove pair_mode.")
    if family == "teacher-layers" and isinstance(spec.layers, list) and len(spec.layers) != k:
        raise KdexamError(f"layers lists {len(spec.layers)} indices but the kind is teacher-layers:{k}; "
                          f"list {k} indices or use teacher-layers:{len(spec.layers)}.")
    if task is not None:
        if task.kind not in TASK_KINDS:
            raise KdexamError(f"Unknown task kind '{task.kind}'; use one of {', '.join(TASK_KINDS)}.")
        if task.num_labels < 1 or (task.kind == "classification" and task.num_labels < 2):
            raise KdexamError(f"The {task.kind} task has {task.num_labels} label(s); a student needs at least two classes.")
    return family, k


def check_marks_pairs(tokenizer, static: bool = False) -> None:
    """Siamese and static pair students split a pair by token type; the tokenizer must mark the
    second text (called as :func:`~kdexam.data.encode.encode` calls it)."""
    if 1 in (tokenizer("a", "b").get("token_type_ids") or []):
        return
    if static:
        raise KdexamError("A static pair student pools each text by its token type, and this teacher's tokenizer does not "
                          "mark the second text; use embeddings: glove, or a bilstm or cnn student (pair_mode concat).")
    raise KdexamError("pair_mode 'siamese' needs a tokenizer that marks the second text with token type ids "
                      "(BERT-style, or embeddings: glove); this teacher's tokenizer does not, use pair_mode concat.")


# ---- build ------------------------------------------------------------------------------------


def embedding_source(spec: StudentSpec) -> str:
    """``spec.embeddings``, or the kind's default (model2vec for static, teacher otherwise)."""
    return spec.embeddings or DEFAULT_EMBEDDINGS.get(spec.kind.strip().lower(), "teacher")


def _embeddings(spec: StudentSpec, teacher_dir, train_texts):
    from kdexam.students import embeddings as E

    source = embedding_source(spec)
    if source == "teacher":
        return E.teacher_embeddings(teacher_dir, spec.embedding_dim)
    if source == "random":
        return E.random_embeddings(teacher_dir, spec.embedding_dim)
    if source == "model2vec":
        return E.teacher_output_embeddings(teacher_dir, spec.embedding_dim, train_texts, only_used=spec.trim_vocab is not False)
    if source == "contextual":
        from kdexam.students.contextual import teacher_context_embeddings

        return teacher_context_embeddings(teacher_dir, spec.embedding_dim, train_texts)
    if not train_texts:
        raise KdexamError("Embeddings 'glove' build their word vocabulary from the training texts; pass train_texts.")
    from kdexam.students.word_vectors import glove_embeddings

    return glove_embeddings(spec.vectors_file, train_texts, spec.embedding_dim, min_frequency=spec.min_token_count)


def build_student(spec: StudentSpec, task: Task, teacher_dir: str | Path,
                  train_texts: list | None = None, init_from: str | Path | None = None) -> tuple[nn.Module, Any]:
    """The student ``spec`` for ``task`` (random weights, or the teacher's where the kind says so)
    and the tokenizer that encodes its inputs.

    ``teacher_dir``: the fine-tuned teacher (a HF model directory or a built-in name); its
    tokenizer, embeddings, sizes or layers are used according to the kind. ``train_texts``
    (strings, word lists for tagging, ``(text, text_pair)`` tuples or ``Example`` objects)
    are needed for the word vocabulary of ``glove`` embeddings. What the student was built
    from (embedding source, PCA variance, vector coverage, teacher layers kept) is in
    ``model.kdexam_info`` and saved by :func:`save_student`.

    ``init_from``: a general-distilled encoder (``kdexam distill --general``) of the kind's
    shape; the student takes its weights and tokenizer, with a new task head.

    With ``train_texts``, the embedding students (unless ``spec.trim_vocab`` is false) and the
    bert-* presets (when ``spec.trim_vocab`` is true: opt-in) keep only the embedding rows of the
    tokens the texts use (presets: :func:`kdexam.students.transformer.trim_word_embeddings`); the
    ids stay the tokenizer's.
    ``teacher-layers:K`` and ``init_from`` students keep the full table: their rows are the
    teacher's or the encoder's trained vectors, and an id the transfer set does not use would lose
    its vector for [UNK]'s. Measured on movie-sentiment (1,000 training sentences, 11 % of the test
    tokens unseen in them), trimming a trained teacher-layers:2 student's table after training
    changed 78 of 500 test predictions and cost 3.2 points of accuracy (0.748 → 0.716; bert-mini:
    33 changed, 0.702 → 0.684; docs/benchmarks.md)."""
    family, k = check_spec(spec, task)
    if init_from is not None:
        from kdexam.students.encoder import build_from_encoder

        if spec.trim_vocab:
            raise KdexamError("trim_vocab does not apply to a student initialised from an encoder (--init-from): its table "
                              "is the encoder's; remove one of the two.")
        model, tokenizer, info = build_from_encoder(init_from, family, k, task, spec.dropout)
        if spec.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
        model.kdexam_info = {"kind": spec.kind, "teacher": str(teacher_dir), **info}
        return model, tokenizer
    tagging = task.kind == "token-classification"
    if family in EMBEDDING_FAMILIES:
        init = _embeddings(spec, teacher_dir, train_texts)
        id_map = None
        if spec.min_token_count > 1 and not train_texts:
            raise KdexamError("min_token_count counts the tokens of the training texts; pass train_texts.")
        if spec.trim_vocab is not False and embedding_source(spec) != "glove" and train_texts:
            from kdexam.students.embeddings import trim_vocabulary

            init, id_map = trim_vocabulary(init, train_texts, min_count=spec.min_token_count)
        common = dict(vocab_size=int(init.weight.shape[0]), embedding_dim=init.dim, num_labels=task.num_labels,
                      tagging=tagging, dropout=DEFAULT_DROPOUT if spec.dropout is None else spec.dropout,
                      pair_mode=spec.pair_mode, segment_embeddings=bool(task.text_pair) and spec.pair_mode == "concat",
                      freeze_embeddings=spec.freeze_embeddings,
                      source_vocab_size=None if id_map is None else len(id_map))
        if family == "static":
            from kdexam.students.static import StaticConfig, StaticStudent

            config = StaticConfig(vocab_size=common["vocab_size"], embedding_dim=init.dim, num_labels=task.num_labels,
                                  tagging=tagging, text_pair=bool(task.text_pair) and not tagging,
                                  hidden_size=spec.hidden_size, token_weights=spec.token_weights,
                                  pooling=spec.pooling or "mean", ngram_buckets=spec.ngram_buckets,
                                  ngram_lr_scale=spec.ngram_lr_scale,
                                  dropout=0.0 if spec.dropout is None else spec.dropout,
                                  freeze_embeddings=spec.freeze_embeddings, source_vocab_size=common["source_vocab_size"])
            model: nn.Module = StaticStudent(config, init.weight)
        elif family == "bilstm":
            from kdexam.students.bilstm import BiLSTMConfig, BiLSTMStudent

            config = BiLSTMConfig(hidden_size=spec.hidden_size or DEFAULT_BILSTM_HIDDEN, crf=spec.crf,
                                  num_layers=spec.num_layers or DEFAULT_BILSTM_LAYERS, pooling=spec.pooling or "max", **common)
            model = BiLSTMStudent(config, init.weight)
        else:
            from kdexam.students.cnn import DEFAULT_TAGGING_LAYERS, CNNConfig, CNNStudent

            config = CNNConfig(filter_widths=list(spec.filter_widths), num_filters=spec.num_filters,
                               num_layers=spec.num_layers or DEFAULT_TAGGING_LAYERS, **common)
            model = CNNStudent(config, init.weight)
        if id_map is not None:
            model.embeddings.id_map.copy_(id_map)
        tokenizer = init.tokenizer
        tokenizer.padding_side = "right"  # packed sequences and masks assume right padding
        if task.text_pair and not tagging and "token_type_ids" not in tokenizer.model_input_names:
            # pairs are told apart by token type; a DistilBERT-style tokenizer marks them but leaves the ids out of
            # its outputs (saved with the tokenizer, so training, prediction and export all read them)
            tokenizer.model_input_names = [*tokenizer.model_input_names, "token_type_ids"]
        if spec.pair_mode == "siamese" or (family == "static" and task.text_pair):
            check_marks_pairs(tokenizer, static=family == "static")
        info = {"embeddings": init.info}
    elif family == "teacher-layers":
        from kdexam.students.teacher_layers import build_teacher_layers

        model, tokenizer, info = build_teacher_layers(teacher_dir, task, k, spec.layers)
    else:
        from kdexam.students.transformer import build_preset

        model, tokenizer, info = build_preset(family, teacher_dir, task, spec.dropout)
        if spec.trim_vocab and train_texts:  # (opt-in for presets: see StudentSpec.trim_vocab)
            from kdexam.students.transformer import trim_word_embeddings

            info["embeddings"] = trim_word_embeddings(model, tokenizer, train_texts)
    if spec.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    model.kdexam_info = {"kind": spec.kind, "teacher": str(teacher_dir), **info}
    return model, tokenizer


# ---- parameters ---------------------------------------------------------------------------------


def count_parameters(model: nn.Module, exclude_embeddings: bool = False) -> int:
    """Number of parameters (a shared tensor counted once); ``exclude_embeddings`` leaves out
    every ``nn.Embedding`` (word, position, segment), as transformers' ``num_parameters`` does."""
    skip: set[int] = set()
    if exclude_embeddings:
        skip = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)}
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() already yields a shared tensor once
        if id(p) in skip or id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


# ---- save / load ----------------------------------------------------------------------------------


def _weights_owner(model: nn.Module) -> nn.Module:
    """The module whose state dict goes into model.safetensors: the HF model itself for
    transformer students (so the directory also loads with ``AutoModelFor….from_pretrained``, except
    for a trimmed word-embedding table: its rows and id map load with :func:`load_student`)."""
    return model.model if getattr(model, "family", None) == "hf" else model


def _packed(module: nn.Module) -> bool:
    """Whether a weight is a view into a larger buffer: on a GPU, cuDNN packs an LSTM's weights into
    one (``flatten_parameters``), memory shared in a way that safetensors' ``save_model`` refuses."""
    return any(p.untyped_storage().nbytes() > p.numel() * p.element_size() for p in module.parameters())


def _unpacked(module: nn.Module) -> nn.Module:
    """A CPU copy of ``module`` in which each weight owns its memory (tied weights stay tied)."""
    import copy

    from kdexam.students.teacher_layers import own_memory

    module = copy.deepcopy(module).cpu()
    own_memory(module)
    return module


def save_student(model: nn.Module, tokenizer, spec: StudentSpec, task: Task, out_dir: str | Path) -> Path:
    """Write ``model.safetensors``, ``student.json`` (spec, task, architecture, build info,
    parameter counts, the weights' SHA-256), the tokenizer files and, for transformer students,
    the HF ``config.json``. The files are written in a temporary folder; then the old
    ``student.json`` is removed, the files moved in, and the new ``student.json`` written last.
    The folder holds one whole student at every moment or none: a kill in between leaves no
    ``student.json`` (loading says so), never old and new files mixed; the recorded hash catches
    weights replaced afterwards."""
    from safetensors.torch import save_model

    family = getattr(model, "family", None)
    if family not in (*EMBEDDING_FAMILIES, "hf"):
        raise TypeError(f"not a kdexam student: {type(model).__name__}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise KdexamError(f"Output path '{out}' is a file; pass a directory to save the student in.")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=temp_prefix("student")))
    try:
        owner = _weights_owner(model)
        owner = _unpacked(owner) if _packed(owner) else owner
        # save_model drops the duplicate names of shared (tied) tensors; load_model restores them
        save_model(owner, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if family == "hf":
            owner.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        weights_sha256 = sha256_file(tmp / WEIGHTS_FILE)
        (out / STUDENT_FILE).unlink(missing_ok=True)  # from here until the new one is written: no student
        for f in tmp.iterdir():
            if f.is_file():
                plain_mode(f)
                os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record = {
        "weights_sha256": weights_sha256,
        "format_version": FORMAT_VERSION,
        "kind": spec.kind,
        "spec": spec.model_dump(mode="json"),
        "task": task.to_dict(),
        "architecture": model.architecture(),
        "info": getattr(model, "kdexam_info", {}),
        "parameters": {"total": count_parameters(model),
                       "non_embedding": count_parameters(model, exclude_embeddings=True)},
    }
    atomic_write_json(out / STUDENT_FILE, record)
    return out


def build_from_architecture(arch: dict) -> nn.Module:
    """A student with the architecture recorded by ``model.architecture()`` (random weights)."""
    family = arch.get("family")
    if family == "bilstm":
        from kdexam.students.bilstm import BiLSTMConfig, BiLSTMStudent

        return BiLSTMStudent(BiLSTMConfig.from_dict(arch))
    if family == "cnn":
        from kdexam.students.cnn import CNNConfig, CNNStudent

        return CNNStudent(CNNConfig.from_dict(arch))
    if family == "static":
        from kdexam.students.static import StaticConfig, StaticStudent

        return StaticStudent(StaticConfig.from_dict(arch))
    if family == "hf":
        from kdexam.students.transformer import from_architecture

        return from_architecture(arch)
    raise ValueError(f"unknown student family {family!r}")


def load_student(run_dir: str | Path) -> tuple[nn.Module, Any, StudentSpec, Task]:
    """The student saved in ``run_dir`` by :func:`save_student`, in eval mode, with its
    tokenizer, spec and task. Needs neither the teacher nor a vectors file."""
    from safetensors.torch import load_model
    from kdexam.teachers.loader import load_saved_tokenizer, quiet_transformers

    d = Path(run_dir)
    path = d / STUDENT_FILE
    if not path.is_file():
        raise KdexamError(f"'{run_dir}' has no {STUDENT_FILE}; pass a directory written by 'kdexam distill'.")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        spec = StudentSpec.model_validate(record["spec"])
        task = Task.from_dict(record["task"])
        arch = record["architecture"]
    except (ValueError, KeyError, TypeError) as e:
        raise KdexamError(f"'{path}' is not a valid student description ({type(e).__name__}); "
                          "save the student again with save_student.") from None
    if not (d / WEIGHTS_FILE).is_file():
        raise KdexamError(f"'{run_dir}' has no {WEIGHTS_FILE}; the student was not saved completely, save it again.")
    if record.get("weights_sha256") and sha256_file(d / WEIGHTS_FILE) != record["weights_sha256"]:
        raise KdexamError(f"'{d / WEIGHTS_FILE}' is not the file {STUDENT_FILE} was saved with (its SHA-256 differs): it was "
                          "replaced or damaged; distil the student again.")
    quiet_transformers()
    model = build_from_architecture(arch)
    load_model(_weights_owner(model), str(d / WEIGHTS_FILE), strict=True)
    if spec.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    tokenizer = load_saved_tokenizer(d)
    if getattr(model, "family", None) in EMBEDDING_FAMILIES:
        tokenizer.padding_side = "right"
    model.kdexam_info = record.get("info", {})
    model.eval()
    return model, tokenizer, spec, task
