"""MiniLMv2's self-attention relations, and the masked relation / KL helpers that
MiniLM's value relation shares.

A relation between two of a layer's self-attention projections ``A_i``, ``A_j``
(``query``, ``key`` or ``value``, each ``[B, L, H]``) is computed per *relation head*:
split ``H`` into ``R`` contiguous heads of ``d_r = H / R`` and take

.. math::

    \\mathrm{R}_{ij,a} = \\mathrm{softmax}\\left(\\frac{A_{i,a} A_{j,a}^\\top}{\\sqrt{d_r}}\\right) \\in \\mathbb{R}^{L \\times L}

with padded keys masked before the softmax (probability exactly 0). Teacher and student
relations are ``L x L`` whatever their widths, so the two may have different widths
and attention-head counts; only ``R`` must divide both widths.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field, PositiveInt, field_validator
from torch import Tensor

from kdexam.errors import KdexamError
from kdexam.objectives.base import (
    BuildContext,
    Layers,
    LayerObjective,
    ModelShape,
    ObjectiveParams,
    named,
    real_tokens,
    same_tokens,
    split_heads,
    zero_like,
)

WANG_2021 = r"""@inproceedings{wang2021minilmv2,
  title={{MiniLMv2}: Multi-Head Self-Attention Relation Distillation for Compressing Pretrained Transformers},
  author={Wenhui Wang and Hangbo Bao and Shaohan Huang and Li Dong and Furu Wei},
  booktitle={Findings of the Association for Computational Linguistics: ACL-IJCNLP 2021},
  pages={2140--2151},
  year={2021},
  url={https://arxiv.org/abs/2012.15828},
}"""

RELATIONS: dict[str, tuple[str, str]] = {"qq": ("query", "query"), "kk": ("key", "key"), "vv": ("value", "value"),
                                         "qk": ("query", "key")}
"""Relation name -> the two projections it relates."""


def relation_log_probs(a: Tensor, b: Tensor, heads: int, mask: Tensor) -> Tensor:
    """``log softmax(A_a B_aᵀ / √d)`` per head: ``[B, heads, L, L]``, padded keys masked
    (``mask``: ``[B, L]`` real tokens). Padded rows of ``a`` and ``b`` are zeroed first, so
    whatever they hold never reaches the result."""
    keep = mask[..., None]
    ah = split_heads(a.masked_fill(~keep, 0.0), heads)
    bh = split_heads(b.masked_fill(~keep, 0.0), heads)
    scores = ah @ bh.transpose(-1, -2) / math.sqrt(ah.size(-1))
    scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
    return scores.log_softmax(-1)


def masked_kl(log_t: Tensor, log_s: Tensor, mask: Tensor) -> Tensor:
    """:math:`\\mathrm{KL}(p_T \\| p_S)` over the real keys of each real query row, averaged
    over real rows and heads: ``Σ_{b,a,i real} Σ_{j real} p_T (log p_T − log p_S) / (heads · N)``."""
    heads = log_t.size(1)
    valid = mask[:, None, :, None] & mask[:, None, None, :]
    term = (log_t.exp() * (log_t - log_s)).masked_fill(~valid, 0.0)
    n = mask.sum()
    if int(n) == 0:
        return zero_like(log_s)
    return term.sum() / (heads * n)


def suggest_relation_heads(teacher: ModelShape, student: ModelShape) -> int:
    """A relation-head count that divides both widths: the largest divisor of their gcd
    not above the teacher's head count (12 when unknown)."""
    g = math.gcd(int(teacher.hidden_size), int(student.hidden_size))
    cap = max(1, min(teacher.num_heads or student.num_heads or 12, g))
    return max(d for d in range(1, cap + 1) if g % d == 0)


class RelationsLoss(LayerObjective):
    r"""MiniLMv2: KL divergence between the teacher's and the student's multi-head
    self-attention relations (query-query, key-key, value-value, …).

    .. math::

        \mathcal{L} = \frac{1}{|P|} \sum_{(t,s) \in P} \frac{1}{|\mathcal{R}|} \sum_{(i,j) \in \mathcal{R}}
            \frac{1}{R\,N} \sum_{a=1}^{R} \sum_{(b,q)\,\text{real}}
            \mathrm{KL}\left(\mathrm{R}^T_{ij,a,b,q} \,\middle\|\, \mathrm{R}^S_{ij,a,b,q}\right)

    with :math:`\mathrm{R}_{ij,a} = \mathrm{softmax}(A_{i,a} A_{j,a}^\top / \sqrt{d_r})` as
    in the module docstring, :math:`R` relation heads of :math:`d_r = H/R` on each side
    (``H`` its own width), :math:`N` real query positions, and the KL summed over real
    keys. Wang et al. (2021) sum the relation terms (weight 1 each; Q-Q, K-K, V-V) and
    average over heads and positions; here the relation terms are averaged too, so the
    weight does not depend on how many relations are used. Teacher and student need
    not have the same width or head count.

    Args:
        pairs, pair_weights: as :class:`~kdexam.objectives.HiddenMSELoss`.
        relations: names from ``qq``, ``kk``, ``vv``, ``qk`` (default ``qq, kk, vv``).
        relation_heads: :math:`R`, dividing both widths.

    Config parameters: ``layers`` (default ``final``: the student's last layer against
    the teacher's last; MiniLMv2 also uses an upper-middle teacher layer for large
    teachers, e.g. ``[[21, 6]]``), ``relations``, ``relation_heads`` (default: the
    teacher's head count when it divides both widths; otherwise set it, e.g. to a
    divisor of both widths that the error message suggests).

    Inputs:
        ``query.K`` / ``key.K`` / ``value.K`` ``[B, L, H]`` of the matched layers on both
        sides (those the relations use), ``batch["attention_mask"]``.

    Relations:
        - ``relations: [vv]`` with ``relation_heads`` equal to both head counts is
          :class:`~kdexam.objectives.ValueRelationLoss`.

    Example:

        >>> import torch
        >>> from kdexam.objectives import RelationsLoss
        >>> loss = RelationsLoss([(1, 1)], relations=["vv"], relation_heads=1)
        >>> v = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> loss({"value.1": v}, {"value.1": v * 3}, {}).item() > 0  # sharper teacher relations
        True
        >>> loss({"value.1": v}, {"value.1": v}, {}).item()
        0.0
    """

    name = "relations"
    citation_entries = (WANG_2021,)
    min_layer: ClassVar[int] = 1

    class Params(ObjectiveParams):
        layers: Layers = "final"
        relations: list[Literal["qq", "kk", "vv", "qk"]] = Field(default_factory=lambda: ["qq", "kk", "vv"])
        relation_heads: PositiveInt | None = None

        @field_validator("relations")
        @classmethod
        def _distinct(cls, relations: list[str]) -> list[str]:
            if not relations or len(set(relations)) != len(relations):
                raise ValueError("give one or more distinct relations from qq, kk, vv, qk")
            return relations

    def __init__(self, pairs, relations=("qq", "kk", "vv"), relation_heads: int = 1, pair_weights=None) -> None:
        super().__init__(pairs, pair_weights)
        unknown = [r for r in relations if r not in RELATIONS]
        if unknown or not relations:
            raise ValueError(f"relations must be names from {', '.join(RELATIONS)}, got {list(relations)}.")
        self.relations = list(relations)
        self.relation_heads = int(relation_heads)

    def extra_repr(self) -> str:
        return f"pairs={self.pairs}, relations={self.relations}, relation_heads={self.relation_heads}"

    @classmethod
    def match_params(cls, ctx: BuildContext):
        """A ``relations`` match has no parameters to set: its relation heads are the teacher's head
        count when it divides both widths, else :func:`suggest_relation_heads` (the refusal's own
        suggestion; MiniLM-L6's 12 heads divide no ``bert-*`` preset's width)."""
        return cls.Params(relation_heads=suggest_relation_heads(ctx.teacher, ctx.student))

    @classmethod
    def create(cls, params, ctx: BuildContext, pairs, pair_weights, projections) -> "RelationsLoss":
        widths = (ctx.teacher.hidden_size, ctx.student.hidden_size)
        heads = params.relation_heads
        if heads is None:
            heads = ctx.teacher.num_heads
            if not heads or any(w % heads for w in widths):
                raise KdexamError(
                    f"{ctx.label} needs relation_heads dividing both widths ({widths[0]} and {widths[1]}), and the "
                    f"teacher's head count {heads} does not; set relation_heads to "
                    f"{suggest_relation_heads(ctx.teacher, ctx.student)}.")
        elif any(w % heads for w in widths):
            raise KdexamError(
                f"{ctx.label} has relation_heads {heads}, which does not divide both widths ({widths[0]} and "
                f"{widths[1]}); set it to {suggest_relation_heads(ctx.teacher, ctx.student)}.")
        return cls(pairs, relations=params.relations, relation_heads=heads, pair_weights=pair_weights)

    def pair_keys(self, t: int, s: int) -> tuple[set[str], set[str]]:
        kinds = {k for r in self.relations for k in RELATIONS[r]}
        return {f"{k}.{t}" for k in kinds}, {f"{k}.{s}" for k in kinds}

    def pair_loss(self, student: dict, teacher: dict, batch: dict, t: int, s: int) -> Tensor:
        total = None
        for r in self.relations:
            i, j = RELATIONS[r]
            si, sj = (named(student, f"{k}.{s}", "student", self.name) for k in (i, j))
            ti, tj = (named(teacher, f"{k}.{t}", "teacher", self.name) for k in (i, j))
            same_tokens(si, ti, self.name, f"{i}.{s}", f"{i}.{t}")
            for side, x in (("student", si), ("teacher", ti)):
                if x.shape[-1] % self.relation_heads:
                    raise ValueError(f"{self.name}: the {side}'s width {x.shape[-1]} is not divisible by "
                                     f"{self.relation_heads} relation heads.")
            mask = real_tokens(batch, si)
            value = masked_kl(relation_log_probs(ti, tj, self.relation_heads, mask),
                              relation_log_probs(si, sj, self.relation_heads, mask), mask)
            total = value if total is None else total + value
        return total / len(self.relations)
