"""Stages of a distillation recipe, and gradual unfreezing.

A run is one or more stages (XtremeDistil, Mukherjee & Awadallah 2020): each names
its objectives and matches (the run's when omitted), its epochs and learning rate,
and how many of the student's layer groups train (``unfreeze``: the top N, head
first; the rest frozen).
"""

from __future__ import annotations

import torch

from kdexam.config import DistillRunConfig, StageConfig, TrainConfig
from kdexam.errors import KdexamError


def stages_of(cfg: DistillRunConfig, task_kind: str = "classification") -> list[StageConfig]:
    """The run's stages: ``cfg.stages``, its ``recipe``'s (:mod:`kdexam.config.recipes`), or one
    stage with the run's objectives and matches."""
    if cfg.recipe:
        from kdexam.config.recipes import recipe_stages

        return recipe_stages(cfg.recipe, task_kind)
    return cfg.stages or [StageConfig(objectives=cfg.objectives, matches=cfg.matches)]


def stage_objectives(stage: StageConfig, cfg: DistillRunConfig, default: list) -> tuple[list, list]:
    """A stage's (objective specs, matches): its own, else the run's, else ``default`` objectives.
    Matches alone (no objective list anywhere) come on top of the default objectives; an explicit
    empty list (``objectives: []``) means the matches alone (TinyBERT's intermediate stage)."""
    matches = stage.matches if stage.matches is not None else (cfg.matches or [])
    specs = next((s for s in (stage.objectives, cfg.objectives) if s is not None), default)
    return list(specs), list(matches)


def stage_train_config(stage: StageConfig, train: TrainConfig) -> TrainConfig:
    """The run's training settings with the stage's epochs and learning rate."""
    return train.model_copy(update={k: v for k, v in (("epochs", stage.epochs), ("learning_rate", stage.learning_rate))
                                    if v is not None})


def layer_groups(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The student's parameter groups from input to output: embeddings, each encoder layer, then the
    head (pooler and classifier) of a transformer; each top-level block of a BiLSTM, CNN or static
    student, a CRF tagger's transitions in one group with its classifier (the "top two groups" of
    a BiLSTM-CRF were the classifier and the 24 transitions, which a KL stage does not train).
    Modules without parameters (dropout) are no group."""
    from kdexam.students.teacher_layers import find_layer_list

    def trained(groups):  # a module without parameters (a dropout) is no group
        return [g for g in groups if any(True for _ in g.parameters())]

    def blocks(model):  # a CRF's transitions and the classifier under them are one head group
        named = [(n, m) for n, m in model.named_children() if any(True for _ in m.parameters())]
        crf = [m for n, m in named if n == "crf"]
        rest = [m for n, m in named if n != "crf"]
        return rest[:-1] + [torch.nn.ModuleList([rest[-1], *crf])] if crf and rest else [m for _, m in named]

    inner = getattr(model, "model", model)  # HF students are wrapped
    base = getattr(inner, "base_model", None)
    if base is None or base is inner:
        return trained(blocks(model))
    try:
        _, _, layers = find_layer_list(inner)
    except KdexamError:
        return trained(blocks(model))
    before, after, seen = [], [], False
    for child in base.children():  # (embeddings) [the module holding the layers] (pooler), in order
        if any(m is layers for m in child.modules()):
            seen = True
        else:
            (after if seen else before).append(child)
    head = torch.nn.ModuleList([*after, *(m for m in inner.children() if m is not base)])  # pooler and classifier: one group
    return trained([*before, *layers, head])


def apply_unfreeze(model: torch.nn.Module, unfreeze: int | str) -> int:
    """Freeze all but the top ``unfreeze`` layer groups (more than the model has: all of them);
    returns the number of trainable parameters."""
    groups = layer_groups(model)
    n = len(groups) if unfreeze == "all" else min(int(unfreeze), len(groups))
    for p in model.parameters():
        p.requires_grad = unfreeze == "all"
    for g in groups[len(groups) - n :]:
        for p in g.parameters():
            p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
