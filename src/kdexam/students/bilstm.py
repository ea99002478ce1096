"""BiLSTM student: embeddings → dropout → bidirectional LSTM → masked pooling → MLP head.

The architecture of Tang et al. (2019), "Distilling Task-Specific Knowledge from
BERT into Simple Neural Networks" (arXiv:1903.12136): word embeddings feed a
bidirectional LSTM, whose outputs are max-pooled over time (``mean`` and additive
``attention`` pooling are alternatives) and classified by a ReLU hidden layer and a
linear output layer. For token classification the pooling and MLP are replaced by a
per-token linear layer on the BiLSTM outputs.

Padding never affects the result, and pooling is masked. Inputs must be right-padded
(the registry sets the tokenizer's ``padding_side`` to ``"right"``). The forward
direction reads each row from its first token, so a real position never depends on
padding; the backward direction reads each row's real tokens reversed in place
(:func:`bidirectional_lstm`), the same numbers as packing (``pack_padded_sequence``) but
about a quarter faster on CPU, where PyTorch's oneDNN LSTM kernel takes padded input
and not packed. The ONNX export keeps the packed form, which maps to ONNX ``LSTM`` with
``sequence_lens``, and so do GPUs, whose cuDNN kernel takes packed input.

Text pairs: ``pair_mode="concat"`` reads the tokenizer's pair encoding
(``[CLS] a [SEP] b [SEP]``) as one sequence, with a learned segment embedding from
``token_type_ids`` (zero at initialisation). ``pair_mode="siamese"`` is Tang et al.'s
pair architecture: the same pair encoding is split by ``token_type_ids`` into its two
texts (:func:`split_pair`), each text is encoded alone by the shared BiLSTM and
pooled to ``u`` and ``v``, and the MLP reads ``[u; v; |u − v|; u ∘ v]`` (Mou et al.
2016; Conneau et al. 2017), so neither text's encoding sees the other.

Token classification with ``crf=True`` adds a linear-chain CRF
(:class:`~kdexam.students.crf.CRF`, Lample et al. 2016) over the words' tag scores;
``logits`` stay the per-token emissions, decoding is Viterbi.

Outputs (a dict): ``logits`` ([B, C], [B, 1] for regression, [B, L, C] for tagging);
with ``output_hidden_states=True`` also ``hidden_states`` (the embedding output
[B, L, E], then each BiLSTM layer's output [B, L, 2H]) and, for sequence tasks,
``pooled`` (the head's input [B, 2H]). There are no attentions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from kdexam.students.crf import CRF, compact
from kdexam.students.embeddings import StudentEmbedding

POOLINGS = ("max", "mean", "attention")
PAIR_MODES = ("concat", "siamese")


@dataclass
class BiLSTMConfig:
    """Everything needed to rebuild a :class:`BiLSTMStudent` (saved in ``student.json``)."""

    vocab_size: int
    embedding_dim: int
    num_labels: int
    tagging: bool = False
    hidden_size: int = 300
    num_layers: int = 1
    pooling: str = "max"
    dropout: float = 0.2
    pair_mode: str = "concat"
    segment_embeddings: bool = False
    freeze_embeddings: bool = False
    source_vocab_size: int | None = None
    """Set when the embedding table is trimmed: the tokenizer's vocabulary size."""
    crf: bool = False

    def to_dict(self) -> dict:
        return {"family": "bilstm", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "BiLSTMConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def lengths_and_mask(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lengths (at least 1) of right-padded rows, and the matching boolean mask [B, L]."""
    lengths = attention_mask.sum(1).clamp(min=1)
    steps = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return lengths, steps[None, :] < lengths[:, None]


def masked_pool(states: torch.Tensor, mask: torch.Tensor, how: str, scorer: nn.Module | None = None) -> torch.Tensor:
    """Pool [B, L, D] over the positions where ``mask`` is true."""
    m = mask.unsqueeze(-1)
    if how == "max":
        return states.masked_fill(~m, float("-inf")).max(1).values
    if how == "mean":
        return (states * m).sum(1) / m.sum(1).clamp(min=1)
    if how == "attention":
        scores = scorer(states).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return torch.bmm(weights.unsqueeze(1), states).squeeze(1)
    raise ValueError(f"unknown pooling {how!r}")


def bidirectional_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One bidirectional LSTM layer over right-padded rows ``x`` [B, L, E], as two one-way
    passes: forward over ``x``, backward over each row's first ``lengths`` positions reversed in
    place (padding stays at the end), its outputs put back in order. Equal to packing the rows
    (padding positions are zero in both); [B, L, 2H]."""
    steps = torch.arange(x.shape[1], device=x.device)
    order = torch.where(mask, lengths[:, None] - 1 - steps, steps)[..., None]
    zeros = x.new_zeros(1, x.shape[0], lstm.hidden_size)
    directions = []
    for suffix, inputs in (("", x), ("_reverse", x.gather(1, order.expand_as(x)))):
        weights = [getattr(lstm, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        directions.append(torch.lstm(inputs, (zeros, zeros), weights, True, 1, 0.0, lstm.training, False, True)[0])
    forward, backward = directions
    backward = backward.gather(1, order.expand_as(backward))
    return torch.cat([forward, backward], dim=-1) * mask[..., None]


def split_pair(input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None):
    """The two texts of a pair encoding, each right-padded: ``[(ids_a, mask_a), (ids_b, mask_b)]``.
    The first text is the positions with token type 0 (``[CLS] a [SEP]``), the second those with 1."""
    if token_type_ids is None:
        raise ValueError("pair_mode 'siamese' needs token_type_ids to tell the two texts apart")
    real = attention_mask.bool()
    sides = []
    for side in (real & (token_type_ids == 0), real & (token_type_ids != 0)):
        ids, mask = compact(input_ids, side)
        sides.append((ids, mask.long()))
    return sides


class BiLSTMStudent(nn.Module):
    """A (multi-layer) BiLSTM encoder with a pooled MLP head or a per-token head."""

    family = "bilstm"

    def __init__(self, config: BiLSTMConfig, embedding_weight: torch.Tensor | None = None):
        super().__init__()
        if config.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}")
        if config.pair_mode not in PAIR_MODES:
            raise ValueError(f"pair_mode must be one of {PAIR_MODES}")
        self.config = config
        h = config.hidden_size
        self.embeddings = StudentEmbedding(config.vocab_size, config.embedding_dim, config.segment_embeddings,
                                           embedding_weight, config.freeze_embeddings, config.source_vocab_size)
        self.dropout = nn.Dropout(config.dropout)
        # one module per layer, so that every layer's output can be returned as a hidden state
        self.lstms = nn.ModuleList(
            nn.LSTM(config.embedding_dim if i == 0 else 2 * h, h, batch_first=True, bidirectional=True)
            for i in range(config.num_layers))
        self.crf = CRF(config.num_labels) if config.tagging and config.crf else None
        if config.tagging:
            self.classifier = nn.Linear(2 * h, config.num_labels)
        else:
            self.attention = (nn.Sequential(nn.Linear(2 * h, 2 * h), nn.Tanh(), nn.Linear(2 * h, 1, bias=False))
                              if config.pooling == "attention" else None)
            self.head = nn.Sequential(nn.Linear(self.feature_dim(), h), nn.ReLU(), nn.Dropout(config.dropout),
                                      nn.Linear(h, config.num_labels))

    def architecture(self) -> dict:
        return self.config.to_dict()

    @property
    def shape(self):
        """Widths of ``pooled`` and ``states`` (:class:`kdexam.objectives.ModelShape`)."""
        from kdexam.objectives import ModelShape

        return ModelShape(pooled_size=None if self.config.tagging else self.feature_dim(), states_size=2 * self.config.hidden_size)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word

    def feature_dim(self) -> int:
        """Width of the vector the sequence head reads."""
        return (8 if self.config.pair_mode == "siamese" else 2) * self.config.hidden_size

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Hidden states (embedding output, then each BiLSTM layer) and the boolean mask."""
        lengths, mask = lengths_and_mask(attention_mask)
        x = self.embeddings(input_ids, token_type_ids)
        states = [x]
        h = x
        # packed under ONNX export (ONNX LSTM with sequence_lens) and on GPUs (cuDNN takes packed input); on CPU the
        # two one-way passes reach the oneDNN kernel
        packed_form = torch.onnx.is_in_onnx_export() or x.device.type != "cpu"
        for lstm in self.lstms:
            if packed_form:
                packed = pack_padded_sequence(self.dropout(h), lengths.cpu(), batch_first=True, enforce_sorted=False)
                h, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=input_ids.shape[1])
            else:
                h = bidirectional_lstm(lstm, self.dropout(h), lengths, mask)
            states.append(h)
        return states, mask

    def sentence_features(self, states: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """The head's input: the pooled last BiLSTM layer (``concat`` pairs are one sequence)."""
        return masked_pool(states[-1], mask, self.config.pooling, self.attention)

    def siamese_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """``[u; v; |u − v|; u ∘ v]`` from each text of the pair encoded and pooled alone."""
        u, v = (self.sentence_features(*self.encode(ids, mask)) for ids, mask in
                split_pair(input_ids, attention_mask, token_type_ids))
        return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)

    def gold_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """This student's own loss against gold tags: with a CRF, its negative log-likelihood of the
        gold tag sequence over each word's first subword (Lample et al. 2016); else ``None`` (the
        task's cross-entropy applies)."""
        if self.crf is None or logits.dim() != 3:
            return None
        from kdexam.students.crf import word_emissions

        return self.crf.nll(*word_emissions(logits, labels.long()))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> dict:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.config.pair_mode == "siamese" and not self.config.tagging:
            pooled = self.siamese_features(input_ids, attention_mask, token_type_ids)
            out: dict = {"logits": self.head(self.dropout(pooled))}
            if output_hidden_states:
                out["pooled"] = pooled
            return out
        states, mask = self.encode(input_ids, attention_mask, token_type_ids)
        out = {}
        if self.config.tagging:
            out["logits"] = self.classifier(self.dropout(states[-1]))
        else:
            pooled = self.sentence_features(states, mask)
            out["logits"] = self.head(self.dropout(pooled))
            if output_hidden_states:
                out["pooled"] = pooled
        if output_hidden_states:
            out["hidden_states"] = tuple(states)
        return out
