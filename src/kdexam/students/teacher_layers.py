"""Students made of a teacher's own layers.

``teacher-layers:K`` loads the teacher itself and keeps its embeddings, its pooler
and head, and K of its encoder layers, the initialisation of DistilBERT (Sanh et al.
2019, "DistilBERT, a distilled version of BERT", arXiv:1910.01108, which keeps one
layer in two) and of the PKD students (Sun et al. 2019, "Patient Knowledge
Distillation for BERT Model Compression", EMNLP 2019, which keep the first K).
Layer rules, for a teacher of N layers:

- ``lower``: layers 0 … K−1 (PKD);
- ``upper``: layers N−K … N−1;
- ``uniform``: K evenly spaced layers that include the first and the last,
  ``round(i·(N−1)/(K−1))`` for i = 0 … K−1, rounding halves up; for N=12, K=6 this is
  DistilBERT's 0, 2, 4, 7, 9, 11; for N=6, K=2 it is 0 and 5; K=1 keeps layer 0
  (the layer that reads the embeddings);
- a list of indices: exactly those layers, in that order;
- ``random``: the teacher's architecture with K layers and random weights (the control
  of an initialisation study: same shape and tokenizer, nothing inherited).

The encoder's layer list is found generically: the first non-empty ``nn.ModuleList``
under the base model's ``encoder`` (or the base model itself), which is
``encoder.layer`` for BERT, RoBERTa, MPNet, MiniLM and ``transformer.layer`` for
DistilBERT. ``config.num_hidden_layers`` is set to K.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from kdexam.errors import KdexamError
from kdexam.students.transformer import (
    HFStudent,
    auto_class,
    auto_class_name,
    head_kwargs,
)
from kdexam.tasks import Task
from kdexam.teachers.loader import remote_code

LAYER_RULES = ("lower", "upper", "uniform", "random")


def find_layer_list(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The parent module, attribute name and ``nn.ModuleList`` of the encoder's layers."""
    base = getattr(model, "base_model", model)
    root = getattr(base, "encoder", None)
    if not isinstance(root, nn.Module):
        root = base
    for name, module in root.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and name:
            parent_name, _, attr = name.rpartition(".")
            return root.get_submodule(parent_name) if parent_name else root, attr, module
    raise KdexamError(f"Cannot find the encoder layers of this {type(model).__name__}; "
                      "teacher-layers students need an encoder whose layers are an nn.ModuleList.")


def select_layers(n: int, k: int, rule: str | list[int]) -> list[int]:
    """Indices of the K teacher layers (of N) kept by ``rule`` (see the module docstring)."""
    if k < 1:
        raise KdexamError(f"teacher-layers:{k} keeps no layer; use teacher-layers:K with K ≥ 1.")
    if k > n:
        raise KdexamError(f"teacher-layers:{k} asks for {k} layers but the teacher has {n}; choose K ≤ {n}.")
    if isinstance(rule, list):
        if len(rule) != k:
            raise KdexamError(f"layers lists {len(rule)} indices but the kind is teacher-layers:{k}; "
                              f"list {k} indices or use teacher-layers:{len(rule)}.")
        bad = [i for i in rule if not 0 <= i < n]
        if bad:
            raise KdexamError(f"Layer index {bad[0]} is out of range for a teacher with {n} layers; use indices 0 to {n - 1}.")
        if len(set(rule)) != len(rule):
            raise KdexamError(f"layers {rule} repeats an index; list each teacher layer once.")
        return list(rule)
    if rule == "lower":
        return list(range(k))
    if rule == "upper":
        return list(range(n - k, n))
    if rule == "uniform":
        if k == 1:
            return [0]
        return [(2 * i * (n - 1) + (k - 1)) // (2 * (k - 1)) for i in range(k)]
    raise KdexamError(f"Unknown layer rule '{rule}'; use one of {', '.join(LAYER_RULES)} or a list of indices.")


def keep_layers(model: nn.Module, indices: list[int]) -> nn.Module:
    """Keep only the encoder layers ``indices`` of ``model`` (in place) and update its config."""
    parent, attr, layers = find_layer_list(model)
    setattr(parent, attr, nn.ModuleList(layers[i] for i in indices))
    keep_layer_config(model.config, len(layers), indices)
    return model


def keep_layer_config(config, n: int, indices: list[int]) -> None:
    """``num_hidden_layers`` and every per-layer list of ``config`` (one entry per layer of the N:
    ModernBERT's ``layer_types``, Longformer's ``attention_window``) cut to the kept ``indices``; a
    config whose lists still had N entries would not save."""
    for key, value in config.to_dict().items():
        if isinstance(value, (list, tuple)) and len(value) == n and n != len(indices) and key != "architectures":
            setattr(config, key, type(value)(value[i] for i in indices))
    config.num_hidden_layers = len(indices)


def check_rebuilds(model: nn.Module, indices: list[int]) -> None:
    """The kept layers must be what the architecture builds from the cut config, or the saved student
    would not load: some architectures build a layer by its position (ModernBERT's first layer has no
    attention norm), so their first teacher layer must stay first."""
    with torch.device("meta"):
        fresh = type(model)(model.config)
    have, built = set(model.state_dict()), set(fresh.state_dict())
    if have != built:
        extra = sorted(have - built or built - have)[0]
        raise KdexamError(f"The teacher's layers {indices} do not make a {type(model).__name__} again ({extra!r} differs): "
                          "this architecture builds its layers by position; keep its first layer first (layers: lower or "
                          "uniform, or a list starting with 0).")


def _random_teacher_shape(teacher, task: Task, k: int, tokenizer):
    """The teacher's architecture with K layers and random weights (the control of an initialisation study)."""
    from transformers import AutoConfig

    from kdexam.students.embeddings import teacher_path

    config = AutoConfig.from_pretrained(teacher_path(teacher), **head_kwargs(task), **remote_code())
    n = config.num_hidden_layers
    keep_layer_config(config, n, select_layers(n, k, "lower"))  # (the range checks of a real selection)
    auto = auto_class_name(task)
    model = auto_class(auto).from_config(config)
    model.float()  # float32 like every teacher-layers student, whatever the teacher is stored in
    model.config.dtype = torch.float32
    info = {"teacher": str(teacher), "teacher_num_layers": n, "teacher_layers": [], "layer_rule": "random"}
    return HFStudent(model, auto), tokenizer, info


def build_teacher_layers(teacher: str | Path, task: Task, k: int, rule: str | list[int]):
    """The teacher with K of its encoder layers, its tokenizer, and which layers were kept."""
    from kdexam.teachers.loader import load_for_task, load_tokenizer

    tokenizer = load_tokenizer(str(teacher))
    if rule == "random":
        return _random_teacher_shape(teacher, task, k, tokenizer)
    model = load_for_task(str(teacher), task)  # the encoder must be complete; the run's Teacher checks the head
    _, _, layers = find_layer_list(model)
    n = len(layers)
    declared = getattr(model.config, "num_hidden_layers", n)
    if declared != n:
        raise KdexamError(f"The teacher's layer list has {n} entries but its config declares {declared} layers "
                          "(shared layers?); teacher-layers students need one module per layer.")
    indices = select_layers(n, k, rule)
    keep_layers(model, indices)
    check_rebuilds(model, indices)
    # a teacher stored in half precision still gives a float32 student, trainable on any device
    model.float()
    model.config.dtype = torch.float32
    own_memory(model)
    info = {"teacher": str(teacher), "teacher_num_layers": n, "teacher_layers": indices,
            "layer_rule": rule if isinstance(rule, str) else "explicit"}
    return HFStudent(model, auto_class_name(task)), tokenizer, info


def own_memory(model: nn.Module) -> None:
    """Give each parameter a fresh copy of its own. transformers (5.25 here) may leave the weights it
    loads inside the safetensors file's memory map, at the file's 8-byte offsets, and a BLAS kernel's
    result on a misaligned operand can differ in the last bit from the same product on aligned memory:
    the student built from the teacher then computed 1e-7 away from itself saved and loaded again."""
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.clone()
