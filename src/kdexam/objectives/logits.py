"""Objectives on a model's final outputs (logits or regression scores).

Every objective here is a small :class:`torch.nn.Module` with one job and the same
call::

    loss = objective(student, teacher, batch)   # a float32 scalar tensor

- ``student`` / ``teacher``: dicts of named outputs; these objectives read
  ``"logits"``: ``[B, C]`` (classification), ``[B, L, C]`` (token classification)
  or ``[B, 1]`` / ``[B]`` (regression). ``teacher`` may be ``None`` for
  the gold loss (:mod:`kdexam.objectives.gold`). Teacher tensors are treated as constants (detached).
- ``batch``: ``"labels"`` (class ids ``[B]``, floats ``[B]``, or tag ids ``[B, L]``
  with ``-100`` on ignored positions), ``"attention_mask"`` ``[B, L]``, and
  optionally ``"loss_mask"`` ``[B, L]`` (see below).

**Which tokens count (token classification, ``[B, L, C]`` logits).** Every logit
loss is computed per token and averaged over the selected tokens (each selected
token weighs the same, whatever its sentence's length). The selection is, in order
of precedence:

1. ``batch["loss_mask"]`` when present (non-zero = counts) -- for example the
   first-subword positions of unlabelled sentences of a transfer set;
2. ``batch["labels"] != -100`` when labels of shape ``[B, L]`` are present: the
   first subword of each word, where the teacher was trained and where tags are
   decoded;
3. ``batch["attention_mask"] == 1`` otherwise: every real token, special tokens
   and continuation subwords included;
4. every position when none of these is given.

Beware rule 2 in a batch that mixes labelled and unlabelled sentences: an
unlabelled sentence (labels all ``-100``) then contributes nothing to the soft
losses; give a ``loss_mask`` for such batches.

All objectives compute in float32 whatever the input precision (fp16 / bf16
logits from autocast or from the teacher cache).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdexam.objectives.base import Objective, ObjectiveParams, Temperature
from kdexam.tasks import IGNORE_INDEX

HINTON_2015 = r"""@misc{hinton2015distilling,
  title={Distilling the Knowledge in a Neural Network},
  author={Geoffrey Hinton and Oriol Vinyals and Jeff Dean},
  year={2015},
  eprint={1503.02531},
  archivePrefix={arXiv},
  primaryClass={stat.ML},
  url={https://arxiv.org/abs/1503.02531},
}"""

BA_CARUANA_2014 = r"""@inproceedings{ba2014deep,
  title={Do Deep Nets Really Need to be Deep?},
  author={Jimmy Ba and Rich Caruana},
  booktitle={Advances in Neural Information Processing Systems 27},
  pages={2654--2662},
  year={2014},
  url={https://arxiv.org/abs/1312.6184},
}"""

TANG_2019 = r"""@misc{tang2019distilling,
  title={Distilling Task-Specific Knowledge from {BERT} into Simple Neural Networks},
  author={Raphael Tang and Yao Lu and Linqing Liu and Lili Mou and Olga Vechtomova and Jimmy Lin},
  year={2019},
  eprint={1903.12136},
  archivePrefix={arXiv},
  primaryClass={cs.CL},
  url={https://arxiv.org/abs/1903.12136},
}"""

TOUVRON_2021 = r"""@inproceedings{touvron2021training,
  title={Training data-efficient image transformers \& distillation through attention},
  author={Hugo Touvron and Matthieu Cord and Matthijs Douze and Francisco Massa and Alexandre Sablayrolles and Herv{\'e} J{\'e}gou},
  booktitle={Proceedings of the 38th International Conference on Machine Learning},
  series={Proceedings of Machine Learning Research},
  volume={139},
  pages={10347--10357},
  year={2021},
  url={https://arxiv.org/abs/2012.12877},
}"""


# ---- shared helpers ----------------------------------------------------------


def outputs_logits(outputs: dict | None, who: str, objective: str) -> Tensor:
    if outputs is None or outputs.get("logits") is None:
        raise ValueError(f"{objective} needs {who}['logits'], but the {who} outputs hold none.")
    return outputs["logits"]


def token_mask(batch: dict, batch_len: tuple[int, int]) -> Tensor | None:
    """The ``[B, L]`` boolean mask of the tokens a per-token loss averages over.

    ``batch["loss_mask"]`` if present, else ``labels != -100`` if ``[B, L]`` labels
    are present, else ``attention_mask == 1``, else ``None`` (every position).
    """
    mask = batch.get("loss_mask")
    if mask is None:
        labels = batch.get("labels")
        if labels is not None and tuple(labels.shape) == tuple(batch_len):
            mask = labels != IGNORE_INDEX
        else:
            mask = batch.get("attention_mask")
    if mask is None:
        return None
    if tuple(mask.shape) != tuple(batch_len):
        raise ValueError(
            f"Token mask of shape {tuple(mask.shape)} does not match logits of shape [B, L] = {tuple(batch_len)}.")
    return mask.bool()


def _rows(logits: Tensor, batch: dict) -> Tensor:
    """``[N, C]`` float32 rows: examples (``[B, C]``) or selected tokens (``[B, L, C]``)."""
    if logits.dim() == 3:
        mask = token_mask(batch, tuple(logits.shape[:2]))
        logits = logits[mask] if mask is not None else logits.reshape(-1, logits.size(-1))
    elif logits.dim() != 2:
        raise ValueError(f"Expected logits of shape [B, C] or [B, L, C], got {tuple(logits.shape)}.")
    return logits.float()


def _paired_rows(student: dict, teacher: dict | None, batch: dict, objective: str) -> tuple[Tensor, Tensor]:
    s = outputs_logits(student, "student", objective)
    t = outputs_logits(teacher, "teacher", objective).detach()
    if s.shape != t.shape:
        raise ValueError(
            f"{objective}: student logits {tuple(s.shape)} and teacher logits {tuple(t.shape)} differ in shape.")
    s_rows, t_rows = _rows(s, batch), _rows(t, batch)
    if t.dim() == 3:  # a word cut by the teacher's truncation has all-zero logits (``stored_form``): it has no target
        seen = t_rows.ne(0).any(-1)
        if not bool(seen.all()):
            s_rows, t_rows = s_rows[seen], t_rows[seen]
    return s_rows, t_rows


def zero_loss(like: Tensor) -> Tensor:
    """A float32 zero that keeps the graph (for a batch with no position to score)."""
    return like.float().sum() * 0.0


_LABEL_TASKS = ("classification", "token-classification")


class _TemperatureObjective(Objective):
    task_kinds = _LABEL_TASKS

    class Params(ObjectiveParams):
        temperature: Temperature = 1.0
        """Softmax temperature T > 0 (1.0 when omitted)."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.temperature = float(temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


# ---- objectives --------------------------------------------------------------


class KLDivLoss(_TemperatureObjective):
    r"""Kullback-Leibler divergence from the teacher's softened distribution to the student's.

    .. math::

        \mathcal{L} = T^2 \cdot \frac{1}{N} \sum_{n=1}^{N} \sum_{c}
            p^T_{n,c} \left(\log p^T_{n,c} - \log p^S_{n,c}\right),
        \qquad p^T = \mathrm{softmax}(z^T / T),\; p^S = \mathrm{softmax}(z^S / T)

    where :math:`N` is the number of examples, or of selected tokens for token
    classification ("batchmean"). The :math:`T^2` factor keeps the gradient's size
    roughly independent of :math:`T`, so the weight of this loss against
    :class:`~kdexam.objectives.gold.GoldLoss` need not be retuned when :math:`T` changes (Hinton et al.,
    2015, section 2).

    Args:
        temperature: :math:`T > 0`; higher values soften both distributions and
            expose more of the teacher's "dark knowledge" about wrong classes.

    Inputs:
        ``student["logits"]`` and ``teacher["logits"]`` of equal shape ``[B, C]`` or
        ``[B, L, C]``; for ``[B, L, C]`` the tokens of :func:`token_mask`.

    Relations:
        - :class:`SoftCrossEntropyLoss` has the same gradient in the student; it
          exceeds this loss by :math:`T^2` times the teacher's entropy.
        - :class:`LogitMSELoss` is its high-temperature limit (up to scale) when
          logits have zero mean (Hinton et al., 2015, section 2.1).

    Example:

        >>> import torch
        >>> from kdexam.objectives import KLDivLoss
        >>> loss = KLDivLoss(temperature=2.0)
        >>> student = {"logits": torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)}
        >>> teacher = {"logits": torch.tensor([[2.0, 0.0], [0.0, 2.0]])}
        >>> value = loss(student, teacher, {})
        >>> value.backward()
        >>> round(value.item(), 4)
        0.1054
    """

    name = "kl"
    citation_entries = (HINTON_2015,)

    def forward(self, student: dict, teacher: dict | None, batch: dict) -> Tensor:
        s, t = _paired_rows(student, teacher, batch, "KLDivLoss")
        if s.size(0) == 0:
            return zero_loss(s)
        T = self.temperature
        log_p_s = F.log_softmax(s / T, dim=-1)
        log_p_t = F.log_softmax(t / T, dim=-1)
        kl = F.kl_div(log_p_s, log_p_t, reduction="sum", log_target=True) / s.size(0)
        return kl * (T * T)


class SoftCrossEntropyLoss(_TemperatureObjective):
    r"""Cross-entropy of the student's softened distribution against the teacher's.

    .. math::

        \mathcal{L} = -T^2 \cdot \frac{1}{N} \sum_{n=1}^{N} \sum_{c}
            \mathrm{softmax}(z^T_n / T)_c \, \log \mathrm{softmax}(z^S_n / T)_c

    This is the soft-target objective as Hinton et al. (2015) write it. It equals
    :class:`KLDivLoss` plus :math:`T^2 \cdot H(p^T)`, the teacher's (mean) entropy,
    which does not depend on the student: both give the same gradients, but only
    the KL form reaches 0 when the student matches the teacher, which makes its
    logged value easier to read.

    Args:
        temperature: :math:`T > 0`, as in :class:`KLDivLoss`.

    Inputs:
        as :class:`KLDivLoss`.

    Relations:
        - :class:`KLDivLoss`: same gradient, minimum 0.
        - :class:`HardDistillationLoss`: the limit :math:`T \to 0` of the targets
          (one-hot teacher argmax), without the :math:`T^2` factor.

    Example:

        >>> import torch
        >>> from kdexam.objectives import SoftCrossEntropyLoss
        >>> loss = SoftCrossEntropyLoss(temperature=1.0)
        >>> student = {"logits": torch.zeros(1, 2)}
        >>> teacher = {"logits": torch.tensor([[5.0, -5.0]])}
        >>> round(loss(student, teacher, {}).item(), 4)  # log 2
        0.6931
    """

    name = "soft_ce"
    citation_entries = (HINTON_2015,)

    def forward(self, student: dict, teacher: dict | None, batch: dict) -> Tensor:
        s, t = _paired_rows(student, teacher, batch, "SoftCrossEntropyLoss")
        if s.size(0) == 0:
            return zero_loss(s)
        T = self.temperature
        p_t = F.softmax(t / T, dim=-1)
        ce = -(p_t * F.log_softmax(s / T, dim=-1)).sum(-1).mean()
        return ce * (T * T)


class LogitMSELoss(Objective):
    r"""Mean squared error between the student's and the teacher's raw logits.

    .. math::

        \mathcal{L} = \frac{1}{N C} \sum_{n=1}^{N} \sum_{c=1}^{C} \left(z^S_{n,c} - z^T_{n,c}\right)^2

    i.e. ``torch.nn.functional.mse_loss`` over every selected logit (mean over
    examples -- or selected tokens -- *and* classes). Ba & Caruana (2014) trained
    shallow students by regressing the teacher's logits; Tang et al. (2019) used
    this loss to distil BERT into BiLSTM students, where it beat KL. Tang et al.
    write the squared L2 norm over classes, which is ``C`` times this value: with
    a fixed ``C`` the difference is only a rescaling of the loss weight.

    Args:
        none.

    Inputs:
        as :class:`KLDivLoss`.

    Relations:
        - :class:`KLDivLoss` approaches it (times a constant) at high temperature.
        - :class:`RegressionDistillLoss` is the same idea for one real output.

    Example:

        >>> import torch
        >>> from kdexam.objectives import LogitMSELoss
        >>> student = {"logits": torch.tensor([[1.0, 2.0]])}
        >>> teacher = {"logits": torch.tensor([[0.0, 4.0]])}
        >>> LogitMSELoss()(student, teacher, {}).item()  # (1 + 4) / 2
        2.5
    """

    name = "mse"
    task_kinds = _LABEL_TASKS
    citation_entries = (BA_CARUANA_2014, TANG_2019)

    def forward(self, student: dict, teacher: dict | None, batch: dict) -> Tensor:
        s, t = _paired_rows(student, teacher, batch, "LogitMSELoss")
        if s.size(0) == 0:
            return zero_loss(s)
        return F.mse_loss(s, t)


class HardDistillationLoss(Objective):
    r"""Cross-entropy against the teacher's predicted class ("hard" distillation).

    .. math::

        \mathcal{L} = -\frac{1}{N} \sum_{n=1}^{N} \log \mathrm{softmax}(z^S_n)_{y^T_n},
        \qquad y^T_n = \arg\max_c z^T_{n,c}

    Touvron et al. (2021) found this hard-label variant competitive with, and for
    their image transformers better than, soft distillation; it also needs only
    the teacher's labels, not its scores. Ties in the teacher's logits go to the
    lowest class id.

    Args:
        none.

    Inputs:
        as :class:`KLDivLoss`.

    Relations:
        - :class:`~kdexam.objectives.gold.GoldLoss` is the same loss with gold labels instead of the teacher's.
        - :class:`SoftCrossEntropyLoss` keeps the teacher's whole distribution.

    Example:

        >>> import torch
        >>> from kdexam.objectives import HardDistillationLoss
        >>> student = {"logits": torch.zeros(1, 2)}
        >>> teacher = {"logits": torch.tensor([[0.1, 0.9]])}
        >>> round(HardDistillationLoss()(student, teacher, {}).item(), 4)  # -log(1/2)
        0.6931
    """

    name = "hard"
    task_kinds = _LABEL_TASKS
    citation_entries = (TOUVRON_2021,)

    def forward(self, student: dict, teacher: dict | None, batch: dict) -> Tensor:
        s, t = _paired_rows(student, teacher, batch, "HardDistillationLoss")
        if s.size(0) == 0:
            return zero_loss(s)
        return F.cross_entropy(s, t.argmax(dim=-1))


class RegressionDistillLoss(Objective):
    r"""Mean squared error between the student's and the teacher's predicted scores.

    .. math::

        \mathcal{L} = \frac{1}{B} \sum_{b=1}^{B} \left(\hat y^S_b - \hat y^T_b\right)^2

    The regression counterpart of :class:`LogitMSELoss`: the student regresses the
    teacher's real-valued outputs, as in Ba & Caruana (2014). Either output may be
    ``[B]`` or ``[B, 1]``.

    Args:
        none.

    Inputs:
        ``student["logits"]`` and ``teacher["logits"]``, each ``[B]`` or ``[B, 1]``.

    Relations:
        - :class:`~kdexam.objectives.gold.GoldLoss` (regression) is the same loss against the gold scores.

    Example:

        >>> import torch
        >>> from kdexam.objectives import RegressionDistillLoss
        >>> student = {"logits": torch.tensor([[0.5], [1.0]])}
        >>> teacher = {"logits": torch.tensor([1.5, 1.0])}
        >>> RegressionDistillLoss()(student, teacher, {}).item()  # (1 + 0) / 2
        0.5
    """

    name = "regression_mse"
    task_kinds = ("regression",)
    citation_entries = (BA_CARUANA_2014,)

    def forward(self, student: dict, teacher: dict | None, batch: dict) -> Tensor:
        s = outputs_logits(student, "student", "RegressionDistillLoss")
        t = outputs_logits(teacher, "teacher", "RegressionDistillLoss").detach()
        s_flat, t_flat = s.reshape(-1).float(), t.reshape(-1).float()
        if s_flat.shape != t_flat.shape or s_flat.numel() != s.size(0):
            raise ValueError(
                f"RegressionDistillLoss expects one score per example ([B] or [B, 1]); "
                f"got student {tuple(s.shape)} and teacher {tuple(t.shape)}.")
        return F.mse_loss(s_flat, t_flat)
