"""Linear-chain CRF over the words of a sentence, for BiLSTM taggers.

Lample et al. (2016), "Neural Architectures for Named Entity Recognition" (NAACL
2016), after Lafferty et al. (2001): a tag sequence :math:`y_1 … y_n` of a sentence
whose per-word tag scores (emissions) are :math:`e_{i,y}` scores

.. math::

    s(y) = \\pi^{start}_{y_1} + \\sum_{i=1}^{n} e_{i, y_i}
           + \\sum_{i=2}^{n} A_{y_{i-1}, y_i} + \\pi^{end}_{y_n}

and has probability :math:`p(y \\mid e) = \\exp s(y) / \\sum_{y'} \\exp s(y')`; the
normaliser is computed by the forward algorithm, the best sequence by Viterbi.

kdexam's taggers score subwords; the CRF runs over each word's *first* subword
(where the word's tag sits, see :mod:`kdexam.data.encode`), so continuation
subwords and special tokens are left out of the chain. :func:`compact` gathers
those positions into a dense ``[B, W, C]`` tensor. The knowledge-distillation
objectives still read the emissions per token (the teacher has no transitions to
transfer); the CRF's own loss is the gold objective (:class:`~kdexam.objectives.GoldLoss`
uses :meth:`CRF.nll` when the student has a CRF).

:func:`viterbi` (:mod:`kdexam.inference.serving`) is a NumPy version of the decoder for
predictions outside PyTorch (ONNX Runtime exports only the emissions).
"""

from __future__ import annotations

LAMPLE_2016 = r"""@inproceedings{lample2016neural,
  title={Neural Architectures for Named Entity Recognition},
  author={Lample, Guillaume and Ballesteros, Miguel and Subramanian, Sandeep and Kawakami, Kazuya and Dyer, Chris},
  booktitle={Proceedings of the 2016 Conference of the North American Chapter of the Association for Computational Linguistics: Human Language Technologies},
  pages={260--270},
  year={2016},
  eprint={1603.01360},
  archivePrefix={arXiv},
}"""

import numpy as np
import torch
from torch import nn

from kdexam.inference.serving import viterbi  # noqa: F401  (one NumPy decoder for every path)


class CRF(nn.Module):
    """Transition scores ``transitions[i, j]`` (tag i followed by tag j), start and end scores."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:math:`s(y)` of each row's tag sequence; ``mask`` [B, W] is a prefix of true values."""
        b, w, _ = emissions.shape
        tags = tags.masked_fill(~mask, 0)
        rows = torch.arange(b, device=emissions.device)
        emit = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # [B, W]
        total = self.start_transitions[tags[:, 0]] + (emit * mask).sum(1)
        if w > 1:
            trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # [B, W-1]
            total = total + (trans * mask[:, 1:]).sum(1)
        last = tags[rows, (mask.sum(1) - 1).clamp(min=0)]
        return total + self.end_transitions[last]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:math:`\\log \\sum_{y} \\exp s(y)` by the forward algorithm, [B]."""
        alpha = self.start_transitions + emissions[:, 0]  # [B, C]
        for i in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions + emissions[:, i].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, i : i + 1], step, alpha)
        return torch.logsumexp(alpha + self.end_transitions, dim=1)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood :math:`-\\frac{1}{B'}\\sum_b \\log p(y_b \\mid e_b)` over
        the rows with at least one word (0 with a graph when there are none)."""
        keep = mask[:, 0]
        if not bool(keep.any()):
            return emissions.sum() * 0.0
        emissions, tags, mask = emissions[keep].float(), tags[keep], mask[keep]
        return (self.log_partition(emissions, mask) - self.score(emissions, tags, mask)).mean()

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The best tag sequence of each row (Viterbi), cut to its words."""
        p = crf_params(self)
        e, m = emissions.float().cpu().numpy(), mask.cpu().numpy()
        return [viterbi(e[r, : int(m[r].sum())], **p) for r in range(len(e))]


def crf_params(model: nn.Module | None) -> dict[str, np.ndarray] | None:
    """The CRF's scores as NumPy arrays (keyword arguments of :func:`viterbi`), or ``None``
    when ``model`` (a student, or a :class:`CRF`) has no CRF."""
    crf = model if isinstance(model, CRF) else getattr(model, "crf", None)
    if crf is None:
        return None
    return {"transitions": crf.transitions.detach().float().cpu().numpy(),
            "start": crf.start_transitions.detach().float().cpu().numpy(),
            "end": crf.end_transitions.detach().float().cpu().numpy()}


def compact(values: torch.Tensor, mask: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the positions where ``mask`` [B, L] is true, in order, to the front:
    ``values`` [B, L, …] → ([B, W, …], mask [B, W]), W = ``width`` (default L; pass the
    largest count to cut the tail). Written with cumsum and scatter, so it exports to ONNX."""
    b, length = mask.shape
    counts = mask.sum(1)
    target = torch.where(mask, torch.cumsum(mask.long(), 1) - 1, torch.full_like(counts[:, None], length))
    rest = values.shape[2:]
    index = target.view(b, length, *([1] * len(rest))).expand(b, length, *rest)
    out = values.new_zeros(b, length + 1, *rest).scatter(1, index, values)  # column L collects the rest
    width = length if width is None else width
    return out[:, :width], torch.arange(width, device=mask.device)[None, :] < counts[:, None]


def word_emissions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Emissions, tags and word mask [B, W] at the labelled positions (each word's first subword)."""
    keep = labels != -100
    width = max(int(keep.sum(1).max()), 1) if keep.numel() else 1
    emissions, mask = compact(logits, keep, width)
    tags, _ = compact(labels.clamp(min=0), keep, width)
    return emissions, tags, mask
