"""Run configuration: the pydantic models of data, training, teacher and distillation runs and
their stages.

A run is fully described by its config. CLI flags override the file; unknown keys
are an error that names the key and the closest valid one; the resolved config is
written into every run directory as ``config.yaml`` (:mod:`kdexam.config.loading`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from kdexam.config.objectives import MatchSpec, ObjectiveSpec
from kdexam.config.students import NumbersNotBooleans, StudentSpec

TaskKind = Literal["classification", "token-classification", "regression"]


MAX_SEED = 2**32 - 1
"""Seeds are what numpy takes: 0 to 2³² − 1."""
MAX_THREADS = 4096
"""More threads than any machine has; a larger count overflowed inside torch."""


class Strict(NumbersNotBooleans):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # (an infinite lr ruined the weights)


class DataConfig(Strict):
    """Where the data comes from and how to read it."""

    name: str | None = None
    """A built-in dataset name, a file, a directory of split files, a saved HF dataset, or a hub id."""
    task: TaskKind | None = None
    """Task kind; inferred from the data when omitted."""
    text_column: str = "text"
    text_pair_column: str | None = None
    """Second text of a pair; ``text_pair`` is used automatically when the data has it."""
    label_column: str = "label"
    token_column: int = 0
    """CoNLL: column index of the token."""
    tag_column: int = -1
    """CoNLL: column index of the tag."""
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)
    """Share of train carved off (seeded, stratified) when there is no validation split."""
    max_train: int | None = Field(default=None, ge=1)
    """Keep only the first N training examples after the seeded shuffle."""
    max_eval: int | None = Field(default=None, ge=1)
    """Keep only the first N validation and test examples (quick runs)."""
    max_length: int = Field(default=128, ge=8)
    """Longest input in subword tokens; longer inputs are truncated."""
    primary_metric: str | None = None
    """Metric for early stopping and retention; the task's default when omitted."""


class TrainConfig(Strict):
    """Optimisation settings (defaults: the usual BERT fine-tuning recipe)."""

    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=32, ge=1)
    eval_batch_size: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=5e-5, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float = Field(default=1.0, ge=0)
    """Clip the gradient norm to this; 0: no clipping."""
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    patience: int = Field(default=2, ge=1)
    """Stop after this many evaluations without improvement of the primary metric."""
    evals_per_epoch: int = Field(default=1, ge=1)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    """``auto``: none (fp32) on a CPU, and for students on a GPU too (there bf16 autocast made every student kind's
    training step slower on an H200 at batch 32; ask ``bf16`` for large students or batches); bf16, else fp16, on a
    GPU for teacher fine-tuning. ``bf16`` on a CPU: bf16 autocast there (faster on CPUs with native bf16
    arithmetic); weights and optimizer stay fp32 either way."""
    num_threads: int | None = Field(default=None, ge=1, le=MAX_THREADS)
    """CPU threads for PyTorch; all cores when omitted."""
    max_nonfinite_steps: int = Field(default=10, ge=1)
    """A NaN or infinite loss skips its step; this many in a row stop the run (its last checkpoint kept)."""
    checkpoint_every: int = Field(default=200, ge=0)
    """Write a full checkpoint (for ``--resume``) every N steps; 0: after each evaluation instead. A checkpoint holds
    the weights, the best weights and the optimizer state (four times the model's size): written after every
    evaluation, as kdexam did before, they took 5 % of a 10-epoch bert-mini run on 1,000 sentences (0.5 s each)."""
    keep_checkpoint: bool = False
    """Keep a checkpoint of the finished training in the run directory after a successful run."""
    ema_decay: float | None = Field(default=None, gt=0, lt=1)
    """Keep an exponential moving average of the weights, ``θ̄ ← d·θ̄ + (1 − d)·θ`` after every optimizer step
    (Polyak & Juditsky 1992), and evaluate, select and save the averaged weights instead of the last ones.
    0.999 averages over about the last 1,000 steps. Off by default."""

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value):
        """YAML reads a bare ``no`` (``--set train.mixed_precision=no``, or in a config file) as false."""
        return "no" if value is False else value


class TeacherTrainConfig(TrainConfig):
    """Teacher fine-tuning: two epochs by default (Devlin et al. 2019 recommend 2–4); MiniLM-L6 on
    movie-sentiment then fits in 15 minutes on a 2-core CPU, and the best epoch is restored anyway."""

    epochs: int = Field(default=2, ge=1)


class StudentTrainConfig(TrainConfig):
    """Distillation: students train longer from scratch; the learning rate defaults per student kind."""

    epochs: int = Field(default=10, ge=1)
    patience: int = Field(default=3, ge=1)


class TeacherRunConfig(Strict):
    """``kdexam teacher``: fine-tune an encoder for a task."""

    data: DataConfig = DataConfig()
    model: str = "minilm-l6"
    """A built-in model name, a local HF model directory, or a hub id."""
    out: str | None = None
    seed: int = Field(default=42, ge=0, le=MAX_SEED)
    trust_remote_code: bool = False
    """Let a model whose config names its own Python code run it (off: such models are refused)."""
    train: TeacherTrainConfig = TeacherTrainConfig()


class StageConfig(Strict):
    """One stage of a staged recipe (XtremeDistil, Mukherjee & Awadallah 2020)."""

    name: str = "distill"
    objectives: list[ObjectiveSpec] | None = None
    """This stage's objectives; the run's ``objectives`` when omitted."""
    matches: list[MatchSpec] | None = None
    """This stage's declarative layer matches; the run's ``matches`` when omitted."""
    data: Literal["transfer", "gold"] = "transfer"
    """``transfer``: the transfer set with teacher outputs; ``gold``: labelled examples only."""
    epochs: int | None = Field(default=None, ge=1)
    learning_rate: float | None = Field(default=None, gt=0)
    unfreeze: Annotated[int, Field(ge=1)] | Literal["all"] = "all"
    """Train only the top N layer groups (head first), freezing the rest: gradual unfreezing."""


class TransferConfig(Strict):
    """What the student learns from besides the labelled train split (:mod:`kdexam.data.transfer`)."""

    unlabelled: list[str] = []
    """Unlabelled text, one or more sources: a built-in dataset (e.g. ``movie-dialog``,
    ``sentiment-snippets``), a .txt file (one text per line), or a CSV/TSV/JSONL file (its
    ``unlabelled_column``). A single name is a list of one."""
    unlabelled_column: str | None = None
    """Text column of an unlabelled CSV/JSONL file (default: the data's ``text_column``)."""
    max_unlabelled: int | None = Field(default=None, gt=0)
    """Keep the first N texts of a fixed shuffle of each unlabelled source (a smaller source is kept whole)."""
    augment: list[str] = []
    """Augmenters applied to the labelled examples: mask, neighbours, ngram, mlm (:mod:`kdexam.data.augment`)."""
    augment_n: int = Field(default=1, ge=1)
    """New examples per labelled example and augmenter."""
    augment_p: float | None = Field(default=None, gt=0, le=1)
    """Per-word probability of mask/neighbours/mlm (each augmenter's default when omitted)."""
    augment_vectors: str | None = None
    """word2vec/GloVe text file for ``neighbours`` (default: the teacher's input embeddings)."""
    augment_mlm_model: str | None = None
    """A masked-LM model directory for ``mlm``."""
    min_confidence: float | None = Field(default=None, gt=0, le=1)
    """Keep only teacher-labelled rows whose teacher confidence (max probability) is at least this."""

    @field_validator("unlabelled", mode="before")
    @classmethod
    def _one_source_is_a_list(cls, v):
        return [] if v is None else [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _settings_need_their_source(self):
        """A setting of the unlabelled text or the augmenters, given without them, did nothing."""
        for key, source in (("max_unlabelled", "unlabelled"), ("unlabelled_column", "unlabelled"), ("augment_n", "augment"),
                            ("augment_p", "augment"), ("augment_vectors", "augment"), ("augment_mlm_model", "augment")):
            if getattr(self, key) != type(self).model_fields[key].default and not getattr(self, source):  # (a config.yaml lists every key)
                raise ValueError(f"transfer.{key} has no effect without transfer.{source} (--{source}); add it or drop "
                                 f"--{key.replace('_', '-')}")
        if self.min_confidence is not None and not (self.unlabelled or self.augment):
            raise ValueError("transfer.min_confidence filters teacher-labelled rows, and there are none without "
                             "transfer.unlabelled or transfer.augment; add one or drop --min-confidence")
        return self

    @model_validator(mode="after")
    def _augmenter_settings_need_their_augmenter(self):
        """An augmenter named twice made the same examples again; a setting no listed augmenter reads did nothing."""
        twice = sorted({m for m in self.augment if self.augment.count(m) > 1})
        if twice:
            raise ValueError(f"transfer.augment names {', '.join(twice)} more than once, which makes the same examples "
                             "again; name each augmenter once (--augment-n N makes N examples per augmenter)")
        for key, readers in (("augment_p", ("mask", "neighbours", "mlm")), ("augment_vectors", ("neighbours",)),
                             ("augment_mlm_model", ("mlm",))):
            if getattr(self, key) is not None and self.augment and not set(readers) & set(self.augment):
                named = readers[0] if len(readers) == 1 else f"{', '.join(readers[:-1])} and {readers[-1]}"
                raise ValueError(f"transfer.{key} is read by the {named} augmenter{'s' if len(readers) > 1 else ''}, "
                                 f"and --augment {','.join(self.augment)} has none of them; add one or drop "
                                 f"--{key.replace('_', '-')}")
        return self


STUDENT_LEARNING_RATES = {"bilstm": 1e-3, "cnn": 1e-3, "static": 1e-3, "teacher-layers": 5e-5}
"""Default peak learning rates per student family; other (bert-*) presets use 1e-4."""


def student_learning_rate(kind: str) -> float:
    """The default peak learning rate of a student kind (its family's; kinds are read in any case)."""
    return STUDENT_LEARNING_RATES.get(kind.strip().lower().split(":")[0], 1e-4)


def default_rate_follows_the_student(raw: dict, overrides: dict[str, Any]) -> dict:
    """A saved ``config.yaml`` records the learning rate its student's default gave. Rerun with
    another student (``--student``, ``--set student.kind=…``), that rate is the new student's
    default instead; a rate that is not the old student's default, or one given again, is kept."""
    student, train = raw.get("student"), raw.get("train")
    section = overrides.get("student")
    new = overrides.get("student.kind", section.get("kind") if isinstance(section, dict) else None)
    if (not isinstance(student, dict) or not isinstance(train, dict) or not isinstance(student.get("kind"), str)
            or not isinstance(new, str) or any(k in overrides for k in ("train", "train.learning_rate"))):
        return raw
    old = student["kind"]
    if student_learning_rate(old) == student_learning_rate(new) or train.get("learning_rate") != student_learning_rate(old):
        return raw
    return {**raw, "train": {k: v for k, v in train.items() if k != "learning_rate"}}


class EnsembleConfig(Strict):
    """How the outputs of several teachers (``teachers``) combine into one soft target per example
    (:mod:`kdexam.teachers.ensemble`)."""

    combine: Literal["probs", "logits"] = "probs"
    """Average the members' probabilities (the target's logits are log p̄) or their logits."""
    weighting: Literal["equal", "fixed", "validation", "confidence"] = "equal"
    """Member weights: equal; fixed (``weights``); proportional to each member's validation score;
    or per example (per word for tagging), proportional to each member's confidence (its largest probability)."""
    weights: list[Annotated[float, Field(ge=0)]] | None = None
    """One weight per teacher, in the order of ``teachers`` (normalised to sum 1); implies weighting: fixed."""

    @model_validator(mode="before")
    @classmethod
    def _weights_mean_fixed(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("weights") is not None and "weighting" not in data:
            data = {**data, "weighting": "fixed"}  # weights alone say how to weigh
        return data

    @model_validator(mode="after")
    def _weights_with_fixed(self):
        if (self.weights is not None) != (self.weighting == "fixed"):
            raise ValueError("ensemble.weights go with ensemble.weighting: fixed (and fixed needs weights); "
                             "set both or neither")
        if self.weights is not None and not sum(self.weights) > 0:
            raise ValueError("ensemble.weights must not all be 0")
        return self


class DistillRunConfig(Strict):
    """``kdexam distill``: distil a fine-tuned teacher (or an ensemble of them) into a student."""

    teacher: str | None = None
    """Run directory written by ``kdexam teacher`` (or any fine-tuned HF model directory with task.json)."""
    teachers: list[str] | None = None
    """Several teacher run directories distilled together as an ensemble (each tokenizes the text
    itself and has its own cache; see ``ensemble``). One entry is the same as ``teacher``."""
    ensemble: EnsembleConfig = EnsembleConfig()
    """Only with several ``teachers`` (with one, its settings would do nothing: refused)."""
    data: DataConfig = DataConfig()
    student: StudentSpec = StudentSpec()
    objectives: list[ObjectiveSpec] | None = None
    """Weighted loss terms; default: KL at T=2 (0.5) + gold cross-entropy (0.5), MSE mix for regression;
    with ``general``: attention KL + value relation on the last layer (MiniLM)."""
    matches: list[MatchSpec] | None = None
    """Declarative teacher-layer/student-layer matches, added to ``objectives``."""
    stages: list[StageConfig] | None = None
    """Staged recipe; one stage with ``objectives`` when omitted."""
    recipe: str | None = None
    """A named recipe (:mod:`kdexam.config.recipes`: ``xtremedistil``) instead of ``stages``."""
    transfer: TransferConfig = TransferConfig()
    out: str | None = None
    seed: int = Field(default=42, ge=0, le=MAX_SEED)
    cache_teacher: bool = True
    """Reuse cached teacher outputs (False runs the teacher on every batch: for benchmarks)."""
    cache_budget_gb: float = Field(default=8.0, ge=0)
    """Largest teacher cache (GB) to write for this run; outputs that would exceed it are computed online."""
    teacher_precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """The teacher's forward on the transfer set: fp32, or bf16/fp16 autocast (faster on GPUs and on CPUs with native
    bf16; its outputs are cached apart from fp32 ones). The teacher's own test score and the loyalty are always fp32."""
    general: bool = False
    """Task-agnostic distillation: no labels and no head; the student encoder matches the teacher's
    attention and value relations on unlabelled text and is saved for ``init_from``."""
    init_from: str | None = None
    """A general-distilled encoder directory (``distill --general``) to initialise the student from."""
    trust_remote_code: bool = False
    """Let a teacher whose config names its own Python code run it (off: such teachers are refused)."""
    train: StudentTrainConfig = StudentTrainConfig()

    @model_validator(mode="before")
    @classmethod
    def _one_member_is_a_plain_run(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("teachers"), list) and len(data["teachers"]) <= 1:
            data = dict(data)
            members = data.pop("teachers")
            if members and data.get("teacher") is None:
                data["teacher"] = members[0]
            elif members:
                raise ValueError("teacher and teachers both name the teacher; give several teachers in teachers only")
        return data

    @model_validator(mode="after")
    def _one_teacher_or_an_ensemble(self):
        if self.teachers is not None:
            if self.teacher is not None:
                raise ValueError("teacher and teachers both name the teacher; give several teachers in teachers only")
            if len({str(Path(t).expanduser().resolve()) for t in self.teachers}) != len(self.teachers):  # (t, ./t, /abs/t)
                raise ValueError("teachers lists the same directory twice; give each teacher once")
        n = len(self.teacher_dirs)
        if self.ensemble.weights is not None and n and len(self.ensemble.weights) != n:
            raise ValueError(f"ensemble.weights has {len(self.ensemble.weights)} weights for {n} teacher(s); "
                             "give one weight per teacher")
        if self.general and self.teachers:
            raise ValueError("general distillation reads one teacher; give a single --teacher")
        if n == 1 and self.ensemble != EnsembleConfig():
            raise ValueError("ensemble settings (--combine, --weighting, --teacher-weights) combine several teachers and do "
                             "nothing with one; give several --teacher or drop them")
        return self

    @property
    def teacher_dirs(self) -> list[str]:
        """The teacher run directories: the members of the ensemble, or the one teacher."""
        return list(self.teachers) if self.teachers else ([self.teacher] if self.teacher else [])

    @model_validator(mode="after")
    def _known_recipe(self):
        from kdexam.config.recipes import RECIPES

        if self.recipe is not None:
            if self.recipe not in RECIPES:
                raise ValueError(f"unknown recipe '{self.recipe}'; use one of: {', '.join(RECIPES)}")
            if self.stages:
                raise ValueError("recipe and stages both name the stages; keep one of them")
            if self.objectives is not None or self.matches:
                raise ValueError(f"recipe '{self.recipe}' brings its own objectives, which would replace the run's objectives "
                                 "and matches; remove them or the recipe")
            if self.general:
                raise ValueError("a recipe does not apply to general distillation; remove it or drop --general")
        return self

    @model_validator(mode="after")
    def _no_transfer_set_in_general_distillation(self):
        if self.general and self.transfer != TransferConfig():
            raise ValueError("transfer settings (unlabelled, augment, min_confidence) do not apply to general "
                             "distillation, which reads its unlabelled text from data; remove them or drop --general")
        return self

    @model_validator(mode="after")
    def _student_learning_rate(self):
        if "learning_rate" not in self.train.model_fields_set:
            self.train.learning_rate = student_learning_rate(self.student.kind)
        return self
