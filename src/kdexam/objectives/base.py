"""What every objective declares, and the shared pieces of the intermediate (layer) objectives.

An objective is a small :class:`torch.nn.Module` called as
``objective(student, teacher, batch) -> float32 scalar`` on dicts of named outputs
(:mod:`kdexam.outputs`). Its class declares:

- ``name``: the key a config uses (``{name: hidden_mse, ...}``);
- ``task_kinds``: the task kinds it serves (:data:`kdexam.tasks.TASK_KINDS`, plus the
  pseudo-kind ``"general"`` for task-agnostic distillation: no labels, no head);
- ``Params``: a pydantic model (``extra="forbid"``) of its own parameters, the keys of
  an objective entry besides ``name`` and ``weight``;
- ``citation_entries``: BibTeX of its source(s);
- ``build(params, ctx)``: the instance for a run, given the teacher's and the
  student's :class:`ModelShape` (``ctx``);

and an instance answers ``requires`` -> ``(teacher_keys, student_keys)``: the named
outputs it reads (e.g. ``({"hidden.6"}, {"hidden.2"})``).

A new objective is one class (in a new file if it likes) plus one line in
:data:`kdexam.objectives.registry.OBJECTIVES`.

Intermediate objectives (:class:`LayerObjective`) compare layer ``t`` of the teacher
with layer ``s`` of the student for a list of pairs (:mod:`kdexam.objectives.mapping`),
average the per-pair losses (so a loss's weight does not depend on how many layers are
matched), and own the learnable width projections ``W`` (``nn.Linear(student_width,
teacher_width)``) of the pairs whose widths differ. Those projections are the only
parameters of an objective: a trainer puts them in the optimizer and the checkpoint
next to the student's, and never exports them with the student.

Masking. Token-level features are averaged over real tokens only:
``batch["attention_mask"] == 1`` (every position when the batch has no mask); padded
positions may hold anything. Teacher tensors are treated as constants (detached) and
every loss is computed in float32, whatever the inputs' precision (float16 teacher
caches, autocast).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, field_validator
from torch import Tensor, nn

from kdexam.errors import KdexamError
from kdexam.objectives.mapping import check_rule, layer_pairs
from kdexam.tasks import TASK_KINDS

GENERAL = "general"
"""The pseudo task kind of task-agnostic distillation (no labels, no head)."""
ALL_KINDS: tuple[str, ...] = (*TASK_KINDS, GENERAL)
"""Every task kind an objective may serve."""

Projection = Literal["auto", "linear", "none"]
"""``auto``: a learned ``nn.Linear(student_width, teacher_width)`` only when the widths
differ; ``linear``: always one; ``none``: never (the widths must be equal)."""
Layers = Annotated[Union[str, list[tuple[int, int]]], AfterValidator(check_rule)]


def _positive_temperature(temperature: float) -> float:
    if not math.isfinite(temperature) or temperature <= 0:
        from pydantic_core import PydanticCustomError

        raise PydanticCustomError("bad_temperature", "needs a temperature > 0")
    return temperature


Temperature = Annotated[float, AfterValidator(_positive_temperature)]
"""A softmax temperature parameter: finite and > 0."""
"""A layer-mapping rule (uniform, skip, first, last, final) or a list of
``[teacher_layer, student_layer]`` pairs (:func:`kdexam.objectives.mapping.layer_pairs`)."""


@dataclass(frozen=True)
class ModelShape:
    """Layers, width and attention heads of a teacher or student; ``None`` for students
    without transformer layers (BiLSTM, CNN, static), which give their feature widths instead."""

    num_layers: int | None = None
    hidden_size: int | None = None
    num_heads: int | None = None
    pooled_size: int | None = None
    """BiLSTM, CNN and static students: width of ``pooled`` (the sequence head's input)."""
    states_size: int | None = None
    """BiLSTM, CNN and static students: width of ``states`` (their last token-level features)."""

    @property
    def has_layers(self) -> bool:
        return bool(self.num_layers)


@dataclass(frozen=True)
class BuildContext:
    """What :meth:`Objective.build` knows about the run: the entry's label for messages
    (``"Objective 2 ('hidden_mse')"``), the task kind and both models' shapes."""

    label: str
    task_kind: str
    teacher: ModelShape
    student: ModelShape


def holds_bool(value: Any) -> bool:
    """A ``true``/``false`` in ``value`` (or in its nested lists): pydantic reads it as 1 or 0
    where a number is declared, so ``temperature=true`` trained at T = 1 without a word."""
    return isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(holds_bool(v) for v in value))


class ObjectiveParams(BaseModel):
    """Base of every objective's ``Params``: unknown keys are an error, and so is ``true``/``false``
    given for a parameter that is not a switch."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if cls.model_fields[info.field_name].annotation is not bool and holds_bool(value):
            raise ValueError("it takes a number or a name, not true/false")
        return value


class Objective(nn.Module):
    """Base class: a named loss with declared parameters, task kinds and citations.

    Subclasses set the class attributes below and implement ``forward``; override
    :meth:`build` when the constructor needs more than the parameters, and
    :attr:`requires` when they read more than ``logits``.
    """

    name: ClassVar[str] = ""
    """Short name used in configs and in the reported loss parts (an instance may
    carry another, e.g. ``match:hidden_mse``)."""
    task_kinds: ClassVar[tuple[str, ...]] = ()
    """Task kinds this objective serves."""
    needs_teacher: ClassVar[bool] = True
    """False for objectives that read only the student and the gold labels."""
    citation_entries: ClassVar[tuple[str, ...]] = ()
    """BibTeX entries of the papers this objective comes from."""

    class Params(ObjectiveParams):
        """No parameters besides ``name`` and ``weight``."""

    @classmethod
    def match_params(cls, ctx: BuildContext) -> ObjectiveParams:
        """The parameters of a declarative match group (``--match``), which names none: the defaults."""
        return cls.Params()

    @classmethod
    def build(cls, params: ObjectiveParams, ctx: BuildContext) -> "Objective":
        """The instance for a run; by default ``cls(**params)``."""
        return cls(**params.model_dump())

    @property
    def citation(self) -> str:
        """BibTeX of the paper(s) this objective comes from ('' when none)."""
        return "\n\n".join(self.citation_entries)

    @property
    def requires(self) -> tuple[set[str], set[str]]:
        """``(teacher_keys, student_keys)``: the named outputs this objective reads."""
        return ({"logits"} if self.needs_teacher else set()), {"logits"}

    def forward(self, student: dict, teacher: dict | None, batch: dict) -> Tensor:  # pragma: no cover
        raise NotImplementedError


# ---- helpers of the intermediate objectives ---------------------------------------


def float32(outputs: dict) -> contextlib.AbstractContextManager:
    """Autocast off on the outputs' device: projections and losses run in float32 even
    inside a mixed-precision step."""
    tensor = next((v for v in outputs.values() if isinstance(v, Tensor)), None)
    if tensor is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def named(outputs: dict | None, key: str, who: str, objective: str) -> Tensor:
    """``outputs[key]`` (float32; detached for the teacher), or a ValueError naming what is missing."""
    value = None if outputs is None else outputs.get(key)
    if value is None:
        raise ValueError(f"{objective} needs {who}['{key}'], but the {who} outputs hold none.")
    value = value.float()
    return value.detach() if who == "teacher" else value


def real_tokens(batch: dict, like: Tensor) -> Tensor:
    """The ``[B, L]`` boolean mask of real tokens for a ``[B, L, ...]`` feature: the
    attention mask, or every position when the batch has none."""
    b, length = like.shape[0], like.shape[1]
    mask = batch.get("attention_mask")
    if mask is None:
        return torch.ones(b, length, dtype=torch.bool, device=like.device)
    if tuple(mask.shape) != (b, length):
        raise ValueError(f"attention_mask of shape {tuple(mask.shape)} does not match features of shape "
                         f"[B, L] = {(b, length)}.")
    return mask.to(like.device).bool()


def same_tokens(s: Tensor, t: Tensor, objective: str, key_s: str, key_t: str) -> None:
    if s.shape[:2] != t.shape[:2]:
        raise ValueError(f"{objective}: student {key_s} {tuple(s.shape)} and teacher {key_t} {tuple(t.shape)} differ "
                         "in batch size or length; both sides must come from the same tokenization.")


def zero_like(x: Tensor) -> Tensor:
    """A float32 zero that keeps the graph (a batch with nothing to score)."""
    return x.float().sum() * 0.0


def split_heads(x: Tensor, heads: int) -> Tensor:
    """``[B, L, H]`` -> ``[B, heads, L, H / heads]`` (heads contiguous in H, as in BERT)."""
    b, length, width = x.shape
    if width % heads:
        raise ValueError(f"Cannot split width {width} into {heads} heads.")
    return x.reshape(b, length, heads, width // heads).transpose(1, 2)


def need_layers(ctx: BuildContext) -> None:
    """A KdexamError unless both the teacher and the student have transformer layers and a known width."""
    if not ctx.student.has_layers or not ctx.student.hidden_size:
        raise KdexamError(f"{ctx.label} reads the student's transformer layers, but this student has none; use a "
                          "transformer student such as bert-mini or teacher-layers:K, or drop the objective.")
    if not ctx.teacher.has_layers or not ctx.teacher.hidden_size:
        raise KdexamError(f"{ctx.label} reads the teacher's transformer layers, but the teacher's shape (layers, "
                          "width) is unknown; use a transformer teacher, or drop the objective.")


def need_heads(ctx: BuildContext, suggestion: str = "relations") -> tuple[int, int]:
    """Both head counts, which must be known and equal (a KdexamError suggesting ``relations`` otherwise)."""
    t, s = ctx.teacher.num_heads, ctx.student.num_heads
    if not t or not s:
        raise KdexamError(f"{ctx.label} compares attention head by head, but the head count of the "
                          f"{'teacher' if not t else 'student'} is unknown; use a transformer with a known head count.")
    if t != s:
        raise KdexamError(f"{ctx.label} compares attention head by head, but the teacher has {t} heads and the student "
                          f"{s}; use {suggestion} (MiniLMv2 relation heads), which works with any head counts.")
    return t, s


class LayerObjective(Objective):
    """An objective on pairs ``(teacher_layer, student_layer)``: the per-pair losses are
    averaged with ``pair_weights`` (uniform by default), so the result is a mean over
    matched layer pairs.

    Subclasses implement ``pair_loss(student, teacher, batch, t, s)`` and
    ``pair_keys(t, s) -> (teacher_keys, student_keys)``; width-carrying ones set
    ``carries_width`` and call :meth:`project`.
    """

    task_kinds: ClassVar[tuple[str, ...]] = ALL_KINDS
    min_layer: ClassVar[int] = 0
    """Smallest layer index this objective can read (1 for attention: the embedding layer has none)."""
    carries_width: ClassVar[bool] = False
    """Whether the compared features have the models' widths (then a projection may map them)."""

    def __init__(self, pairs, pair_weights=None, teacher_width: int | None = None, student_width: int | None = None,
                 projection: Projection | list[Projection] = "auto") -> None:
        super().__init__()
        pairs = [(int(t), int(s)) for t, s in pairs]
        if not pairs:
            raise ValueError(f"{type(self).__name__} needs at least one (teacher_layer, student_layer) pair.")
        for t, s in pairs:
            if min(t, s) < self.min_layer:
                raise ValueError(f"{type(self).__name__} reads layers >= {self.min_layer}, got the pair ({t}, {s}).")
        weights = [1.0] * len(pairs) if pair_weights is None else [float(w) for w in pair_weights]
        if len(weights) != len(pairs) or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"{type(self).__name__}: need one weight >= 0 per pair, not all 0; got {weights}.")
        total = sum(weights)
        self.pairs = pairs
        self.pair_weights = [w / total for w in weights]
        self.projections = nn.ModuleDict()
        if self.carries_width:
            modes = [projection] * len(pairs) if isinstance(projection, str) else list(projection)
            if len(modes) != len(pairs):
                raise ValueError(f"{type(self).__name__}: {len(modes)} projection modes for {len(pairs)} pairs.")
            for (t, s), mode in zip(pairs, modes):
                if teacher_width is None or student_width is None:
                    raise ValueError(f"{type(self).__name__} needs teacher_width and student_width.")
                if mode not in ("auto", "linear", "none"):
                    raise ValueError(f"projection must be auto, linear or none, got {mode!r}.")
                if mode == "none" and teacher_width != student_width:
                    raise KdexamError(
                        f"Objective '{self.name}' compares teacher width {teacher_width} with student width "
                        f"{student_width} at layers ({t}, {s}) with projection none; use projection auto or linear.")
                if mode == "linear" or (mode == "auto" and teacher_width != student_width):
                    self.projections[self._key(t, s)] = nn.Linear(student_width, teacher_width)
        self.teacher_width, self.student_width = teacher_width, student_width

    @staticmethod
    def _key(t: int, s: int) -> str:
        return f"t{t}_s{s}"

    def extra_repr(self) -> str:
        return f"pairs={self.pairs}"

    def project(self, x: Tensor, t: int, s: int) -> Tensor:
        """The student feature mapped to the teacher's width (unchanged where no projection is needed)."""
        proj = self.projections[self._key(t, s)] if self._key(t, s) in self.projections else None
        return x if proj is None else proj(x)

    def pair_keys(self, t: int, s: int) -> tuple[set[str], set[str]]:  # pragma: no cover
        raise NotImplementedError

    def pair_loss(self, student: dict, teacher: dict, batch: dict, t: int, s: int) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    @property
    def requires(self) -> tuple[set[str], set[str]]:
        teacher_keys: set[str] = set()
        student_keys: set[str] = set()
        for t, s in self.pairs:
            tk, sk = self.pair_keys(t, s)
            teacher_keys |= tk
            student_keys |= sk
        return teacher_keys, student_keys

    def forward(self, student: dict, teacher: dict | None, batch: dict) -> Tensor:
        if teacher is None:
            raise ValueError(f"{self.name} needs the teacher's outputs, but teacher is None.")
        with float32(student):
            total = None
            for (t, s), w in zip(self.pairs, self.pair_weights):
                value = w * self.pair_loss(student, teacher, batch, t, s)
                total = value if total is None else total + value
        return total.float()

    # ---- how a config entry becomes an instance ----------------------------------

    @classmethod
    def layer_pairs_of(cls, params: ObjectiveParams, ctx: BuildContext) -> list[tuple[int, int]]:
        """The pairs of ``params.layers`` (and ``params.embeddings``) for the two shapes."""
        return layer_pairs(params.layers, ctx.teacher.num_layers, ctx.student.num_layers,
                           embeddings=bool(getattr(params, "embeddings", False)))

    @classmethod
    def build(cls, params: ObjectiveParams, ctx: BuildContext, pairs=None, pair_weights=None,
              projections=None) -> "LayerObjective":
        """The instance for ``ctx``: pairs from ``params.layers`` (or the given ``pairs``,
        with ``pair_weights`` and per-pair ``projections``, for declarative matches)."""
        need_layers(ctx)
        try:
            if pairs is None:
                pairs = cls.layer_pairs_of(params, ctx)
            else:
                pairs = layer_pairs([list(p) for p in pairs], ctx.teacher.num_layers, ctx.student.num_layers)
        except KdexamError as e:
            message = str(e)
            raise KdexamError(f"{ctx.label}: {message[:1].lower()}{message[1:]}") from None
        check_min_layer(cls, pairs, ctx)
        return cls.create(params, ctx, pairs, pair_weights, projections)

    @classmethod
    def create(cls, params, ctx, pairs, pair_weights, projections) -> "LayerObjective":
        kwargs = {}
        if cls.carries_width:
            modes = list(projections) if projections else [params.projection] * len(pairs)
            widths = ctx.teacher.hidden_size, ctx.student.hidden_size
            for (t, s), mode in zip(pairs, modes):
                if mode == "none" and widths[0] != widths[1]:
                    raise KdexamError(
                        f"{ctx.label} compares teacher width {widths[0]} with student width {widths[1]} at layers "
                        f"({t}, {s}), which needs a projection; set projection to auto or linear.")
            kwargs = {"teacher_width": widths[0], "student_width": widths[1], "projection": modes}
        return cls(pairs, pair_weights=pair_weights, **kwargs)


def check_min_layer(cls, pairs, ctx: BuildContext) -> None:
    for t, s in pairs:
        if min(t, s) < cls.min_layer:
            raise KdexamError(f"{ctx.label} cannot read layer 0 (the embedding layer has no self-attention) in the "
                              f"pair ({t}, {s}); match transformer layers 1 and up.")
