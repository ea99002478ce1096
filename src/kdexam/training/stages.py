"""Stages of a distillation recipe, and gradual unfreezing.

A run is one or more stages (XtremeDistil, Mukherjee & Awadallah 2020): each names
its objectives and matches (the run's when omitted), its epochs and learning rate,
and how many of the student's layer groups train (``unfreeze``: the top N, head
first; the rest frozen).
"""

from __future__ import annotations

import torch

from kdexam.config import DistillRunConfig, StageConfig, TrainConfig


def stages_of(cfg: DistillRunConfig, task_kind: str = "classification") -> list[StageConfig]:
    """The run's stages: ``cfg.stages``, its ``recipe``'s (:mod:`kdexam.config.recipes`), or one
    stage with the run's objectives and matches."""
    if cfg.recipe:
        from kdexam.config.recipes import recipe_stages

        return recipe_stages(cfg.recipe, task_kind)
    return cfg.stages or [StageConfig(objectives=cfg.objectives, matches=cfg.matches)]


def stage_objectives(stage: StageConfig, cfg: DistillRunConfig, default: list) -> tuple[list, list]:
    """A stage's (objective specs, matches): its own, else the run's, else ``default`` objectives.
    Matches alone (no objective list anywhere) come on top of the default objectives."""
    matches = stage.matches if stage.matches is not None else (cfg.matches or [])
    specs = stage.objectives or cfg.objectives or default
    return list(specs), list(matches)


def stage_train_config(stage: StageConfig, train: TrainConfig) -> TrainConfig:
    """The run's training settings with the stage's epochs and learning rate."""
    return train.model_copy(update={k: v for k, v in (("epochs", stage.epochs), ("learning_rate", stage.learning_rate))
                                    if v is not None})


def layer_groups(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The student's parameter groups from input to output: embeddings, each encoder layer
    (transformers) or each top-level block (BiLSTM/CNN), then the head."""
    inner = getattr(model, "model", model)  # HF students are wrapped
    base = getattr(inner, "base_model", None)
    if base is not None and base is not inner and hasattr(base, "encoder"):
        layers = next(m for m in base.encoder.modules() if isinstance(m, torch.nn.ModuleList))
        head = [m for n, m in inner.named_children() if m is not base]
        return [base.embeddings, *layers, *[m for n, m in base.named_children() if n not in ("embeddings", "encoder")], *head]
    return [m for m in model.children() if any(True for _ in m.parameters())]


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
