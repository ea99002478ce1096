"""The student spec: what student to build (pydantic only, no torch)."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


def _is_number(annotation: Any) -> bool:
    """A type a ``true``/``false`` must not fill: ``int`` or ``float``, optional, ``Annotated``, or in a
    union without ``bool`` (``int | Literal["all"]``: ``unfreeze: true`` was read as 1)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_number(get_args(annotation)[0])
    if origin in (Union, UnionType):
        members = get_args(annotation)
        return any(_is_number(m) for m in members) and bool not in members
    return annotation in (int, float)


def _is_list_of_numbers(annotation: Any) -> bool:
    """``list[int]``, ``list[float]`` (their items optionally ``Annotated``), or such a list optional."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return any(_is_list_of_numbers(m) for m in get_args(annotation))
    return origin is list and _is_number(get_args(annotation)[0])


class NumbersNotBooleans(BaseModel):
    """A base for configs: a number setting, or an item of a list of numbers, given ``true``/``false``
    is an error. pydantic reads ``True`` as 1 for an ``int`` field, so ``--set
    train.batch_size=true`` trained at batch size 1."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value, info: ValidationInfo):
        if info.field_name not in cls.model_fields:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and _is_number(annotation):
            raise ValueError(f"must be a number, not {str(value).lower()}")
        if isinstance(value, list) and _is_list_of_numbers(annotation):
            said = [str(v).lower() for v in value if isinstance(v, bool)]
            if said:
                raise ValueError(f"must be numbers, not {', '.join(said)}")
        return value


class StudentSpec(NumbersNotBooleans):
    """What student to build. ``None`` means the kind's default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True, allow_inf_nan=False)

    kind: str = "bilstm"
    """bilstm, cnn, static, bert-tiny, bert-mini, bert-small, bert-medium or teacher-layers:K."""
    embeddings: Literal["teacher", "glove", "random", "model2vec", "contextual"] | None = None
    """bilstm/cnn/static input embeddings: the teacher's (tokenizer + input word vectors), word vectors
    from a GloVe/word2vec file over a word vocabulary of the training texts, random over the teacher's
    tokenizer, model2vec (the teacher's output state of each token encoded alone, PCA, SIF weights), or
    contextual (the same with each token's output states averaged over its occurrences in the transfer
    set; one teacher pass over it). Default: model2vec for static, teacher for bilstm and cnn."""
    embedding_dim: int | None = Field(default=None, ge=1)
    """Width of the embeddings: PCA width for teacher embeddings (default: the teacher's width), the
    width of random embeddings (default 300); for glove it must match the file (default: the file's)."""
    vectors_file: str | None = None
    """word2vec/GloVe text file (embeddings: glove)."""
    hidden_size: int | None = Field(default=None, ge=1)
    """bilstm: LSTM size per direction and MLP width (default 300); static: hidden width of an MLP head
    (default: a linear head)."""
    num_layers: int | None = Field(default=None, ge=1)
    """bilstm: BiLSTM layers (default 1); cnn tagging: residual convolution blocks (default 3)."""
    pooling: Literal["max", "mean", "attention", "mean-max"] | None = None
    """Sequence tasks, masked pooling: bilstm max | mean | attention over its outputs (default max);
    static mean | max | mean-max (both, concatenated) over its token vectors (default mean)."""
    pair_mode: Literal["concat", "siamese"] = "concat"
    """bilstm/cnn text pairs: 'concat' reads the tokenizer's pair encoding as one sequence; 'siamese'
    encodes each text alone with the shared encoder and classifies [u; v; |u - v|; u * v]."""
    crf: bool = False
    """bilstm token classification: a linear-chain CRF over the words' tag scores, Viterbi decoding."""
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    """Dropout (bilstm/cnn default 0.2; bert presets: hidden and attention dropout, default 0.1)."""
    filter_widths: list[int] = Field(default_factory=lambda: [3, 4, 5], min_length=1)
    """cnn, sequence tasks: convolution widths."""
    num_filters: int = Field(default=100, ge=1)
    """cnn: filters per width (sequence tasks) or channels (tagging)."""
    layers: Literal["lower", "upper", "uniform", "random"] | list[int] = "uniform"
    """teacher-layers: which K layers to keep: lower, upper, uniform (first and last included) or indices;
    random: the teacher's architecture with K layers, every weight randomly initialised (a control)."""
    freeze_embeddings: bool = False
    """Keep the input word embeddings fixed during training."""
    ngram_buckets: int = Field(default=0, ge=0)
    """static: hashed bigram buckets added to the token vectors (fastText's bag of n-grams; 0: none). On
    movie-sentiment 65,536 gained 0.6 points, 16,384 0.1 and 262,144 no more than 65,536 (docs/benchmarks.md)."""
    ngram_lr_scale: float = Field(default=0.3, gt=0)
    """static: the bigram table's learning rate, as a multiple of the run's (Adam moves a bucket seen
    in one training text as far as a common one; at 1 the table fits the training texts)."""
    token_weights: bool = False
    """static: a learned weight per vocabulary token in the mean (initialised to 1)."""
    min_token_count: int = Field(default=1, ge=1)
    """bilstm/cnn/static: keep only the tokens the training texts use at least this many times
    (fastText's ``-minCount``); rarer ones read the [UNK] row, and the parameters they free can buy a
    wider table. With glove embeddings: the word vocabulary's minimum frequency. Needs a trimmed table
    (trim_vocab not false)."""
    teacher: str | None = None
    """Several teachers: the member (its name: the run directory's name) whose tokenizer, embeddings
    or layers the student takes (default: the first)."""
    trim_vocab: bool | None = None
    """Keep only the word-embedding rows of the tokens the training texts use (ids stay the tokenizer's,
    unused ones read the [UNK] row). Default (None): on for bilstm/cnn/static with teacher, random or
    model2vec embeddings; off for bert-* presets, where it is opt-in (``true``): it halves their
    optimizer step and their file, but cost bert-mini 1.6 points on 1,000 movie-sentiment sentences
    (one seed; docs/benchmarks.md) and the run no longer loads as a plain Hugging Face model. Never
    teacher-layers:K, --init-from or --general students, whose rows are trained vectors that tokens
    outside the transfer set would lose."""


