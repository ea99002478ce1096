"""Objectives on self-attention: MiniLM's attention distributions and value relation,
TinyBERT's attention scores.

All three compare attention head by head, so the teacher and the student must have
the same number of heads (their widths may differ); with different head counts use
``relations`` (MiniLMv2's relation heads, :mod:`kdexam.objectives.relations`).
The embedding layer has no attention: layers count from 1 here. Only real tokens
(``batch["attention_mask"] == 1``) count, as query rows and as keys.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from kdexam.objectives.base import (
    BuildContext,
    Layers,
    LayerObjective,
    ObjectiveParams,
    named,
    need_heads,
    real_tokens,
    same_tokens,
    split_heads,
    zero_like,
)
from kdexam.objectives.features import JIAO_2020
from kdexam.objectives.relations import masked_kl, relation_log_probs

WANG_2020 = r"""@inproceedings{wang2020minilm,
  title={{MiniLM}: Deep Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained Transformers},
  author={Wenhui Wang and Furu Wei and Li Dong and Hangbo Bao and Nan Yang and Ming Zhou},
  booktitle={Advances in Neural Information Processing Systems 33},
  pages={5776--5788},
  year={2020},
  url={https://arxiv.org/abs/2002.10957},
}"""


class _HeadObjective(LayerObjective):
    """A layer objective that compares attention heads one to one (``heads`` on both sides)."""

    min_layer: ClassVar[int] = 1

    def __init__(self, pairs, heads: int | None = None, pair_weights=None) -> None:
        super().__init__(pairs, pair_weights)
        self.heads = heads

    def extra_repr(self) -> str:
        return f"pairs={self.pairs}, heads={self.heads}"

    @classmethod
    def create(cls, params, ctx: BuildContext, pairs, pair_weights, projections) -> "_HeadObjective":
        heads, _ = need_heads(ctx)
        return cls(pairs, heads=heads, pair_weights=pair_weights)

    def _heads(self) -> int:
        if not self.heads:
            raise ValueError(f"{self.name} needs the head count (heads=...) to split [B, L, H] projections.")
        return self.heads


class AttentionKLLoss(_HeadObjective):
    r"""MiniLM's self-attention distribution transfer: KL from the teacher's attention
    probabilities to the student's, per head and query row.

    .. math::

        \mathcal{L} = \frac{1}{|P|} \sum_{(t,s) \in P} \frac{1}{h N} \sum_{a=1}^{h} \sum_{(b,i)\,\text{real}}
            \sum_{j\,\text{real}} A^T_{t,a,b,i,j} \log \frac{A^T_{t,a,b,i,j}}{A^S_{s,a,b,i,j}}

    over :math:`h` heads, the :math:`N` real query positions of the batch and the real
    keys (padded keys carry no probability). Wang et al. (2020) transfer the teacher's
    last layer to the student's last (``layers: final``, the default); other mappings
    give a mean over pairs.

    Args:
        pairs, pair_weights: as :class:`~kdexam.objectives.HiddenMSELoss` (layers >= 1).
        heads: the common head count (checked against the inputs when given).

    Config parameters: ``layers`` (default ``final``).

    Inputs:
        ``student["attention.s"]`` and ``teacher["attention.t"]`` ``[B, heads, L, L]``
        (softmax probabilities), ``batch["attention_mask"]``.

    Relations:
        - :class:`ValueRelationLoss` is its companion in MiniLM (same reduction).
        - :class:`AttentionMSELoss` compares the scores before the softmax.

    Example:

        >>> import torch
        >>> from kdexam.objectives import AttentionKLLoss
        >>> student = {"attention.1": torch.tensor([[[[0.5, 0.5], [0.5, 0.5]]]])}
        >>> teacher = {"attention.2": torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])}
        >>> round(AttentionKLLoss([(2, 1)])(student, teacher, {}).item(), 4)  # (log 2 + 0) / 2
        0.3466
    """

    name = "attention_kl"
    citation_entries = (WANG_2020,)

    class Params(ObjectiveParams):
        layers: Layers = "final"

    def pair_keys(self, t: int, s: int) -> tuple[set[str], set[str]]:
        return {f"attention.{t}"}, {f"attention.{s}"}

    def pair_loss(self, student: dict, teacher: dict, batch: dict, t: int, s: int) -> Tensor:
        a_s = named(student, f"attention.{s}", "student", self.name)
        a_t = named(teacher, f"attention.{t}", "teacher", self.name)
        if a_s.dim() != 4 or a_s.shape != a_t.shape:
            raise ValueError(f"{self.name}: student attention.{s} {tuple(a_s.shape)} and teacher attention.{t} "
                             f"{tuple(a_t.shape)} must both be [B, heads, L, L] with the same heads; use relations "
                             "for different head counts.")
        if self.heads and a_s.size(1) != self.heads:
            raise ValueError(f"{self.name}: expected {self.heads} heads, got {a_s.size(1)}.")
        mask = real_tokens(batch, a_s[:, 0])
        valid = mask[:, None, :, None] & mask[:, None, None, :]
        p_t = a_t.masked_fill(~valid, 0.0)
        log_s = a_s.clamp_min(torch.finfo(torch.float32).tiny).log().masked_fill(~valid, 0.0)
        term = torch.xlogy(p_t, p_t) - p_t * log_s
        n = mask.sum()
        if int(n) == 0:
            return zero_like(a_s)
        return term.sum() / (a_s.size(1) * n)


class AttentionMSELoss(_HeadObjective):
    r"""TinyBERT's attention-based distillation: mean squared error between the
    pre-softmax attention scores of matched layers, head by head.

    .. math::

        \mathcal{L} = \frac{1}{|P|} \sum_{(t,s) \in P} \frac{1}{h M} \sum_{a=1}^{h} \sum_{(b,i,j)\,\text{real}}
            \left( \frac{q^S_{a,i} \cdot k^S_{a,j}}{\sqrt{d^S}} - \frac{q^T_{a,i} \cdot k^T_{a,j}}{\sqrt{d^T}} \right)^2

    with per-head queries and keys split from ``query.K`` / ``key.K`` (``d = H / h`` on
    each side), and :math:`M = \sum_b n_b^2` the real (query, key) pairs. Jiao et al.
    (2020) use the unnormalised scores :math:`QK^\top/\sqrt{d}` (they found them to
    converge faster than the softmax outputs) and the ``uniform`` mapping (the
    default); this is TinyBERT's loss without model-specific additions to the scores
    (relative position biases, ALiBi).

    Args:
        pairs, pair_weights: as :class:`AttentionKLLoss`.
        heads: the common head count (needed to split the projections).

    Config parameters: ``layers`` (default ``uniform``).

    Inputs:
        ``query.K`` and ``key.K`` ``[B, L, H]`` of the matched layers on both sides,
        ``batch["attention_mask"]``.

    Relations:
        - :class:`AttentionKLLoss` compares the probabilities after the softmax.

    Example:

        >>> import torch
        >>> from kdexam.objectives import AttentionMSELoss
        >>> student = {"query.1": torch.tensor([[[1.0], [0.0]]]), "key.1": torch.tensor([[[2.0], [1.0]]])}
        >>> teacher = {"query.1": torch.tensor([[[1.0], [0.0]]]), "key.1": torch.tensor([[[0.0], [1.0]]])}
        >>> AttentionMSELoss([(1, 1)], heads=1)(student, teacher, {}).item()  # ((2-0)² + (1-1)² + 0 + 0) / 4
        1.0
    """

    name = "attention_mse"
    citation_entries = (JIAO_2020,)

    class Params(ObjectiveParams):
        layers: Layers = "uniform"

    def pair_keys(self, t: int, s: int) -> tuple[set[str], set[str]]:
        return {f"query.{t}", f"key.{t}"}, {f"query.{s}", f"key.{s}"}

    def _scores(self, q: Tensor, k: Tensor, mask: Tensor) -> Tensor:
        keep = mask[..., None]
        qh = split_heads(q.masked_fill(~keep, 0.0), self._heads())
        kh = split_heads(k.masked_fill(~keep, 0.0), self._heads())
        return qh @ kh.transpose(-1, -2) / math.sqrt(qh.size(-1))

    def pair_loss(self, student: dict, teacher: dict, batch: dict, t: int, s: int) -> Tensor:
        qs, ks = (named(student, f"{k}.{s}", "student", self.name) for k in ("query", "key"))
        qt, kt = (named(teacher, f"{k}.{t}", "teacher", self.name) for k in ("query", "key"))
        same_tokens(qs, qt, self.name, f"query.{s}", f"query.{t}")
        mask = real_tokens(batch, qs)
        valid = mask[:, None, :, None] & mask[:, None, None, :]
        diff = (self._scores(qs, ks, mask) - self._scores(qt, kt, mask)).masked_fill(~valid, 0.0)
        pairs = (mask.sum(-1).float() ** 2).sum()
        if int(pairs) == 0:
            return zero_like(diff)
        return diff.pow(2).sum() / (self._heads() * pairs)


class ValueRelationLoss(_HeadObjective):
    r"""MiniLM's value-relation transfer: KL between the teacher's and the student's
    scaled dot-product relations of the values, per head.

    .. math::

        \mathrm{VR}_a = \mathrm{softmax}\left(\frac{V_a V_a^\top}{\sqrt{d}}\right), \qquad
        \mathcal{L} = \frac{1}{|P|} \sum_{(t,s) \in P} \frac{1}{h N} \sum_{a=1}^{h} \sum_{(b,i)\,\text{real}}
            \mathrm{KL}\left(\mathrm{VR}^T_{a,b,i} \,\middle\|\, \mathrm{VR}^S_{a,b,i}\right)

    with each side's values split into its :math:`h` attention heads
    (:math:`d = H/h`, its own), padded keys masked before the softmax, and the KL
    summed over real keys and averaged over heads and the :math:`N` real query rows.
    Wang et al. (2020) use it on the last layers (``layers: final``, the default), with
    :class:`AttentionKLLoss`.

    Args:
        pairs, pair_weights: as :class:`AttentionKLLoss`.
        heads: the common head count (needed to split the values).

    Config parameters: ``layers`` (default ``final``).

    Inputs:
        ``value.K`` ``[B, L, H]`` of the matched layers on both sides,
        ``batch["attention_mask"]``.

    Relations:
        - :class:`~kdexam.objectives.RelationsLoss` with ``relations: [vv]`` and
          ``relation_heads`` = ``heads`` gives the same value.

    Example:

        >>> import torch
        >>> from kdexam.objectives import ValueRelationLoss
        >>> v = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> ValueRelationLoss([(1, 1)], heads=2)({"value.1": v}, {"value.1": v}, {}).item()
        0.0
    """

    name = "value_relation"
    citation_entries = (WANG_2020,)

    class Params(ObjectiveParams):
        layers: Layers = "final"

    def pair_keys(self, t: int, s: int) -> tuple[set[str], set[str]]:
        return {f"value.{t}"}, {f"value.{s}"}

    def pair_loss(self, student: dict, teacher: dict, batch: dict, t: int, s: int) -> Tensor:
        vs = named(student, f"value.{s}", "student", self.name)
        vt = named(teacher, f"value.{t}", "teacher", self.name)
        same_tokens(vs, vt, self.name, f"value.{s}", f"value.{t}")
        mask = real_tokens(batch, vs)
        heads = self._heads()
        return masked_kl(relation_log_probs(vt, vt, heads, mask), relation_log_probs(vs, vs, heads, mask), mask)
