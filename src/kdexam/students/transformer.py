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

``teacher-layers:K`` loads the teacher itself and keeps its embeddings, its pooler
and head, and K of its encoder layers, the initialisation of DistilBERT (Sanh et al.
2019, "DistilBERT, a distilled version of BERT", arXiv:1910.01108, which keeps one
layer in two) and of the PKD students (Sun et al. 2019, "Patient Knowledge
Distillation for BERT Model Compression", EMNLP 2019, which keep the first K).
Layer rules, for a teacher of N layers:

- ``lower``: layers 0 … K−1 (PKD);
- ``upper``: layers N−K … N−1;
- ``uniform``: K evenly spaced layers that include the first and the last,
  ``round(i·(N−1)/(K−1))`` for i = 0 … K−1, rounding halves up; for N=12, K=6 this is
  DistilBERT's 0, 2, 4, 7, 9, 11; for N=6, K=2 it is 0 and 5; K=1 keeps layer 0
  (the layer that reads the embeddings);
- a list of indices: exactly those layers, in that order;
- ``random``: the teacher's architecture with K layers and random weights (the control
  of an initialisation study: same shape and tokenizer, nothing inherited).

The encoder's layer list is found generically: the first non-empty ``nn.ModuleList``
under the base model's ``encoder`` (or the base model itself), which is
``encoder.layer`` for BERT, RoBERTa, MPNet, MiniLM and ``transformer.layer`` for
DistilBERT. ``config.num_hidden_layers`` is set to K.

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
LAYER_RULES = ("lower", "upper", "uniform", "random")


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


def _auto(name: str):
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
    model = _auto(arch["auto_class"]).from_config(config)
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
    model = _auto(auto).from_config(config)
    info = {"preset": name, "teacher": str(teacher), **PRESETS[name]}
    return HFStudent(model, auto), tokenizer, info


# ---- students made of teacher layers --------------------------------------------------------


def find_layer_list(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The parent module, attribute name and ``nn.ModuleList`` of the encoder's layers."""
    base = getattr(model, "base_model", model)
    root = getattr(base, "encoder", None)
    if not isinstance(root, nn.Module):
        root = base
    for name, module in root.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and name:
            parent_name, _, attr = name.rpartition(".")
            return root.get_submodule(parent_name) if parent_name else root, attr, module
    raise KdexamError(f"Cannot find the encoder layers of this {type(model).__name__}; "
                      "teacher-layers students need an encoder whose layers are an nn.ModuleList.")


def select_layers(n: int, k: int, rule: str | list[int]) -> list[int]:
    """Indices of the K teacher layers (of N) kept by ``rule`` (see the module docstring)."""
    if k < 1:
        raise KdexamError(f"teacher-layers:{k} keeps no layer; use teacher-layers:K with K ≥ 1.")
    if k > n:
        raise KdexamError(f"teacher-layers:{k} asks for {k} layers but the teacher has {n}; choose K ≤ {n}.")
    if isinstance(rule, list):
        if len(rule) != k:
            raise KdexamError(f"layers lists {len(rule)} indices but the kind is teacher-layers:{k}; "
                              f"list {k} indices or use teacher-layers:{len(rule)}.")
        bad = [i for i in rule if not 0 <= i < n]
        if bad:
            raise KdexamError(f"Layer index {bad[0]} is out of range for a teacher with {n} layers; use indices 0 to {n - 1}.")
        if len(set(rule)) != len(rule):
            raise KdexamError(f"layers {rule} repeats an index; list each teacher layer once.")
        return list(rule)
    if rule == "lower":
        return list(range(k))
    if rule == "upper":
        return list(range(n - k, n))
    if rule == "uniform":
        if k == 1:
            return [0]
        return [(2 * i * (n - 1) + (k - 1)) // (2 * (k - 1)) for i in range(k)]
    raise KdexamError(f"Unknown layer rule '{rule}'; use one of {', '.join(LAYER_RULES)} or a list of indices.")


def keep_layers(model: nn.Module, indices: list[int]) -> nn.Module:
    """Keep only the encoder layers ``indices`` of ``model`` (in place) and update its config."""
    parent, attr, layers = find_layer_list(model)
    setattr(parent, attr, nn.ModuleList(layers[i] for i in indices))
    keep_layer_config(model.config, len(layers), indices)
    return model


def keep_layer_config(config, n: int, indices: list[int]) -> None:
    """``num_hidden_layers`` and every per-layer list of ``config`` (one entry per layer of the N:
    ModernBERT's ``layer_types``, Longformer's ``attention_window``) cut to the kept ``indices``; a
    config whose lists still had N entries would not save."""
    for key, value in config.to_dict().items():
        if isinstance(value, (list, tuple)) and len(value) == n and n != len(indices) and key != "architectures":
            setattr(config, key, type(value)(value[i] for i in indices))
    config.num_hidden_layers = len(indices)


def check_rebuilds(model: nn.Module, indices: list[int]) -> None:
    """The kept layers must be what the architecture builds from the cut config, or the saved student
    would not load: some architectures build a layer by its position (ModernBERT's first layer has no
    attention norm), so their first teacher layer must stay first."""
    with torch.device("meta"):
        fresh = type(model)(model.config)
    have, built = set(model.state_dict()), set(fresh.state_dict())
    if have != built:
        extra = sorted(have - built or built - have)[0]
        raise KdexamError(f"The teacher's layers {indices} do not make a {type(model).__name__} again ({extra!r} differs): "
                          "this architecture builds its layers by position; keep its first layer first (layers: lower or "
                          "uniform, or a list starting with 0).")


def _random_teacher_shape(teacher, task: Task, k: int, tokenizer):
    """The teacher's architecture with K layers and random weights (the control of an initialisation study)."""
    from transformers import AutoConfig

    from kdexam.students.embeddings import teacher_path

    config = AutoConfig.from_pretrained(teacher_path(teacher), **head_kwargs(task), **remote_code())
    n = config.num_hidden_layers
    keep_layer_config(config, n, select_layers(n, k, "lower"))  # (the range checks of a real selection)
    auto = auto_class_name(task)
    model = _auto(auto).from_config(config)
    model.float()  # float32 like every teacher-layers student, whatever the teacher is stored in
    model.config.dtype = torch.float32
    info = {"teacher": str(teacher), "teacher_num_layers": n, "teacher_layers": [], "layer_rule": "random"}
    return HFStudent(model, auto), tokenizer, info


def build_teacher_layers(teacher: str | Path, task: Task, k: int, rule: str | list[int]):
    """The teacher with K of its encoder layers, its tokenizer, and which layers were kept."""
    from kdexam.teachers.loader import load_for_task, load_tokenizer

    tokenizer = load_tokenizer(str(teacher))
    if rule == "random":
        return _random_teacher_shape(teacher, task, k, tokenizer)
    model = load_for_task(str(teacher), task)  # the encoder must be complete; the run's Teacher checks the head
    _, _, layers = find_layer_list(model)
    n = len(layers)
    declared = getattr(model.config, "num_hidden_layers", n)
    if declared != n:
        raise KdexamError(f"The teacher's layer list has {n} entries but its config declares {declared} layers "
                          "(shared layers?); teacher-layers students need one module per layer.")
    indices = select_layers(n, k, rule)
    keep_layers(model, indices)
    check_rebuilds(model, indices)
    # a teacher stored in half precision still gives a float32 student, trainable on any device
    model.float()
    model.config.dtype = torch.float32
    own_memory(model)
    info = {"teacher": str(teacher), "teacher_num_layers": n, "teacher_layers": indices,
            "layer_rule": rule if isinstance(rule, str) else "explicit"}
    return HFStudent(model, auto_class_name(task)), tokenizer, info


def own_memory(model: nn.Module) -> None:
    """Give each parameter a fresh copy of its own. transformers (5.25 here) may leave the weights it
    loads inside the safetensors file's memory map, at the file's 8-byte offsets, and a BLAS kernel's
    result on a misaligned operand can differ in the last bit from the same product on aligned memory:
    the student built from the teacher then computed 1e-7 away from itself saved and loaded again."""
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.clone()


# ---- encoders for task-agnostic distillation, and students initialised from them -----------------------


ENCODER_FILE = "encoder.json"


def build_general_student(family: str, k: int | None, teacher: str | Path, rule: str | list[int] = "uniform"):
    """A bare encoder (``AutoModel``, no head) for task-agnostic distillation: a preset shape
    (random) or K of the teacher's layers; with the teacher's tokenizer.

    Its word-embedding table is never trimmed (:func:`trim_word_embeddings`): the encoder is the
    starting point of students for tasks whose texts are not known yet, and ``--init-from`` loads it
    as a plain HF model."""
    from transformers import AutoConfig, AutoModel

    from kdexam.students.embeddings import teacher_path
    from kdexam.teachers.loader import cannot_load, load_tokenizer, quiet_transformers

    quiet_transformers()
    tokenizer = load_tokenizer(str(teacher))
    path = teacher_path(teacher)
    if family == "teacher-layers" and rule == "random":
        config = AutoConfig.from_pretrained(path, **remote_code())
        n = config.num_hidden_layers
        keep_layer_config(config, n, select_layers(n, k, "lower"))
        model = AutoModel.from_config(config)
        model.float()
        model.config.dtype = torch.float32
        info = {"teacher_num_layers": n, "teacher_layers": [], "layer_rule": "random"}
    elif family == "teacher-layers":
        try:
            model = AutoModel.from_pretrained(path, **remote_code())
        except Exception as e:
            raise cannot_load(str(teacher), "weights", e) from None
        _, _, layers = find_layer_list(model)
        indices = select_layers(len(layers), k, rule)
        keep_layers(model, indices)
        check_rebuilds(model, indices)  # (the saved encoder must load as what was trained, for --init-from)
        model.float()
        model.config.dtype = torch.float32
        own_memory(model)
        info = {"teacher_num_layers": len(layers), "teacher_layers": indices,
                "layer_rule": rule if isinstance(rule, str) else "explicit"}
    elif family in PRESETS:
        from transformers import BertConfig

        teacher_config = AutoConfig.from_pretrained(path, **remote_code())
        vocab = max(int(getattr(teacher_config, "vocab_size", 0) or 0), len(tokenizer))
        config = BertConfig(vocab_size=vocab, max_position_embeddings=int(getattr(teacher_config, "max_position_embeddings", 512)),
                            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0, **PRESETS[family])
        model = AutoModel.from_config(config)
        info = {"preset": family, **PRESETS[family]}
    else:
        raise KdexamError(f"General distillation trains a transformer encoder; use a bert-* preset or teacher-layers:K, not '{family}'.")
    return HFStudent(model, "AutoModel"), tokenizer, info


def build_from_encoder(encoder_dir: str | Path, family: str, k: int | None, task: Task, dropout: float | None = None):
    """A task student initialised from a general-distilled encoder: its weights and tokenizer, a new head.
    The encoder's shape must be the kind's (K layers for teacher-layers:K, the preset's sizes)."""
    from transformers import AutoConfig

    from kdexam.teachers.loader import cannot_load, load_tokenizer, quiet_transformers

    d = Path(encoder_dir)
    if not (d / ENCODER_FILE).is_file():
        raise KdexamError(f"'{encoder_dir}' is not an encoder written by 'kdexam distill --general' (no {ENCODER_FILE}); "
                          "pass the --out directory of a general distillation.")
    quiet_transformers()
    config = AutoConfig.from_pretrained(str(d))
    if family == "teacher-layers" and config.num_hidden_layers != k:
        raise KdexamError(f"The encoder '{encoder_dir}' has {config.num_hidden_layers} layers but the student is "
                          f"teacher-layers:{k}; use teacher-layers:{config.num_hidden_layers}.")
    if family in PRESETS and any(getattr(config, key) != v for key, v in PRESETS[family].items()):
        raise KdexamError(f"The encoder '{encoder_dir}' does not have the shape of {family} "
                          f"({config.num_hidden_layers} layers, width {config.hidden_size}); use the kind it was distilled as.")
    if family not in PRESETS and family != "teacher-layers":
        raise KdexamError(f"--init-from initialises transformer students; '{family}' students cannot take an encoder.")
    auto = auto_class_name(task)
    try:
        rates = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
        model, loading = _auto(auto).from_pretrained(str(d), output_loading_info=True, **head_kwargs(task), **rates)
    except Exception as e:
        raise cannot_load(str(encoder_dir), "weights", e) from None
    encoder_missing = [m for m in loading.get("missing_keys", []) if not m.startswith(("classifier", "pooler", "score"))]
    if encoder_missing:
        raise KdexamError(f"The encoder '{encoder_dir}' lacks weights the student needs ({encoder_missing[0]}, …); "
                          "distil it again with 'kdexam distill --general'.")
    model.float()
    own_memory(model)
    return HFStudent(model, auto), load_tokenizer(str(d)), {"init_from": str(d)}
