"""Static-embedding student: a token embedding table, mean-pooled, and a small head.

The fastest student kdexam builds: no recurrence, no convolution, no attention. The
sentence vector is the masked mean of its tokens' vectors (``pooling: mean``, the default;
``max`` takes the per-feature maximum instead, ``mean-max`` concatenates both),

.. math::

    u = \\frac{\\sum_i m_i \\, w_{t_i} \\, E_{t_i}}{\\sum_i m_i}

(``m`` the attention mask, ``E`` the embedding table, ``w`` an optional learned weight per
vocabulary token, initialised to 1), followed by a linear layer, or a one-hidden-layer MLP
when ``hidden_size`` is set. ``dropout`` p is *word dropout* (Iyyer et al. 2015, "Deep
Unordered Composition Rivals Syntactic Methods for Text Classification"): in training each
token leaves the bag with probability p (a text keeps at least one), and the pooled vector
and the MLP's hidden layer are dropped out with p too. This is the inference of model2vec (Tulkens & van
Dongen 2024, "Model2Vec: Distill a Small Fast Model from any Sentence Transformer") and of
fastText-style bags of embeddings (Joulin et al. 2017, "Bag of Tricks for Efficient Text
Classification"); the table is best initialised the model2vec way (``embeddings:
model2vec``, :func:`kdexam.students.embeddings.teacher_output_embeddings`: each vocabulary
token passed through the teacher alone, PCA, SIF weighting) and then trained by
distillation like every other student.

Bigrams (``ngram_buckets`` B > 0): each position i ≥ 1 also adds the vector of its bigram
``(t_{i−1}, t_i)``, hashed into B buckets (the "bag of n-grams" of fastText, Joulin et al.
2017), initialised to zero so that training starts from the token-only model. The table's gradient
is sparse (the rows the batch used), and the lazy ``SparseAdam`` steps it
(:mod:`kdexam.training.sparse`): a row moves only at the steps that use it, and a step costs only
the rows a batch touches, not all B × E numbers. It trains at ``ngram_lr_scale`` (default 0.3) times
the run's learning rate: Adam's step is about the learning rate whatever a parameter's gradient, so
at the full rate a bucket seen in a single training text moves as far as a common one and the table
fits the training texts. On movie-sentiment, over five seeds, the table at 0.3 adds 0.8 points to
the token-only student (0.1: 0.4, 0.5: 0.8, 1: 0.5; docs/benchmarks.md). A bigram that spans
padding or the two texts of a pair only reaches pooling where its position is real.

Text pairs: each text is pooled alone (by ``token_type_ids``) to ``u`` and ``v`` and the head
reads ``[u; v; |u − v|; u ∘ v]`` (Mou et al. 2016), since a single bag would lose which
text a token came from.

Token classification: each token's features are the vectors of a window of ``2·window + 1``
tokens around it (zeros beyond the sentence), concatenated, then the head (the window
approach of Collobert et al. 2011, "Natural Language Processing (Almost) from Scratch").

Outputs (a dict): ``logits``; with ``output_hidden_states=True`` also ``hidden_states``
(the embedding output [B, L, E]) and, for sequence tasks, ``pooled`` (the head's input).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdexam.students.embeddings import StudentEmbedding

DEFAULT_WINDOW = 1


@dataclass
class StaticConfig:
    """Everything needed to rebuild a :class:`StaticStudent` (saved in ``student.json``)."""

    vocab_size: int
    embedding_dim: int
    num_labels: int
    tagging: bool = False
    text_pair: bool = False
    hidden_size: int | None = None
    """Width of the MLP head's hidden layer; ``None``: a linear head."""
    window: int = DEFAULT_WINDOW
    pooling: str = "mean"
    """Sequence tasks: mean, max, or mean-max (the two concatenated)."""
    ngram_buckets: int = 0
    """Hashed bigram buckets (0: tokens only)."""
    ngram_lr_scale: float = 0.3
    """The bigram table's learning rate as a multiple of the run's (its ``lr_scale``)."""
    token_weights: bool = False
    dropout: float = 0.0
    freeze_embeddings: bool = False
    source_vocab_size: int | None = None

    def to_dict(self) -> dict:
        return {"family": "static", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "StaticConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


POOLINGS = ("mean", "max", "mean-max")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` [B, L, E] over the positions where ``mask`` [B, L] is true (zero when none)."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-feature maximum of ``x`` [B, L, E] over the positions where ``mask`` is true (zero when none)."""
    m = mask.unsqueeze(-1)
    return x.masked_fill(~m, float("-inf")).max(1).values.masked_fill(~m.any(1), 0.0)


BIGRAM_PRIME = 1_000_003


def bigram_ids(input_ids: torch.Tensor, buckets: int) -> torch.Tensor:
    """Bucket of each pair of neighbouring token ids, ``(t_{i-1} · 1000003 + t_i) mod buckets``,
    [B, L − 1] (Joulin et al. 2017's hashing trick; the tokenizer's ids, before any trimming)."""
    return (input_ids[:, :-1] * BIGRAM_PRIME + input_ids[:, 1:]) % buckets


def pool(x: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    if how == "mean":
        return masked_mean(x, mask)
    if how == "max":
        return masked_max(x, mask)
    return torch.cat([masked_mean(x, mask), masked_max(x, mask)], dim=-1)


class StaticStudent(nn.Module):
    """Mean of token embeddings (per text for pairs; a token window for tagging) and a small head."""

    family = "static"

    def __init__(self, config: StaticConfig, embedding_weight: torch.Tensor | None = None):
        super().__init__()
        if config.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}")
        self.config = config
        e = config.embedding_dim
        self.embeddings = StudentEmbedding(config.vocab_size, e, False, embedding_weight, config.freeze_embeddings,
                                           config.source_vocab_size)
        # sparse: a batch's gradient holds only its rows, stepped by the lazy SparseAdam (training/sparse.py)
        self.bigram = nn.Embedding(config.ngram_buckets, e, sparse=True) if config.ngram_buckets else None
        if self.bigram is not None:
            nn.init.zeros_(self.bigram.weight)  # training starts from the token-only model
            self.bigram.lr_scale = config.ngram_lr_scale  # (read by the trainer's make_optimizer)
        self.token_weight = nn.Embedding(config.vocab_size, 1) if config.token_weights else None
        if self.token_weight is not None:
            nn.init.ones_(self.token_weight.weight)
        self.dropout = nn.Dropout(config.dropout)
        features = self.feature_dim()
        if config.hidden_size:
            self.head: nn.Module = nn.Sequential(nn.Linear(features, config.hidden_size), nn.ReLU(),
                                                 nn.Dropout(config.dropout), nn.Linear(config.hidden_size, config.num_labels))
        else:
            self.head = nn.Linear(features, config.num_labels)

    def architecture(self) -> dict:
        return self.config.to_dict()

    @property
    def shape(self):
        """Widths of ``pooled`` and ``states`` (:class:`kdexam.objectives.ModelShape`)."""
        from kdexam.objectives import ModelShape

        return ModelShape(pooled_size=None if self.config.tagging else self.feature_dim(), states_size=self.config.embedding_dim)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word

    def feature_dim(self) -> int:
        e = self.config.embedding_dim
        if self.config.tagging:
            return e * (2 * self.config.window + 1)
        e *= 2 if self.config.pooling == "mean-max" else 1
        return 4 * e if self.config.text_pair else e

    def token_vectors(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``w_t · E_t`` for every token [B, L, E], plus with bigrams ``G[h(t_{i-1}, t_i)]``."""
        x = self.embeddings(input_ids)
        if self.token_weight is not None:
            rows = input_ids if self.embeddings.id_map is None else self.embeddings.id_map[input_ids]
            x = x * self.token_weight(rows)
        if self.bigram is not None:
            x = x + F.pad(self.bigram(bigram_ids(input_ids, self.config.ngram_buckets)), (0, 0, 1, 0))
        return x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> dict:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask.bool()
        x = self.token_vectors(input_ids)
        if self.training and self.config.dropout > 0 and not self.config.tagging:
            # word dropout (Iyyer et al. 2015): each token leaves the bag with probability p
            kept = torch.rand(mask.shape, device=mask.device) >= self.config.dropout
            texts = ([mask & (token_type_ids == 0), mask & (token_type_ids != 0)]
                     if self.config.text_pair and token_type_ids is not None else [mask])
            mask = torch.zeros_like(mask)
            for text in texts:  # a text (each text of a pair) never loses every token
                mask |= text & (kept | ~(text & kept).any(1, keepdim=True))
        if self.config.tagging:
            w = self.config.window
            h = x * mask.unsqueeze(-1).to(x.dtype)  # padding is zero, as beyond the sentence
            padded = F.pad(h, (0, 0, w, w))
            length = h.shape[1]
            feats = torch.cat([padded[:, k : k + length] for k in range(2 * w + 1)], dim=-1)
            out: dict = {"logits": self.head(self.dropout(feats))}
            if output_hidden_states:
                out["hidden_states"] = (x,)
            return out
        if self.config.text_pair:
            types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            how = self.config.pooling
            u, v = pool(x, mask & (types == 0), how), pool(x, mask & (types != 0), how)
            pooled = torch.cat([u, v, (u - v).abs(), u * v], dim=-1)
        else:
            pooled = pool(x, mask, self.config.pooling)
        out = {"logits": self.head(self.dropout(pooled))}
        if output_hidden_states:
            out["pooled"] = pooled
            out["hidden_states"] = (x,)
        return out


def fold_linear_head(model: StaticStudent) -> StaticStudent | None:
    """The same model as a [vocab, C] table of per-token logits, for export: with mean pooling
    and a linear head ``(W, b)`` the logits are linear in the token vectors,

    .. math::

        W \\, \\frac{\\sum_i m_i w_{t_i} E_{t_i}}{\\sum_i m_i} + b
        = \\frac{\\sum_i m_i T_{t_i}}{\\sum_i m_i} + b, \\qquad T = \\mathrm{diag}(w) \\, E \\, W^\\top,

    so a student with table ``T`` (C columns: 2 for a binary task instead of 256) and an identity
    head gives the same logits up to float rounding, from a table ``E.shape[1] / C`` times smaller
    and a gather of C numbers per token instead of ``E.shape[1]``. Hashed bigrams fold the same
    way, their table ``G`` to ``G Wᵀ``. ``None`` for a student that is not of that form (an MLP
    head, max pooling, text pairs, token classification)."""
    c = model.config
    if c.hidden_size or c.pooling != "mean" or c.text_pair or c.tagging:
        return None
    head = model.head
    with torch.no_grad():
        table = model.embeddings.word.weight @ head.weight.T
        if model.token_weight is not None:
            table = table * model.token_weight.weight
        folded = StaticStudent(StaticConfig(vocab_size=c.vocab_size, embedding_dim=c.num_labels, num_labels=c.num_labels,
                                            ngram_buckets=c.ngram_buckets, source_vocab_size=c.source_vocab_size), table)
        if model.embeddings.id_map is not None:
            folded.embeddings.id_map.copy_(model.embeddings.id_map)
        if model.bigram is not None:
            folded.bigram.weight.copy_(model.bigram.weight @ head.weight.T)
        folded.head.weight.copy_(torch.eye(c.num_labels))
        folded.head.bias.copy_(head.bias)
    folded.kdexam_info = {**getattr(model, "kdexam_info", {}), "folded_head": True}
    return folded.eval()
