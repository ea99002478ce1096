"""What is trained in a distillation stage: the student and the objectives' projections, together.

:class:`Distiller` is the one ``nn.Module`` the trainer sees: its parameters are the
student's and the learnable projections of the objectives (width-mismatched layer
matches), so both reach the optimizer, both are saved in checkpoints and restored on
resume, and only ``distiller.student`` is exported.

:class:`TeacherSide` gives a batch its teacher outputs, gathered by example index from
the cache (or computed online by a teacher that tokenizes the raw examples itself)
and laid out like the student's batch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kdexam.data.encode import MODEL_INPUTS
from kdexam.students.registry import EMBEDDING_FAMILIES
from kdexam.tasks import Task
from kdexam.teachers.cache import TeacherOutputs
from kdexam.teachers.teacher import to_batch


def student_outputs(student: nn.Module, batch: dict, names=()) -> dict:
    """The student's named outputs on a batch (``logits`` always; more when ``names`` asks).
    BiLSTM, CNN and static students give ``pooled`` and ``states`` (their last hidden states)."""
    inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    extra = tuple(sorted(set(names) - {"logits", "gold_loss"}))
    if not extra:
        return student(**inputs)
    if getattr(student, "family", None) in EMBEDDING_FAMILIES:
        out = student(**inputs, output_hidden_states=True)
        if "hidden_states" in out:
            out["states"] = out["hidden_states"][-1]
        return out
    return student(**inputs, outputs=extra)


class Distiller(nn.Module):
    """A student and a :class:`~kdexam.objectives.CompositeObjective`; ``forward`` is one step's loss.

    The student's own gold loss (a CRF tagger's likelihood) is computed by the student
    (``student.gold_loss``) and handed to the objectives as the ``gold_loss`` tensor:
    objectives receive tensors only."""

    def __init__(self, student: nn.Module, objective: nn.Module):
        super().__init__()
        self.student = student
        self.objective = objective

    def forward(self, batch: dict, teacher: dict | None) -> tuple[torch.Tensor, dict]:
        out = student_outputs(self.student, batch, self.objective.student_requires)
        own = getattr(self.student, "gold_loss", None)
        if own is not None and "labels" in batch and "gold" in self.objective.names:
            value = own(out["logits"], batch["labels"])
            if value is not None:
                out["gold_loss"] = value
        return self.objective(out, teacher, batch)


class TeacherSide:
    """The teacher outputs of a training batch, by the batch's example indices."""

    def __init__(self, outputs: TeacherOutputs, names, task: Task | None, positions: list[np.ndarray] | None = None):
        self.outputs, self.names, self.task, self.positions = outputs, sorted(names), task, positions

    def __call__(self, batch: dict, device) -> dict[str, torch.Tensor]:
        stored = self.outputs.gather(batch["index"].tolist(), self.names)
        return {k: v.to(device) for k, v in to_batch(stored, batch, self.task, self.positions).items()}
