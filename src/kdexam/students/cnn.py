"""CNN student: Kim (2014) convolutions for sentences, a residual convolution stack for tags.

Sequence tasks follow Kim (2014), "Convolutional Neural Networks for Sentence
Classification" (EMNLP 2014): word embeddings, parallel 1-D convolutions of several
widths (default 3, 4, 5 with 100 filters each) with ReLU, max-over-time pooling of
each filter, dropout and a linear output layer.

Token classification uses a stack of ``num_layers`` same-padding convolutions
(kernel 3, ``num_filters`` channels) with residual connections
(``h ← h + dropout(ReLU(conv(h)))``) after a linear projection of the embeddings,
and a per-token linear layer.

Padding never affects the result: padding positions are zeroed before every
convolution (exactly what the convolution's own zero padding gives an example
alone), each convolution is "same"-padded (``(w−1)//2`` zeros on the left, ``w//2``
on the right, so every output position is centred on a real token) and the max
over time only looks at real positions.

Text pairs are read as the tokenizer's pair encoding (``pair_mode="concat"``) with a
learned segment embedding from ``token_type_ids``, or (``pair_mode="siamese"``) split
into the two texts, each convolved and max-pooled alone to ``u`` and ``v``, and
classified from ``[u; v; |u − v|; u ∘ v]`` (Mou et al. 2016).

Outputs (a dict): ``logits``; with ``output_hidden_states=True`` also
``hidden_states`` (the embedding output [B, L, E], then the concatenated feature
maps [B, L, widths × filters] for sequence tasks, or each block's output
[B, L, filters] for tagging) and, for sequence tasks, ``pooled`` (the head's input).
There are no attentions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from kdexam.students.bilstm import PAIR_MODES, lengths_and_mask, split_pair
from kdexam.students.embeddings import StudentEmbedding

TAGGING_KERNEL = 3
DEFAULT_TAGGING_LAYERS = 3


@dataclass
class CNNConfig:
    """Everything needed to rebuild a :class:`CNNStudent` (saved in ``student.json``)."""

    vocab_size: int
    embedding_dim: int
    num_labels: int
    tagging: bool = False
    filter_widths: list[int] = field(default_factory=lambda: [3, 4, 5])
    num_filters: int = 100
    num_layers: int = DEFAULT_TAGGING_LAYERS
    kernel_size: int = TAGGING_KERNEL
    dropout: float = 0.2
    pair_mode: str = "concat"
    segment_embeddings: bool = False
    freeze_embeddings: bool = False
    source_vocab_size: int | None = None
    """Set when the embedding table is trimmed: the tokenizer's vocabulary size."""

    def to_dict(self) -> dict:
        return {"family": "cnn", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "CNNConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def same_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` over [B, C, L] with zero padding that keeps the length (also for even widths)."""
    w = conv.kernel_size[0]
    return conv(F.pad(x, ((w - 1) // 2, w // 2)))


class CNNStudent(nn.Module):
    """Kim CNN (sequence tasks) or a residual same-padding CNN (tagging)."""

    family = "cnn"

    def __init__(self, config: CNNConfig, embedding_weight: torch.Tensor | None = None):
        super().__init__()
        if config.pair_mode not in PAIR_MODES:
            raise ValueError(f"pair_mode must be one of {PAIR_MODES}")
        self.config = config
        e, f = config.embedding_dim, config.num_filters
        self.embeddings = StudentEmbedding(config.vocab_size, e, config.segment_embeddings, embedding_weight,
                                           config.freeze_embeddings, config.source_vocab_size)
        self.dropout = nn.Dropout(config.dropout)
        if config.tagging:
            self.project = nn.Linear(e, f)
            self.convs = nn.ModuleList(nn.Conv1d(f, f, config.kernel_size) for _ in range(config.num_layers))
            self.classifier = nn.Linear(f, config.num_labels)
        else:
            self.convs = nn.ModuleList(nn.Conv1d(e, f, w) for w in config.filter_widths)
            self.classifier = nn.Linear(self.feature_dim(), config.num_labels)

    def architecture(self) -> dict:
        return self.config.to_dict()

    @property
    def shape(self):
        """Widths of ``pooled`` and ``states`` (:class:`kdexam.objectives.ModelShape`)."""
        from kdexam.objectives import ModelShape

        return ModelShape(pooled_size=None if self.config.tagging else self.feature_dim(), states_size=self.config.num_filters if self.config.tagging else self.config.num_filters * len(self.config.filter_widths))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word

    def feature_dim(self) -> int:
        if self.config.tagging:
            return self.config.num_filters
        return self.config.num_filters * len(self.config.filter_widths) * (4 if self.config.pair_mode == "siamese" else 1)

    def sentence_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          token_type_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Max-over-time pooled feature maps, the embedding output and the maps [B, L, W×F]."""
        _, mask = lengths_and_mask(attention_mask)
        x = self.embeddings(input_ids, token_type_ids)
        h = self.dropout(x).transpose(1, 2) * mask.unsqueeze(1).to(x.dtype)  # [B, E, L], padding zeroed
        maps = torch.cat([F.relu(same_conv(conv, h)) for conv in self.convs], dim=1)  # [B, W*F, L]
        return maps.masked_fill(~mask.unsqueeze(1), float("-inf")).max(2).values, x, maps.transpose(1, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> dict:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if not self.config.tagging:
            if self.config.pair_mode == "siamese":
                (u, _, _), (v, _, _) = (self.sentence_features(ids, m, None) for ids, m in
                                        split_pair(input_ids, attention_mask, token_type_ids))
                pooled, states = torch.cat([u, v, (u - v).abs(), u * v], dim=-1), []
            else:
                pooled, x, maps = self.sentence_features(input_ids, attention_mask, token_type_ids)
                states = [x, maps]
            out: dict = {"logits": self.classifier(self.dropout(pooled))}
            if output_hidden_states:
                out["pooled"] = pooled
                if states:
                    out["hidden_states"] = tuple(states)
            return out
        _, mask = lengths_and_mask(attention_mask)
        x = self.embeddings(input_ids, token_type_ids)
        keep = mask.unsqueeze(1).to(x.dtype)  # [B, 1, L]
        states = [x]
        h = self.dropout(x).transpose(1, 2) * keep  # [B, E, L], padding zeroed
        h = self.project(h.transpose(1, 2)).transpose(1, 2) * keep
        for conv in self.convs:
            h = (h + self.dropout(F.relu(same_conv(conv, h)))) * keep
            states.append(h.transpose(1, 2))
        out = {"logits": self.classifier(self.dropout(h.transpose(1, 2)))}
        if output_hidden_states:
            out["hidden_states"] = tuple(states)
        return out
