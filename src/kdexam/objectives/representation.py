"""Representation transfer for students without transformer layers (BiLSTM, CNN, static).

XtremeDistil (Mukherjee & Awadallah 2020, "XtremeDistil: Multi-stage Distillation for
Massive Multilingual Models", ACL 2020) first teaches a small student the teacher's
*representation*, then its logits, then the gold labels. The student's features go through
a learned projection ``W = nn.Linear(F_S, H_T)`` to the teacher's width and are compared with
one teacher representation:

- sequence tasks: the student's sentence vector ``pooled`` (its head's input) against the
  teacher's ``[CLS]`` state of layer K (``target: cls``, the named output ``cls.K``) or its
  mean over the real tokens (``target: mean``, ``mean.K``). Both are sentence vectors the
  teacher computes on its own tokens, so students with another tokenizer (GloVe words) can
  use either;
- token classification: the student's token states ``states`` against the teacher's layer-K
  states, per word (``word.K``: the teacher's state at each word's first subword, laid out at the
  student's first subwords, so any tokenizer works): only at the student's first subwords
  (``batch["loss_mask"]``; every real token without one) where the teacher has a word, so
  continuation subwords, special tokens, padding and words the teacher's truncation cut off are
  never read.

Losses over the N compared vectors ``u_n = W s_n`` and ``v_n`` (teacher, constant):

- ``mse``: ``(1 / N H_T) Σ_n ‖u_n − v_n‖²``;
- ``cosine``: ``(1 / N) Σ_n (1 − cos(u_n, v_n))``;
- ``kl``: ``(τ² / N) Σ_n KL(softmax(v_n / τ) ‖ softmax(u_n / τ))``, the vectors read as
  distributions over their dimensions.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import ValidationInfo, field_validator
from torch import Tensor, nn

from kdexam.errors import KdexamError
from kdexam.objectives.base import BuildContext, Objective, ObjectiveParams, Temperature, float32, named, real_tokens, zero_like

MUKHERJEE_2020 = r"""@inproceedings{mukherjee2020xtremedistil,
  title={{XtremeDistil}: Multi-stage Distillation for Massive Multilingual Models},
  author={Subhabrata Mukherjee and Ahmed Hassan Awadallah},
  booktitle={Proceedings of the 58th Annual Meeting of the Association for Computational Linguistics},
  pages={2221--2234},
  year={2020},
  url={https://arxiv.org/abs/2004.05686},
}"""


def compare(u: Tensor, v: Tensor, loss: str, temperature: float) -> Tensor:
    """The loss between rows of ``u`` (projected student) and ``v`` (teacher), [N, H] each."""
    if not u.numel():
        return zero_like(u)
    if loss == "mse":
        return F.mse_loss(u, v)
    if loss == "cosine":
        return (1.0 - F.cosine_similarity(u, v, dim=-1)).mean()
    t = temperature
    return F.kl_div(F.log_softmax(u / t, -1), F.log_softmax(v / t, -1), log_target=True, reduction="batchmean") * t * t


class RepresentationLoss(Objective):
    r"""Projected student features against a teacher representation (XtremeDistil's stage 1).

    .. math::

        \mathcal{L} = \ell(W s, v), \quad W \in \mathbb{R}^{H_T \times F_S}

    with ``s`` the student's ``pooled`` vector (sequence tasks) or its ``states`` at each
    word's first subword (tagging), ``v`` the teacher's layer-``K`` [CLS] state, mean state,
    or token state, and ``ℓ`` MSE, cosine distance or KL over softmax-normalised vectors
    (module docstring).

    Args:
        layer: the teacher layer K (1 … layers).
        target: ``cls`` or ``mean`` (sequence tasks; tagging always compares token states).
        loss: ``mse``, ``cosine`` or ``kl``.
        temperature: τ of ``kl``.
        student_width, teacher_width: F_S and H_T.
        tagging: compare token states per word instead of sentence vectors.

    Config parameters (``Params``): ``layer`` (default: the teacher's last), ``target``
    (default ``cls``), ``loss`` (default ``mse``), ``temperature`` (default 1).

    Example:

        >>> import torch
        >>> loss = RepresentationLoss(layer=1, target="cls", loss="mse", student_width=2, teacher_width=2)
        >>> with torch.no_grad():
        ...     _ = loss.projection.weight.copy_(torch.eye(2)), loss.projection.bias.zero_()
        >>> loss({"pooled": torch.tensor([[1.0, 2.0]])}, {"cls.1": torch.tensor([[1.0, 4.0]])}, {}).item()
        2.0
    """

    name = "representation"
    task_kinds = ("classification", "regression", "token-classification")
    citation_entries = (MUKHERJEE_2020,)

    class Params(ObjectiveParams):
        layer: int | None = None
        target: Literal["cls", "mean"] = "cls"
        loss: Literal["mse", "cosine", "kl"] = "mse"
        temperature: Temperature = 1.0

        @field_validator("temperature")
        @classmethod
        def _only_for_kl(cls, value: float, info: ValidationInfo) -> float:
            if info.data.get("loss") != "kl":  # (a given temperature with mse or cosine did nothing)
                raise ValueError("it applies to loss kl only; drop it, or set loss=kl")
            return value

    def __init__(self, layer: int, target: str = "cls", loss: str = "mse", temperature: float = 1.0,
                 student_width: int = 1, teacher_width: int = 1, tagging: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.layer, self.target, self.loss, self.temperature, self.tagging = layer, target, loss, temperature, tagging
        self.projection = nn.Linear(student_width, teacher_width)

    @classmethod
    def build(cls, params: "RepresentationLoss.Params", ctx: BuildContext) -> "RepresentationLoss":
        tagging = ctx.task_kind == "token-classification"
        width = ctx.student.states_size if tagging else ctx.student.pooled_size
        if not width:
            raise KdexamError(f"{ctx.label} matches the sentence vector or token states of a BiLSTM, CNN or static "
                              "student, and this student has none; use hidden_mse or pkd for transformer students.")
        if not ctx.teacher.num_layers or not ctx.teacher.hidden_size:
            raise KdexamError(f"{ctx.label} reads the teacher's hidden states, but the teacher's shape is unknown; use a "
                              "transformer teacher, or drop the objective.")
        layer = ctx.teacher.num_layers if params.layer is None else params.layer
        if not 1 <= layer <= ctx.teacher.num_layers:
            raise KdexamError(f"{ctx.label} names teacher layer {layer}, but the teacher has layers 1 to "
                              f"{ctx.teacher.num_layers}; set layer within them.")
        return cls(layer, params.target, params.loss, params.temperature, width, ctx.teacher.hidden_size, tagging)

    @property
    def requires(self) -> tuple[set[str], set[str]]:
        if self.tagging:
            return {f"word.{self.layer}"}, {"states"}
        return {f"{self.target}.{self.layer}"}, {"pooled"}

    def forward(self, student: dict, teacher: dict | None, batch: dict) -> Tensor:
        with float32(student):
            if self.tagging:
                s = named(student, "states", "student", self.name)
                t = named(teacher, f"word.{self.layer}", "teacher", self.name)
                mask = batch.get("loss_mask")
                mask = real_tokens(batch, s) if mask is None else mask.to(s.device).bool()
                mask = mask & t.isfinite().all(-1)  # NaN: a word the teacher's truncation cut; inf: fp16 overflow
                if not mask.any():
                    return zero_like(s)
                return compare(self.projection(s[mask]), t[mask], self.loss, self.temperature)
            s = named(student, "pooled", "student", self.name)
            v = named(teacher, f"{self.target}.{self.layer}", "teacher", self.name)
            return compare(self.projection(s), v, self.loss, self.temperature)
