"""The task's own loss against the gold labels (the ``gold`` objective): the supervised term that
Hinton et al. mix with the soft targets, and the whole loss of a student trained on labels alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdexam.objectives.base import BuildContext, Objective, ObjectiveParams
from kdexam.objectives.logits import outputs_logits, zero_loss
from kdexam.tasks import IGNORE_INDEX, TASK_KINDS


class GoldLoss(Objective):
    r"""The task's own loss against the gold labels; reads no teacher.

    - classification / token classification: cross-entropy
      :math:`-\frac{1}{N}\sum_n \log \mathrm{softmax}(z^S_n)_{y_n}` over the examples
      or tokens whose label is not ``-100`` (unlabelled rows of a transfer set, and
      continuation subwords, carry ``-100``);
    - regression: mean squared error :math:`\frac{1}{N}\sum_n (\hat y_n - y_n)^2`
      between the student's output (``[B]`` or ``[B, 1]``) and the targets, over
      targets that are not NaN (NaN marks an unlabelled example);
    - any task, when the student computes its own gold loss (``student["gold_loss"]``,
      a 0-dim tensor -- e.g. a CRF tagger's negative log-likelihood of the gold tag
      sequence, Lample et al. 2016): that value, as it is (in float32).

    A batch with no labelled position gives 0 (with a graph), so mixed labelled /
    unlabelled training needs no special case. A batch without ``"labels"`` is an
    error.

    Args:
        task_kind: ``"classification"``, ``"token-classification"`` or
            ``"regression"``; when ``None``, floating-point labels mean regression
            and integer labels mean classification.

    Inputs:
        ``student["logits"]`` (and the optional ``student["gold_loss"]``);
        ``batch["labels"]``.

    Relations:
        - :class:`~kdexam.objectives.logits.HardDistillationLoss`: the same with the teacher's labels.
        - Mixed with :class:`~kdexam.objectives.logits.KLDivLoss` it gives Hinton et al.'s weighted average of
          soft and hard objectives (see ``default_objectives``).

    Example:

        >>> import torch
        >>> from kdexam.objectives import GoldLoss
        >>> student = {"logits": torch.zeros(2, 4)}
        >>> round(GoldLoss()(student, None, {"labels": torch.tensor([3, -100])}).item(), 4)  # log 4
        1.3863
        >>> GoldLoss("regression")({"logits": torch.tensor([[1.0], [2.0]])}, None,
        ...                        {"labels": torch.tensor([0.0, 2.0])}).item()
        0.5
        >>> GoldLoss()({"logits": torch.zeros(2, 4), "gold_loss": torch.tensor(0.25)}, None, {}).item()
        0.25
    """

    name = "gold"
    task_kinds = TASK_KINDS
    needs_teacher = False
    citation_entries = ()

    def __init__(self, task_kind: str | None = None) -> None:
        super().__init__()
        self.task_kind = task_kind

    @classmethod
    def build(cls, params: ObjectiveParams, ctx: BuildContext) -> "GoldLoss":
        return cls(ctx.task_kind)

    def extra_repr(self) -> str:
        return f"task_kind={self.task_kind!r}"

    def forward(self, student: dict, teacher: dict | None, batch: dict) -> Tensor:
        own = student.get("gold_loss") if student is not None else None
        if own is not None:
            if own.dim() != 0:
                raise ValueError(f"GoldLoss: student['gold_loss'] must be a 0-dim tensor, got shape {tuple(own.shape)}.")
            return own.float()
        s = outputs_logits(student, "student", "GoldLoss")
        labels = batch.get("labels")
        if labels is None:
            raise ValueError("GoldLoss needs batch['labels'], but the batch holds none.")
        regression = self.task_kind == "regression" if self.task_kind else labels.is_floating_point()
        if regression:
            pred, target = s.reshape(-1).float(), labels.reshape(-1).float()
            if pred.shape != target.shape:
                raise ValueError(
                    f"GoldLoss (regression): predictions {tuple(s.shape)} and labels {tuple(labels.shape)} do not match.")
            keep = ~torch.isnan(target)
            if not bool(keep.all()):
                pred, target = pred[keep], target[keep]
            return F.mse_loss(pred, target) if target.numel() else zero_loss(s)
        logits = s.reshape(-1, s.size(-1)).float()
        flat = labels.reshape(-1).long()
        if flat.numel() != logits.size(0):
            raise ValueError(f"GoldLoss: logits {tuple(s.shape)} and labels {tuple(labels.shape)} do not match.")
        n = (flat != IGNORE_INDEX).sum()
        total = F.cross_entropy(logits, flat, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / n.clamp(min=1)
