"""Input embeddings for the BiLSTM and CNN students, and the tokenizers that go with them.

Sources (``StudentSpec.embeddings``):

- ``teacher``: the teacher's tokenizer and a copy of its input word-embedding matrix
  (``model.get_input_embeddings().weight``), optionally reduced by PCA to a smaller
  width. Initialising a small student from the teacher's embeddings is the recipe of
  Mukherjee & Awadallah (2020), "XtremeDistil: Multi-stage Distillation for Massive
  Multilingual Models" (ACL 2020); the PCA reduction keeps the directions of largest
  variance, and the share of variance kept is reported.
- ``glove`` (:mod:`kdexam.students.word_vectors`): a word vocabulary built from the training
  texts (a word-level fast tokenizer: ``WordLevel`` model, ``BertPreTokenizer``, lowercase
  normaliser, ``[PAD]``/``[UNK]``/``[CLS]``/``[SEP]``, BERT-style pair template), with vectors
  read from a word2vec / GloVe text file. Words missing from the file get random vectors
  drawn from U[-a, a], with ``a`` chosen so they have the variance of the pre-trained
  ones (Kim 2014). Coverage (share of vocabulary words and of training tokens found
  in the file) is reported. This is the set-up of the BiLSTM students of Tang et al.
  (2019), "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks".
- ``random``: the teacher's tokenizer and randomly initialised embeddings
  (PyTorch's ``nn.Embedding`` default, N(0, 1)) of a chosen width.
- ``model2vec``: the teacher's tokenizer and static vectors distilled from the teacher's
  *output* states, each token encoded alone, PCA, SIF weighting (Tulkens & van Dongen 2024;
  :func:`teacher_output_embeddings`). The default of the ``static`` student.
- ``contextual`` (:mod:`kdexam.students.contextual`): the same, but each token's output states
  averaged over its occurrences in the transfer set (Bommasani et al. 2020).

Each builder returns an :class:`EmbeddingInit`: the initial weight matrix, the
tokenizer that produces ids for it, and an ``info`` dict (source, widths, explained
variance, coverage) that is saved with the student.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdexam.errors import KdexamError
from kdexam.teachers.loader import remote_code

DEFAULT_RANDOM_DIM = 300
SIF_COEFFICIENT = 1e-3


@dataclass
class EmbeddingInit:
    """Initial word vectors ``weight`` [vocab, dim] for ids produced by ``tokenizer``."""

    weight: torch.Tensor
    tokenizer: Any
    info: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])


class StudentEmbedding(nn.Module):
    """Word embeddings plus, for concatenated text pairs, a learned segment embedding
    (added to the word vector, zero at initialisation, indexed by ``token_type_ids``).

    With ``source_vocab_size`` the table is *trimmed*: it holds only the rows of the
    tokens the transfer set uses, and a buffer ``id_map`` [source_vocab_size] maps the
    tokenizer's ids to rows (unused ids to the [UNK] row). The student keeps the
    teacher's tokenizer but a fraction of its embedding parameters, and every
    optimizer step updates a smaller matrix."""

    def __init__(self, vocab_size: int, dim: int, segments: bool = False, weight: torch.Tensor | None = None,
                 freeze: bool = False, source_vocab_size: int | None = None):
        super().__init__()
        if source_vocab_size:
            self.register_buffer("id_map", torch.zeros(source_vocab_size, dtype=torch.long))
        else:
            self.id_map = None
        self.word = nn.Embedding(vocab_size, dim)
        if weight is not None:
            if tuple(weight.shape) != (vocab_size, dim):
                raise ValueError(f"embedding weight has shape {tuple(weight.shape)}, expected {(vocab_size, dim)}")
            with torch.no_grad():
                self.word.weight.copy_(weight)
        self.word.weight.requires_grad_(not freeze)
        self.segment = None
        if segments:
            self.segment = nn.Embedding(2, dim)
            nn.init.zeros_(self.segment.weight)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.id_map is not None:
            input_ids = self.id_map[input_ids]
        x = self.word(input_ids)
        if self.segment is not None and token_type_ids is not None:
            x = x + self.segment(token_type_ids.clamp(0, 1))
        return x


def trim_vocabulary(init: "EmbeddingInit", texts: Iterable, min_count: int = 1) -> tuple["EmbeddingInit", torch.Tensor]:
    """Keep only the embedding rows of the special tokens and of the tokens that ``texts``
    use (at least ``min_count`` times); returns the trimmed init and the id map (tokenizer id → row;
    a dropped id → the [UNK] row, or the padding token's row when the tokenizer has no unknown
    token, else row 0)."""
    tok = init.tokenizer
    counts = token_counts(tok, texts)
    used = set(tok.all_special_ids) | {i for i, n in counts.items() if n >= min_count}
    kept = torch.tensor(sorted(i for i in used if i < init.weight.shape[0]))
    id_map = torch.full((init.weight.shape[0],), 0, dtype=torch.long)
    id_map[kept] = torch.arange(len(kept))
    fallback = next((i for i in (tok.unk_token_id, tok.pad_token_id) if i is not None and i < init.weight.shape[0]), None)
    if fallback is not None:
        missing = torch.ones(init.weight.shape[0], dtype=torch.bool)
        missing[kept] = False
        id_map[missing] = int(id_map[fallback])
    info = {**init.info, "trimmed_vocab": int(len(kept)), "source_vocab": int(init.weight.shape[0]),
            **({"min_token_count": min_count} if min_count > 1 else {})}
    return EmbeddingInit(init.weight[kept].contiguous(), tok, info), id_map


# ---- PCA -------------------------------------------------------------------------------


def pca(matrix: torch.Tensor, dim: int) -> tuple[torch.Tensor, float]:
    """Project the rows of ``matrix`` on its top ``dim`` principal components.

    An exact SVD of the centred matrix (deterministic, unlike randomised
    ``torch.pca_lowrank``); returns the projected rows [n, dim] and the share of
    the total variance the components keep. With fewer rows (or columns) than ``dim`` there are
    fewer components: the rest of the ``dim`` columns are zeros, so the width is always ``dim``."""
    x = matrix.detach().to(torch.float64)
    x = x - x.mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    projected = x @ vh[:dim].T
    if projected.shape[1] < dim:
        projected = torch.nn.functional.pad(projected, (0, dim - projected.shape[1]))
    var = s.pow(2)
    explained = float(var[:dim].sum() / var.sum()) if float(var.sum()) > 0 else 1.0
    return projected.to(matrix.dtype if matrix.is_floating_point() else torch.float32), explained


# ---- teacher and random embeddings -------------------------------------------------------


def teacher_path(teacher: str | Path) -> str:
    from kdexam.teachers.builtin_models import resolve_model

    return resolve_model(str(teacher))


def load_teacher_embedding_matrix(teacher: str | Path) -> torch.Tensor:
    """The teacher's input word-embedding matrix (a detached float32 copy)."""
    from transformers import AutoModel

    from kdexam.teachers.loader import quiet_transformers

    quiet_transformers()
    try:
        model = AutoModel.from_pretrained(teacher_path(teacher), **remote_code())
    except KdexamError:
        raise
    except Exception as e:  # transformers raises OSError, ValueError, … for a missing or broken model
        from kdexam.teachers.loader import cannot_load

        raise cannot_load(str(teacher), "weights", e) from None
    return model.get_input_embeddings().weight.detach().to(torch.float32).clone()


def teacher_embeddings(teacher: str | Path, dim: int | None = None) -> EmbeddingInit:
    """The teacher's tokenizer and word embeddings, reduced by PCA to ``dim`` when it is
    smaller than the teacher's width."""
    from kdexam.teachers.loader import load_tokenizer

    tokenizer = load_tokenizer(str(teacher))
    weight = load_teacher_embedding_matrix(teacher)
    width = int(weight.shape[1])
    info: dict = {"source": "teacher", "teacher": str(teacher), "teacher_dim": width, "dim": width,
                  "pca": False, "explained_variance": None}
    if dim is not None and dim > width:
        raise KdexamError(f"embedding_dim {dim} is wider than the teacher's embeddings ({width}); "
                          f"set embedding_dim to at most {width} or leave it out.")
    if dim is not None and dim < width:
        weight, explained = pca(weight, dim)
        info.update(dim=dim, pca=True, explained_variance=round(explained, 6))
    return EmbeddingInit(weight.contiguous(), tokenizer, info)


def random_embeddings(teacher: str | Path, dim: int | None = None) -> EmbeddingInit:
    """The teacher's tokenizer and N(0, 1) word vectors of width ``dim`` (default 300)."""
    from transformers import AutoConfig

    from kdexam.teachers.loader import load_tokenizer

    tokenizer = load_tokenizer(str(teacher))
    dim = dim or DEFAULT_RANDOM_DIM
    vocab = len(tokenizer)
    try:
        vocab = max(vocab, int(getattr(AutoConfig.from_pretrained(teacher_path(teacher), **remote_code()), "vocab_size", 0) or 0))
    except Exception:  # a tokenizer-only directory: its own size is enough
        pass
    weight = nn.Embedding(vocab, dim).weight.detach().clone()
    return EmbeddingInit(weight, tokenizer, {"source": "random", "teacher": str(teacher), "dim": dim})


def token_counts(tokenizer, texts: Iterable) -> Counter:
    """How often each token id occurs in ``texts`` (no special tokens added)."""
    strings = list(iter_training_strings(texts))
    counts: Counter = Counter()
    for start in range(0, len(strings), 2000):
        for ids in tokenizer(strings[start : start + 2000], add_special_tokens=False)["input_ids"]:
            counts.update(ids)
    return counts


def load_encoder(teacher: str | Path, dim: int | None):
    """The teacher's tokenizer and encoder (``AutoModel``, eval mode); checks ``dim`` against its width."""
    from transformers import AutoModel

    from kdexam.teachers.loader import cannot_load, load_tokenizer, quiet_transformers

    tokenizer = load_tokenizer(str(teacher))
    quiet_transformers()
    try:
        encoder = AutoModel.from_pretrained(teacher_path(teacher), **remote_code()).eval()
    except KdexamError:
        raise
    except Exception as e:  # transformers raises OSError, ValueError, … for a missing or broken model
        raise cannot_load(str(teacher), "weights", e) from None
    width = int(encoder.config.hidden_size)
    if dim is not None and dim > width:
        raise KdexamError(f"embedding_dim {dim} is wider than the teacher's output states ({width}); "
                          f"set embedding_dim to at most {width} or leave it out.")
    return tokenizer, encoder


def single_token_vectors(encoder, tokenizer, ids: list[int], batch_size: int) -> torch.Tensor:
    """``mean(h([CLS] t [SEP]))`` for each token id ``t`` in ``ids`` [len(ids), width]."""
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    frame = [x for x in (cls,) if x is not None], [x for x in (sep,) if x is not None]
    vectors = torch.zeros(len(ids), int(encoder.config.hidden_size))
    with torch.inference_mode():
        for s in range(0, len(ids), batch_size):
            chunk = torch.tensor([frame[0] + [t] + frame[1] for t in ids[s : s + batch_size]])
            vectors[s : s + len(chunk)] = encoder(input_ids=chunk, attention_mask=torch.ones_like(chunk)).last_hidden_state.mean(1)
    return vectors


def static_table(vectors: torch.Tensor, ids: list[int], counts: Counter, vocab: int, dim: int | None,
                  sif: float, info: dict) -> torch.Tensor:
    """PCA of ``vectors`` (one row per id in ``ids``) to ``dim``, SIF weighting, scattered into a
    [vocab, dim] table whose other rows are zero; records the PCA in ``info``."""
    width = int(vectors.shape[1])
    info.update(teacher_dim=width, dim=width, pca=False, explained_variance=None, sif=sif,
                frequencies="transfer set" if counts else "zipf")
    if dim is not None and dim < width:
        vectors, explained = pca(vectors, dim)
        info.update(dim=dim, pca=True, explained_variance=round(explained, 6))
    index = torch.tensor(ids)
    if counts:
        total = sum(counts.values())
        p = torch.tensor([counts.get(i, 0) / total for i in ids], dtype=torch.float32)
    else:
        p = 1.0 / (index.float() + 1.0)
        p = p / (1.0 / (torch.arange(vocab, dtype=torch.float32) + 1.0)).sum()
    vectors = vectors * (sif / (sif + p)).unsqueeze(1)
    weight = torch.zeros(vocab, vectors.shape[1])
    weight[index] = vectors.to(torch.float32)
    return weight.contiguous()


def teacher_output_embeddings(teacher: str | Path, dim: int | None = None, texts: Iterable | None = None,
                              only_used: bool = True, sif: float = SIF_COEFFICIENT, batch_size: int = 512) -> EmbeddingInit:
    """Static token vectors distilled from the teacher's *outputs*, the model2vec way (Tulkens &
    van Dongen 2024, "Model2Vec: Distill a Small Fast Model from any Sentence Transformer"):

    1. each vocabulary token ``t`` is passed through the teacher's encoder alone, as
       ``[CLS] t [SEP]``, and its output states are mean-pooled: ``v_t = mean(h([CLS] t [SEP]))``;
    2. the vectors are reduced by PCA to ``dim`` (when smaller than the teacher's width);
    3. each is scaled by its SIF weight ``a / (a + p(t))`` (Arora et al. 2017, "A Simple but
       Tough-to-Beat Baseline for Sentence Embeddings"), so frequent tokens count less in a
       mean. ``p(t)`` is the token's relative frequency in ``texts`` (the transfer set);
       without texts, model2vec's Zipf estimate from the vocabulary rank,
       ``p(t) ∝ 1 / (rank + 1)``. ``a`` = ``sif`` (default 1e-3, Arora et al.'s choice).

    With ``only_used`` and ``texts``, only the special tokens and the tokens the texts use are
    passed through the teacher (the others are dropped by vocabulary trimming anyway); their
    rows stay zero."""
    tokenizer, encoder = load_encoder(teacher, dim)
    vocab = int(encoder.get_input_embeddings().weight.shape[0])
    counts = token_counts(tokenizer, texts) if texts is not None else Counter()
    ids = sorted((set(counts) | set(tokenizer.all_special_ids)) if (only_used and counts) else range(vocab))
    ids = [i for i in ids if 0 <= i < vocab]
    vectors = single_token_vectors(encoder, tokenizer, ids, batch_size)
    info: dict = {"source": "model2vec", "teacher": str(teacher), "tokens_encoded": len(ids)}
    weight = static_table(vectors, ids, counts, vocab, dim, sif, info)
    return EmbeddingInit(weight, tokenizer, info)


# ---- training texts ----------------------------------------------------------------------


def iter_training_strings(texts: Iterable) -> Iterator[str]:
    """Strings from training texts: a string, a list of words (tagging), a tuple
    ``(text, text_pair)``, or an object with ``.text`` / ``.text_pair`` (``Example``)."""
    for t in texts:
        if hasattr(t, "text"):
            parts = [t.text, getattr(t, "text_pair", None)]
        elif isinstance(t, tuple):
            parts = list(t)
        else:
            parts = [t]
        for p in parts:
            if p is None:
                continue
            yield p if isinstance(p, str) else " ".join(str(w) for w in p)
