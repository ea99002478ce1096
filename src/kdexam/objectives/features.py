"""Objectives on hidden states: TinyBERT's hidden and embedding MSE, DistilBERT's
cosine loss, and Patient KD's normalised [CLS] distance.

Each compares the student's layer ``s`` with the teacher's layer ``t`` for the pairs
of its ``layers`` parameter (:mod:`kdexam.objectives.mapping`) and averages over the
pairs. Where the widths differ, the student's features go through a learned
``W = nn.Linear(student_width, teacher_width)`` per pair first (``projection: auto``;
``linear`` always adds one, ``none`` never does). Token-level losses average over real
tokens (``batch["attention_mask"] == 1``); padding is never read.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from kdexam.objectives.base import (
    BuildContext,
    Layers,
    LayerObjective,
    ObjectiveParams,
    Projection,
    named,
    real_tokens,
    same_tokens,
    zero_like,
)

JIAO_2020 = r"""@inproceedings{jiao2020tinybert,
  title={{TinyBERT}: Distilling {BERT} for Natural Language Understanding},
  author={Xiaoqi Jiao and Yichun Yin and Lifeng Shang and Xin Jiang and Xiao Chen and Linlin Li and Fang Wang and Qun Liu},
  booktitle={Findings of the Association for Computational Linguistics: EMNLP 2020},
  pages={4163--4174},
  year={2020},
  url={https://arxiv.org/abs/1909.10351},
}"""

SANH_2019 = r"""@misc{sanh2019distilbert,
  title={{DistilBERT}, a distilled version of {BERT}: smaller, faster, cheaper and lighter},
  author={Victor Sanh and Lysandre Debut and Julien Chaumond and Thomas Wolf},
  year={2019},
  eprint={1910.01108},
  archivePrefix={arXiv},
  primaryClass={cs.CL},
  url={https://arxiv.org/abs/1910.01108},
}"""

SUN_2019 = r"""@inproceedings{sun2019patient,
  title={Patient Knowledge Distillation for {BERT} Model Compression},
  author={Siqi Sun and Yu Cheng and Zhe Gan and Jingjing Liu},
  booktitle={Proceedings of the 2019 Conference on Empirical Methods in Natural Language Processing and the 9th International Joint Conference on Natural Language Processing (EMNLP-IJCNLP)},
  pages={4323--4332},
  year={2019},
  url={https://arxiv.org/abs/1908.09355},
}"""


class _TokenFeatureLoss(LayerObjective):
    """Shared part of the token-level hidden-state losses: real tokens of ``hidden.t`` / ``hidden.s``."""

    carries_width: ClassVar[bool] = True

    def pair_keys(self, t: int, s: int) -> tuple[set[str], set[str]]:
        return {f"hidden.{t}"}, {f"hidden.{s}"}

    def real_rows(self, student: dict, teacher: dict, batch: dict, t: int, s: int) -> tuple[Tensor, Tensor]:
        """``([N, H_T], [N, H_T])``: the projected student and the teacher features of the N real tokens."""
        hs = named(student, f"hidden.{s}", "student", self.name)
        ht = named(teacher, f"hidden.{t}", "teacher", self.name)
        if hs.dim() != 3 or ht.dim() != 3:
            raise ValueError(f"{self.name} expects hidden states [B, L, H], got student {tuple(hs.shape)} and teacher "
                             f"{tuple(ht.shape)}.")
        same_tokens(hs, ht, self.name, f"hidden.{s}", f"hidden.{t}")
        mask = real_tokens(batch, hs)
        ps = self.project(hs[mask], t, s)
        if ps.shape[-1] != ht.shape[-1]:
            raise ValueError(f"{self.name}: student width {hs.shape[-1]} and teacher width {ht.shape[-1]} differ and "
                             f"the pair ({t}, {s}) has no projection.")
        return ps, ht[mask]


class HiddenMSELoss(_TokenFeatureLoss):
    r"""Mean squared error between (projected) student and teacher hidden states (TinyBERT).

    .. math::

        \mathcal{L} = \frac{1}{|P|} \sum_{(t,s) \in P} \frac{1}{N H_T}
            \sum_{(b,i)\,\text{real}} \sum_{d=1}^{H_T} \left( (W_{ts} h^S_{s,b,i})_d - h^T_{t,b,i,d} \right)^2

    over the layer pairs :math:`P` and the :math:`N` real tokens of the batch: a mean
    over tokens and dimensions per pair, then a mean over pairs (TinyBERT sums over
    layers; the mean keeps the weight independent of the number of pairs). ``W`` is
    the identity when the widths are equal (``projection: auto``).

    Args:
        pairs: ``(teacher_layer, student_layer)`` pairs (0 = embedding output).
        pair_weights: relative weight per pair (default: equal).
        teacher_width, student_width: the hidden sizes.
        projection: ``auto`` (a projection only where the widths differ), ``linear``,
            ``none``; or one mode per pair.

    Config parameters (``Params``): ``layers`` (default ``uniform``), ``embeddings``
    (default false: also match the embedding outputs, pair (0, 0)), ``projection``.

    Inputs:
        ``student["hidden.s"]`` ``[B, L, H_S]``, ``teacher["hidden.t"]`` ``[B, L, H_T]``,
        ``batch["attention_mask"]``.

    Relations:
        - :class:`EmbeddingMSELoss` is the pair (0, 0) alone.
        - :class:`HiddenCosineLoss` compares directions only.

    Example:

        >>> import torch
        >>> from kdexam.objectives import HiddenMSELoss
        >>> loss = HiddenMSELoss([(2, 1)], teacher_width=2, student_width=2)
        >>> student = {"hidden.1": torch.tensor([[[1.0, 2.0], [9.0, 9.0]]])}
        >>> teacher = {"hidden.2": torch.tensor([[[0.0, 4.0], [0.0, 0.0]]])}
        >>> loss(student, teacher, {"attention_mask": torch.tensor([[1, 0]])}).item()  # (1 + 4) / 2
        2.5
    """

    name = "hidden_mse"
    citation_entries = (JIAO_2020,)

    class Params(ObjectiveParams):
        layers: Layers = "uniform"
        embeddings: bool = False
        projection: Projection = "auto"

    def pair_loss(self, student: dict, teacher: dict, batch: dict, t: int, s: int) -> Tensor:
        ps, ht = self.real_rows(student, teacher, batch, t, s)
        return F.mse_loss(ps, ht) if ps.numel() else zero_like(ps)


class HiddenCosineLoss(_TokenFeatureLoss):
    r"""One minus the cosine similarity of (projected) student and teacher hidden states
    per real token (DistilBERT's cosine embedding loss).

    .. math::

        \mathcal{L} = \frac{1}{|P|} \sum_{(t,s) \in P} \frac{1}{N} \sum_{(b,i)\,\text{real}}
            \left(1 - \cos\left(W_{ts} h^S_{s,b,i},\; h^T_{t,b,i}\right)\right)

    Sanh et al. (2019) align the directions of the student's and the teacher's last
    hidden states over real tokens (``nn.CosineEmbeddingLoss`` with target 1); here any
    layer pairs, mean over real tokens then over pairs. Scale-free: only directions
    count.

    Args:
        as :class:`HiddenMSELoss`.

    Config parameters: ``layers`` (default ``uniform``; DistilBERT: ``final``),
    ``embeddings``, ``projection``.

    Inputs:
        as :class:`HiddenMSELoss`.

    Relations:
        - :class:`HiddenMSELoss` also matches the norms.
        - :class:`PKDLoss` compares normalised [CLS] vectors with a squared distance,
          which is :math:`2(1 - \cos)`.

    Example:

        >>> import torch
        >>> from kdexam.objectives import HiddenCosineLoss
        >>> loss = HiddenCosineLoss([(1, 1)], teacher_width=2, student_width=2)
        >>> student = {"hidden.1": torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])}
        >>> teacher = {"hidden.1": torch.tensor([[[0.0, 1.0], [5.0, 0.0]]])}
        >>> loss(student, teacher, {}).item()  # mean of (1 - 0) and (1 - 1)
        0.5
    """

    name = "hidden_cosine"
    citation_entries = (SANH_2019,)

    class Params(ObjectiveParams):
        layers: Layers = "uniform"
        embeddings: bool = False
        projection: Projection = "auto"

    def pair_loss(self, student: dict, teacher: dict, batch: dict, t: int, s: int) -> Tensor:
        ps, ht = self.real_rows(student, teacher, batch, t, s)
        if not ps.numel():
            return zero_like(ps)
        return (1.0 - F.cosine_similarity(ps, ht, dim=-1)).mean()


class EmbeddingMSELoss(HiddenMSELoss):
    r"""TinyBERT's embedding-layer loss: :class:`HiddenMSELoss` on the pair (0, 0) alone.

    .. math::

        \mathcal{L} = \frac{1}{N H_T} \sum_{(b,i)\,\text{real}} \sum_d \left( (W_e e^S_{b,i})_d - e^T_{b,i,d} \right)^2

    with :math:`e = ` ``hidden.0``, the embedding layer's output.

    Args:
        teacher_width, student_width, projection: as :class:`HiddenMSELoss`.

    Config parameters: ``projection`` only.

    Inputs:
        ``student["hidden.0"]``, ``teacher["hidden.0"]``, ``batch["attention_mask"]``.

    Relations:
        - ``hidden_mse`` with ``embeddings: true`` includes this pair among its layers.

    Example:

        >>> import torch
        >>> from kdexam.objectives import EmbeddingMSELoss
        >>> loss = EmbeddingMSELoss(teacher_width=1, student_width=1)
        >>> loss({"hidden.0": torch.tensor([[[3.0]]])}, {"hidden.0": torch.tensor([[[1.0]]])}, {}).item()
        4.0
    """

    name = "embedding_mse"
    citation_entries = (JIAO_2020,)

    class Params(ObjectiveParams):
        projection: Projection = "auto"

    def __init__(self, pairs=((0, 0),), pair_weights=None, teacher_width: int | None = None,
                 student_width: int | None = None, projection="auto") -> None:
        super().__init__(pairs, pair_weights, teacher_width, student_width, projection)

    @classmethod
    def layer_pairs_of(cls, params, ctx: BuildContext) -> list[tuple[int, int]]:
        return [(0, 0)]


class PKDLoss(LayerObjective):
    r"""Patient KD: squared distance between the L2-normalised [CLS] states of matched layers.

    .. math::

        \mathcal{L} = \frac{1}{|P|} \sum_{(t,s) \in P} \frac{1}{B} \sum_{b=1}^{B}
            \left\| \frac{W_{ts} c^S_{s,b}}{\|W_{ts} c^S_{s,b}\|_2} - \frac{c^T_{t,b}}{\|c^T_{t,b}\|_2} \right\|_2^2

    with :math:`c_K = ` ``cls.K`` ``= hidden.K[:, 0]``. Sun et al. (2019) sum over
    examples and layers; here a mean over examples and pairs. Their students share
    the teacher's width; ``W`` is a learned projection when they do not. The default
    ``layers: skip`` is PKD-Skip (the last student layer is left to the logit loss);
    PKD-Last is ``last`` (which, unlike the paper's, includes the top layer).

    Args:
        as :class:`HiddenMSELoss`.

    Config parameters: ``layers`` (default ``skip``), ``projection``.

    Inputs:
        ``student["cls.s"]`` ``[B, H_S]``, ``teacher["cls.t"]`` ``[B, H_T]``.

    Relations:
        - Equals :math:`2(1 - \cos)` of the [CLS] vectors, i.e. twice
          :class:`HiddenCosineLoss` restricted to the first position.

    Example:

        >>> import torch
        >>> from kdexam.objectives import PKDLoss
        >>> loss = PKDLoss([(2, 1)], teacher_width=2, student_width=2)
        >>> loss({"cls.1": torch.tensor([[3.0, 0.0]])}, {"cls.2": torch.tensor([[0.0, 0.5]])}, {}).item()  # |(1,0)-(0,1)|^2
        2.0
    """

    name = "pkd"
    citation_entries = (SUN_2019,)
    carries_width: ClassVar[bool] = True

    class Params(ObjectiveParams):
        layers: Layers = "skip"
        projection: Projection = "auto"

    def pair_keys(self, t: int, s: int) -> tuple[set[str], set[str]]:
        return {f"cls.{t}"}, {f"cls.{s}"}

    def pair_loss(self, student: dict, teacher: dict, batch: dict, t: int, s: int) -> Tensor:
        cs = named(student, f"cls.{s}", "student", self.name)
        ct = named(teacher, f"cls.{t}", "teacher", self.name)
        if cs.dim() != 2 or ct.dim() != 2 or cs.size(0) != ct.size(0):
            raise ValueError(f"{self.name} expects [CLS] states [B, H] on both sides, got student {tuple(cs.shape)} and "
                             f"teacher {tuple(ct.shape)}.")
        ps = self.project(cs, t, s)
        if ps.shape[-1] != ct.shape[-1]:
            raise ValueError(f"{self.name}: widths {cs.shape[-1]} and {ct.shape[-1]} differ and the pair ({t}, {s}) has "
                             "no projection.")
        if not ps.numel():
            return zero_like(ps)
        diff = F.normalize(ps, dim=-1) - F.normalize(ct, dim=-1)
        return diff.pow(2).sum(-1).mean()

