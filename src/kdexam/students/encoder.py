"""Bare encoders for task-agnostic distillation (``kdexam distill --general``), and task students
initialised from them (``--init-from``): a preset shape (random) or K of the teacher's layers, with the
teacher's tokenizer, saved with an ``encoder.json`` marker beside the HF files."""

from __future__ import annotations

from pathlib import Path

import torch

from kdexam.errors import KdexamError
from kdexam.students.teacher_layers import (
    check_rebuilds,
    find_layer_list,
    keep_layer_config,
    keep_layers,
    own_memory,
    select_layers,
)
from kdexam.students.transformer import (
    PRESETS,
    HFStudent,
    auto_class,
    auto_class_name,
    head_kwargs,
)
from kdexam.tasks import Task
from kdexam.teachers.loader import remote_code

ENCODER_FILE = "encoder.json"


def build_general_student(family: str, k: int | None, teacher: str | Path, rule: str | list[int] = "uniform"):
    """A bare encoder (``AutoModel``, no head) for task-agnostic distillation: a preset shape
    (random) or K of the teacher's layers; with the teacher's tokenizer.

    Its word-embedding table is never trimmed (:func:`trim_word_embeddings`): the encoder is the
    starting point of students for tasks whose texts are not known yet, and ``--init-from`` loads it
    as a plain HF model."""
    from transformers import AutoConfig, AutoModel

    from kdexam.students.embeddings import teacher_path
    from kdexam.teachers.loader import cannot_load, load_tokenizer, quiet_transformers

    quiet_transformers()
    tokenizer = load_tokenizer(str(teacher))
    path = teacher_path(teacher)
    if family == "teacher-layers" and rule == "random":
        config = AutoConfig.from_pretrained(path, **remote_code())
        n = config.num_hidden_layers
        keep_layer_config(config, n, select_layers(n, k, "lower"))
        model = AutoModel.from_config(config)
        model.float()
        model.config.dtype = torch.float32
        info = {"teacher_num_layers": n, "teacher_layers": [], "layer_rule": "random"}
    elif family == "teacher-layers":
        try:
            model = AutoModel.from_pretrained(path, **remote_code())
        except Exception as e:
            raise cannot_load(str(teacher), "weights", e) from None
        _, _, layers = find_layer_list(model)
        indices = select_layers(len(layers), k, rule)
        keep_layers(model, indices)
        check_rebuilds(model, indices)  # (the saved encoder must load as what was trained, for --init-from)
        model.float()
        model.config.dtype = torch.float32
        own_memory(model)
        info = {"teacher_num_layers": len(layers), "teacher_layers": indices,
                "layer_rule": rule if isinstance(rule, str) else "explicit"}
    elif family in PRESETS:
        from transformers import BertConfig

        teacher_config = AutoConfig.from_pretrained(path, **remote_code())
        vocab = max(int(getattr(teacher_config, "vocab_size", 0) or 0), len(tokenizer))
        config = BertConfig(vocab_size=vocab, max_position_embeddings=int(getattr(teacher_config, "max_position_embeddings", 512)),
                            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0, **PRESETS[family])
        model = AutoModel.from_config(config)
        info = {"preset": family, **PRESETS[family]}
    else:
        raise KdexamError(f"General distillation trains a transformer encoder; use a bert-* preset or teacher-layers:K, not '{family}'.")
    return HFStudent(model, "AutoModel"), tokenizer, info


def build_from_encoder(encoder_dir: str | Path, family: str, k: int | None, task: Task, dropout: float | None = None):
    """A task student initialised from a general-distilled encoder: its weights and tokenizer, a new head.
    The encoder's shape must be the kind's (K layers for teacher-layers:K, the preset's sizes)."""
    from transformers import AutoConfig

    from kdexam.teachers.loader import cannot_load, load_tokenizer, quiet_transformers

    d = Path(encoder_dir)
    if not (d / ENCODER_FILE).is_file():
        raise KdexamError(f"'{encoder_dir}' is not an encoder written by 'kdexam distill --general' (no {ENCODER_FILE}); "
                          "pass the --out directory of a general distillation.")
    quiet_transformers()
    config = AutoConfig.from_pretrained(str(d))
    if family == "teacher-layers" and config.num_hidden_layers != k:
        raise KdexamError(f"The encoder '{encoder_dir}' has {config.num_hidden_layers} layers but the student is "
                          f"teacher-layers:{k}; use teacher-layers:{config.num_hidden_layers}.")
    if family in PRESETS and any(getattr(config, key) != v for key, v in PRESETS[family].items()):
        raise KdexamError(f"The encoder '{encoder_dir}' does not have the shape of {family} "
                          f"({config.num_hidden_layers} layers, width {config.hidden_size}); use the kind it was distilled as.")
    if family not in PRESETS and family != "teacher-layers":
        raise KdexamError(f"--init-from initialises transformer students; '{family}' students cannot take an encoder.")
    auto = auto_class_name(task)
    try:
        rates = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
        model, loading = auto_class(auto).from_pretrained(str(d), output_loading_info=True, **head_kwargs(task), **rates)
    except Exception as e:
        raise cannot_load(str(encoder_dir), "weights", e) from None
    encoder_missing = [m for m in loading.get("missing_keys", []) if not m.startswith(("classifier", "pooler", "score"))]
    if encoder_missing:
        raise KdexamError(f"The encoder '{encoder_dir}' lacks weights the student needs ({encoder_missing[0]}, …); "
                          "distil it again with 'kdexam distill --general'.")
    model.float()
    own_memory(model)
    return HFStudent(model, auto), load_tokenizer(str(d)), {"init_from": str(d)}
