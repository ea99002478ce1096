"""Transformer students: compact BERT presets, and students made of a teacher's own layers.

Presets (``bert-tiny``, ``bert-mini``, ``bert-small``, ``bert-medium``) are the
compact BERT shapes of Turc et al. (2019), "Well-Read Students Learn Better: On the
Importance of Pre-training Compact Models" (arXiv:1908.08962):

==========  ======  ======  =====  ============
preset      layers  hidden  heads  intermediate
==========  ======  ======  =====  ============
bert-tiny   2       128     2      512
bert-mini   4       256     4      1024
bert-small  4       512     8      2048
bert-medium 8       512     8      2048
==========  ======  ======  =====  ============

They are built from a ``BertConfig`` (random initialisation) with the teacher's
tokenizer, vocabulary size and ``max_position_embeddings``, as
``AutoModelForSequenceClassification`` (regression: one output,
``problem_type="regression"``) or ``AutoModelForTokenClassification``.

Students made of the teacher's own layers (``teacher-layers:K``) are built in
:mod:`kdexam.students.teacher_layers`; the bare encoders of task-agnostic distillation,
and students initialised from them, in :mod:`kdexam.students.encoder`.

Both are wrapped in :class:`HFStudent`, whose ``forward`` returns the same dict as
the other students: ``logits`` and, when asked, ``hidden_states`` (embedding output
then each layer) and ``attentions`` (one [B, heads, L, L] tensor per layer). SDPA
attention cannot return attention maps, so the first call that asks for them switches
the model to eager attention (same results, somewhat slower).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import nn

from kdexam.errors import KdexamError
from kdexam.tasks import Task
from kdexam.teachers.loader import remote_code

PRESETS: dict[str, dict[str, int]] = {
    "bert-tiny": {"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 2, "intermediate_size": 512},
    "bert-mini": {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024},
    "bert-small": {"num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8, "intermediate_size": 2048},
    "bert-medium": {"num_hidden_layers": 8, "hidden_size": 512, "num_attention_heads": 8, "intermediate_size": 2048},
}


def auto_class_name(task: Task) -> str:
    from kdexam.teachers.loader import AUTO_CLASSES

    return AUTO_CLASSES[task.kind]


def head_kwargs(task: Task) -> dict:
    """Config fields that shape the task head (as the teacher loader sets them)."""
    kwargs: dict = {"num_labels": task.num_labels}
    if task.kind == "regression":
        kwargs["problem_type"] = "regression"
    else:
        kwargs["id2label"] = dict(enumerate(task.labels or []))
        kwargs["label2id"] = task.label2id
        if task.kind == "classification":
            kwargs["problem_type"] = "single_label_classification"
    return kwargs


class HFStudent(nn.Module):
    """A Hugging Face ``AutoModelFor…`` model whose ``forward`` returns the students' dict."""

    family = "hf"

    def __init__(self, model: nn.Module, auto_class: str):
        super().__init__()
        self.model = model
        self.auto_class = auto_class
        self._takes_token_types = "token_type_ids" in inspect.signature(model.forward).parameters

    @property
    def config(self):
        return self.model.config

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def architecture(self) -> dict:
        return {"family": "hf", "auto_class": self.auto_class, "config": self.model.config.to_dict()}

    @property
    def shape(self):
        """Layers, width and heads (:class:`kdexam.objectives.ModelShape`)."""
        from kdexam.outputs import model_shape

        return model_shape(self.model.config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, outputs: tuple[str, ...] = ()) -> dict:
        """The students' dict: ``logits`` (none for a bare encoder), and with ``outputs`` any named
        outputs of :mod:`kdexam.outputs` (``hidden.K``, ``attention.K``, ``query.K``, …)."""
        if outputs:
            from kdexam.outputs import encoder_outputs

            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None and self._takes_token_types:
                inputs["token_type_ids"] = token_type_ids
            names = set(outputs) | ({"logits"} if self.auto_class != "AutoModel" else set())
            return encoder_outputs(self.model, inputs, names - {"gold_loss"})
        if output_attentions and getattr(self.model.config, "_attn_implementation", "eager") != "eager":
            # sdpa / flash attention cannot return attention maps: switch to eager for good
            self.model.set_attn_implementation("eager")
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask,
                  "output_hidden_states": output_hidden_states, "output_attentions": output_attentions}
        if token_type_ids is not None and self._takes_token_types:
            kwargs["token_type_ids"] = token_type_ids
        result = self.model(**kwargs)
        out = {"logits": result.logits}
        if output_hidden_states and getattr(result, "hidden_states", None) is not None:
            out["hidden_states"] = tuple(result.hidden_states)
        if output_attentions and getattr(result, "attentions", None) is not None:
            out["attentions"] = tuple(result.attentions)
        return out


def auto_class(name: str):
    """The ``transformers`` class named ``name`` (``AutoModelForSequenceClassification``, …)."""
    import transformers

    return getattr(transformers, name)


# ---- a word-embedding table trimmed to the transfer set's tokens ----------------------------------


TRIM_KEY = "kdexam_trimmed_vocab"
"""The config field of a trimmed student: ``{"rows": kept rows, "padding_idx": the pad token's row}``.
``config.vocab_size`` stays the tokenizer's (the ids the model takes)."""


class TrimmedEmbedding(nn.Embedding):
    """A word-embedding table that holds only the rows of the tokens a transfer set uses, and a
    buffer ``id_map`` [source vocabulary] that maps each id of the teacher's tokenizer to its row
    (ids the transfer set does not use to the [UNK] row), as the BiLSTM/CNN/static students'
    ``StudentEmbedding`` does.

    It replaces the HF model's ``word_embeddings``, so the model still takes the teacher
    tokenizer's ids (token-level matching compares the two tokenizations, and the ONNX export and
    the serving predictor feed those ids), and the map is saved in ``model.safetensors`` and in
    the ONNX graph (one Gather). Ids outside the map fail as ids beyond an untrimmed table do."""

    def __init__(self, num_embeddings: int, embedding_dim: int, source_vocab_size: int, padding_idx: int | None = None):
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx)
        self.register_buffer("id_map", torch.zeros(source_vocab_size, dtype=torch.long))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(self.id_map[input_ids])


def trim_word_embeddings(student: HFStudent, tokenizer, texts) -> dict:
    """Replace the student's word-embedding table (in place) by a :class:`TrimmedEmbedding` that
    keeps the rows of the special tokens and of the tokens ``texts`` use (each row as it was: random
    for a preset, the teacher's for teacher layers); returns ``{"trimmed_vocab", "source_vocab"}``.

    A bert-mini student on the bert-base-uncased vocabulary spends 7.8M of its 11.2M parameters on
    30,522 rows, most of which a task's transfer set never uses; their dense gradient and AdamW
    update cost ~10 ms of a ~270 ms CPU step, and they fill the exported model. Training is the same
    as with the full table (a row no training text uses gets no gradient); what changes is an id
    unseen in training met at prediction time: it reads the [UNK] row instead of its own untrained
    (preset) or teacher (teacher layers) row. :func:`~kdexam.students.registry.build_student` trims
    the presets only (its docstring says why)."""
    from kdexam.students.embeddings import EmbeddingInit, trim_vocabulary

    model = student.model
    old = model.get_input_embeddings()
    if not isinstance(old, nn.Embedding) or isinstance(old, TrimmedEmbedding):
        raise KdexamError(f"Cannot trim the word embeddings of this {type(model).__name__}; set trim_vocab: false.")
    init, id_map = trim_vocabulary(EmbeddingInit(old.weight.detach(), tokenizer), texts)
    rows, dim = init.weight.shape
    pad = old.padding_idx
    padding_idx = int(id_map[pad]) if pad is not None and pad in set(tokenizer.all_special_ids) else None
    new = TrimmedEmbedding(int(rows), int(dim), len(id_map), padding_idx)
    with torch.no_grad():
        new.weight.copy_(init.weight)
        new.id_map.copy_(id_map)
    new.weight.requires_grad_(old.weight.requires_grad)
    model.set_input_embeddings(new)
    setattr(model.config, TRIM_KEY, {"rows": int(rows), "padding_idx": padding_idx})
    return {"trimmed_vocab": int(rows), "source_vocab": len(id_map)}


def from_architecture(arch: dict) -> HFStudent:
    """Rebuild an :class:`HFStudent` (random weights) from ``HFStudent.architecture()``; a trimmed
    student gets its :class:`TrimmedEmbedding` back (the id map comes with the weights)."""
    from transformers import CONFIG_MAPPING

    from kdexam.teachers.loader import quiet_transformers

    quiet_transformers()
    cfg = dict(arch["config"])
    config = CONFIG_MAPPING[cfg["model_type"]].from_dict(cfg)
    model = auto_class(arch["auto_class"]).from_config(config)
    trimmed = cfg.get(TRIM_KEY)
    if trimmed:
        old = model.get_input_embeddings()
        model.set_input_embeddings(TrimmedEmbedding(int(trimmed["rows"]), old.embedding_dim, old.num_embeddings,
                                                    trimmed.get("padding_idx")))
    return HFStudent(model, arch["auto_class"])


# ---- presets --------------------------------------------------------------------------------


def preset_config(name: str, teacher_config, tokenizer, task: Task, dropout: float | None = None):
    """The ``BertConfig`` of preset ``name`` for the teacher's tokenizer and positions."""
    from transformers import BertConfig

    vocab = max(int(getattr(teacher_config, "vocab_size", 0) or 0), len(tokenizer))
    extra: dict = {}
    if dropout is not None:
        extra = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    return BertConfig(vocab_size=vocab, max_position_embeddings=int(getattr(teacher_config, "max_position_embeddings", 512)),
                      pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
                      **PRESETS[name], **head_kwargs(task), **extra)


def build_preset(name: str, teacher: str | Path, task: Task, dropout: float | None = None):
    """A randomly initialised preset student and the teacher's tokenizer."""
    from transformers import AutoConfig

    from kdexam.students.embeddings import teacher_path
    from kdexam.teachers.loader import cannot_load
    from kdexam.teachers.loader import load_tokenizer, quiet_transformers

    quiet_transformers()
    tokenizer = load_tokenizer(str(teacher))
    try:
        teacher_config = AutoConfig.from_pretrained(teacher_path(teacher), **remote_code())
    except KdexamError:
        raise
    except Exception as e:
        raise cannot_load(str(teacher), "config", e) from None
    config = preset_config(name, teacher_config, tokenizer, task, dropout)
    auto = auto_class_name(task)
    model = auto_class(auto).from_config(config)
    info = {"preset": name, "teacher": str(teacher), **PRESETS[name]}
    return HFStudent(model, auto), tokenizer, info
