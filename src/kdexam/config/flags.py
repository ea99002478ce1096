"""Flags of ``kdexam teacher`` and ``kdexam distill``, declared once, and how they become a config.

Each :class:`Flag` is at the same time a keyword of :func:`kdexam.api.teacher_config` /
:func:`kdexam.api.distill_config` (and of ``api.finetune_teacher`` / ``api.distill``) and a
command-line option: :mod:`kdexam.cli` builds the typer options from these tables. A new flag is
one line in a table below (plus the config field it sets).

Precedence, lowest first: the config file (``--config``), then ``--set key=value`` (any config
key, in the order given), then the explicit flags. A ``--set`` or flag sets the value at its
dotted key as a whole (a mapping value replaces the whole section).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml
from pydantic import BaseModel

from kdexam.config.loading import build_config, load_config
from kdexam.config.runs import default_rate_follows_the_student
from kdexam.errors import KdexamError, UnknownArguments
from kdexam.paths import load_yaml


@dataclass(frozen=True)
class Flag:
    """One flag: the api keyword ``name`` and the command-line option ``--name-with-dashes``."""

    name: str
    """Keyword of the api; the option is ``--`` + name with dashes unless ``option`` says otherwise."""
    path: str
    """Dotted config key it sets (e.g. ``data.text_column``)."""
    type: type = str
    """Command-line value type; ``bool``: a switch (``--name/--no-name``, or ``option`` such as ``--on/--off``)."""
    help: str | None = None
    """Help text; ``{default}`` is filled with the config's default. When omitted: the config
    field's docstring, with its default."""
    option: str | None = None
    """Command-line spelling(s) when not ``--name-with-dashes``: ``--lr``, ``--cache-teacher/--online-teacher``."""
    multiple: bool = False
    """Repeatable; the values form a list."""
    convert: Callable[[Any], Any] | None = None
    """Turns the given value (a command-line string, or what the api was passed) into the config value."""
    metavar: str | None = None

    @property
    def options(self) -> tuple[str, ...]:
        """A switch gets its negative (``--crf/--no-crf``), so the line can undo a config file's ``true``."""
        if self.option:
            return (self.option,)
        name = self.name.replace("_", "-")
        return (f"--{name}/--no-{name}",) if self.type is bool else ("--" + name,)

    def value(self, given: Any) -> Any:
        """The config value for what was given on the command line or to the api."""
        if isinstance(given, Path):
            given = str(given)
        if self.multiple:
            items = [str(v) if isinstance(v, Path) else v for v in (given if isinstance(given, (list, tuple)) else [given])]
            return [self.convert(v) if self.convert else v for v in items]
        return self.convert(given) if self.convert else given

    def describe(self, model: type[BaseModel]) -> str:
        """The help text for a command whose config is ``model``."""
        default = _field_default(model, self.path)
        if self.help is None:
            text = _field_doc(model, self.path) or self.path
            if default is not None and not isinstance(default, (bool, BaseModel, list, dict)):
                text = f"{text.rstrip('.')} (default {default})."
            return text
        return self.help.replace("{default}", str(default))


def _field(model: type[BaseModel], dotted: str):
    """``(model, field name)`` of a dotted config key."""
    from kdexam.config.loading import _submodel

    keys = dotted.split(".")
    for key in keys[:-1]:
        model = _submodel(model.model_fields[key].annotation)
    return model, keys[-1]


def _field_default(model: type[BaseModel], dotted: str) -> Any:
    owner, key = _field(model, dotted)
    return owner.model_fields[key].get_default(call_default_factory=True)


def _field_doc(model: type[BaseModel], dotted: str) -> str | None:
    owner, key = _field(model, dotted)
    doc = owner.model_fields[key].description
    if doc is None:
        try:  # attribute docstrings of models without ``use_attribute_docstrings``
            from pydantic._internal._docs_extraction import extract_docstrings_from_cls

            doc = extract_docstrings_from_cls(owner, use_inspect=True).get(key)
        except Exception:  # pragma: no cover - pydantic internals moved
            doc = None
    return " ".join(doc.replace("``", "'").split()) if doc else None


# --- parsing of composite values --------------------------------------------------------------

_CLOSE = {"[": "]", "{": "}", "(": ")"}


def split_top_level(text: str, what: str) -> list[str]:
    """Split ``text`` on commas outside brackets and quotes: ``a=1,b=[2,3]`` -> ``['a=1', 'b=[2,3]']``."""
    parts, depth, quote, start = [], [], None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in _CLOSE:
            depth.append(_CLOSE[ch])
        elif ch in _CLOSE.values():
            if not depth or depth.pop() != ch:
                raise KdexamError(f"{what} has an unmatched '{ch}'; check its brackets.")
        elif ch == "," and not depth:
            parts.append(text[start:i])
            start = i + 1
    if quote:
        raise KdexamError(f"{what} has an unclosed {quote} quote; close it.")
    if depth:
        raise KdexamError(f"{what} lacks a closing '{depth[-1]}'; check its brackets.")
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _yaml_value(text: str, what: str) -> Any:
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        raise KdexamError(f"{what}: '{text}' is not a valid YAML value; quote it or fix its brackets.") from None


def parse_pairs(text: str, what: str, example: str) -> dict[str, Any]:
    """``key=value,key=value`` (values read as YAML, commas inside brackets kept) -> a dict."""
    out: dict[str, Any] = {}
    for part in split_top_level(text, what):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise KdexamError(f"{what}: '{part}' is not key=value; write e.g. {example}.")
        if key in out:
            raise KdexamError(f"{what} gives '{key}' twice; give each key once.")
        out[key] = _yaml_value(value.strip(), f"{what}, key '{key}'")
    return out


def parse_objective(spec: Any) -> Any:
    """``name[:key=value,...]`` -> ``{"name": name, key: value, ...}`` (an ``objectives`` entry);
    a mapping is taken as it is. E.g. ``kl:temperature=2,weight=0.5``, ``hidden_mse:layers=[[6,2],[3,1]]``."""
    if not isinstance(spec, str):
        return spec
    example = "--objective kl:temperature=2,weight=0.5"
    name, _, params = spec.partition(":")
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z_][\w\-]*", name):
        raise KdexamError(f"--objective '{spec}' must start with the objective's name, then ':' and key=value "
                          f"parameters; e.g. {example}.")
    entry = parse_pairs(params, f"--objective '{spec}'", example)
    if "name" in entry:
        raise KdexamError(f"--objective '{spec}' names the objective twice; put the name before ':' only.")
    return {"name": name, **entry}


def parse_match(spec: Any) -> Any:
    """``teacher_layer=6,student_layer=2,feature=hidden,loss=mse`` -> a ``matches`` entry; a mapping as it is."""
    if not isinstance(spec, str):
        return spec
    example = "--match teacher_layer=6,student_layer=2,feature=hidden,loss=mse"
    entry = parse_pairs(spec, f"--match '{spec}'", example)
    if not entry:
        raise KdexamError(f"--match '{spec}' is empty; write e.g. {example}.")
    return entry


def parse_layers(spec: Any) -> Any:
    """``lower`` | ``upper`` | ``uniform`` | ``random`` | ``i,j,...`` (a list of layer indices)."""
    if not isinstance(spec, str):
        return list(spec) if isinstance(spec, tuple) else spec
    if spec.strip() in ("lower", "upper", "uniform", "random"):
        return spec.strip()
    try:
        return [int(i) for i in spec.replace("[", "").replace("]", "").split(",") if i.strip()]
    except ValueError:
        raise KdexamError(f"--layers '{spec}' is neither lower, upper, uniform, random nor a comma-separated list of "
                          "layer indices; e.g. --layers 0,5.") from None


def parse_list(spec: Any, flag: str) -> list[str]:
    """``a,b`` -> ``["a", "b"]``; a list as it is."""
    if not isinstance(spec, str):
        return list(spec)
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise KdexamError(f"{flag} '{spec}' names nothing; give comma-separated names, e.g. {flag} mask,ngram.")
    return items


def parse_set(item: str) -> tuple[str, Any]:
    """``a.b=value`` -> ``("a.b", value)``, the value read as YAML (:func:`kdexam.paths.load_yaml`)."""
    key, sep, value = str(item).partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[\w\-]+(\.[\w\-]+)*", key):
        raise KdexamError(f"--set '{item}' is not of the form key=value with a dotted config key; "
                          "write e.g. --set train.warmup_ratio=0.2.")
    return key, _yaml_value(value.strip(), f"--set '{item}'")


# --- the tables -------------------------------------------------------------------------------

DATA_FLAGS = (
    Flag("data", "data.name", help="Built-in dataset name, data file or directory, or HF dataset id."),
    Flag("task", "data.task", help="classification | token-classification | regression (inferred when omitted)."),
    Flag("text_column", "data.text_column", help="Column of the text (default '{default}')."),
    Flag("text_pair_column", "data.text_pair_column", help="Column of the second text of a pair."),
    Flag("label_column", "data.label_column", help="Column of the label (default '{default}')."),
    Flag("max_train", "data.max_train", int, help="Use only the first N training examples after the seeded shuffle."),
    Flag("max_eval", "data.max_eval", int, help="Use only the first N validation and test examples."),
    Flag("max_length", "data.max_length", int, help="Longest input in subword tokens (default {default})."),
)
RUN_FLAGS = (
    Flag("out", "out", help="Run directory to write."),
    Flag("seed", "seed", int, help="Random seed (data shuffle, initialisation, batches). Default {default}."),
    Flag("trust_remote_code", "trust_remote_code", bool,
         help="Run the Python code a model's config names (auto_map); off by default, as that code runs with your rights."),
)
TRAIN_FLAGS = (
    Flag("epochs", "train.epochs", int, help="Training epochs (default {default}; early stopping may end sooner)."),
    Flag("batch_size", "train.batch_size", int, help="Training batch size (default {default})."),
    Flag("learning_rate", "train.learning_rate", float, option="--lr", help="Peak learning rate (default {default})."),
    Flag("patience", "train.patience", int, help="Evaluations without improvement before stopping (default {default})."),
    Flag("evals_per_epoch", "train.evals_per_epoch", int, help="Validation evaluations per epoch (default {default})."),
    Flag("num_threads", "train.num_threads", int, help="CPU threads for PyTorch."),
    Flag("ema_decay", "train.ema_decay", float, option="--ema",
         help="Evaluate, select and save a moving average of the weights with this decay (e.g. 0.999); off by default."),
    Flag("mixed_precision", "train.mixed_precision",
         help="auto | no | fp16 | bf16 (default auto: none (fp32) for students, on a GPU too, where bf16 was slower for "
              "every student kind on an H200 at batch 32 (ask bf16 for large students or batches); bf16, else fp16, on a "
              "GPU for teacher fine-tuning; none on CPU. bf16 on a CPU autocasts there too, faster where the CPU has "
              "native bf16, e.g. AVX512-BF16 or AMX)."),
)

TEACHER_FLAGS: dict[str, Flag] = {f.name: f for f in (
    *DATA_FLAGS,
    Flag("model", "model", help="Built-in model name, local model directory, or hub id. Default {default}."),
    *RUN_FLAGS, *TRAIN_FLAGS,
)}
"""``kdexam teacher`` flags = keywords of :func:`teacher_config`."""

DISTILL_FLAGS: dict[str, Flag] = {f.name: f for f in (
    Flag("teacher", "teachers", multiple=True, metavar="DIR",
         help="Teacher run directory written by 'kdexam teacher'; repeat it to distil an ensemble of teachers "
              "(each tokenizes the text itself; see --combine, --weighting). With --general: any encoder (a folder, "
              "a hub id or a built-in model name)."),
    Flag("combine", "ensemble.combine", help="Several teachers: average their probabilities (probs, default) or logits."),
    Flag("weighting", "ensemble.weighting",
         help="Several teachers: member weights equal (default) | fixed (--teacher-weights) | validation (each member's "
              "validation score) | confidence (per example, each member's largest probability)."),
    Flag("teacher_weights", "ensemble.weights", convert=lambda s: parse_list(s, "--teacher-weights"), metavar="W,W",
         help="Several teachers: fixed weights, one per --teacher in order, e.g. 0.7,0.3 (implies --weighting fixed)."),
    replace(DATA_FLAGS[0], help="Built-in dataset name, data file or directory, or HF dataset id "
                                "(default: the data (and columns) the teacher was trained on)."),
    *DATA_FLAGS[1:],
    Flag("student", "student.kind", help="bilstm | cnn | static | bert-tiny | bert-mini | bert-small | bert-medium | teacher-layers:K."),
    *RUN_FLAGS, *TRAIN_FLAGS,
    Flag("embeddings", "student.embeddings", help="bilstm/cnn/static inputs: teacher | glove | random | model2vec | contextual "
                                                     "(default: model2vec for static, teacher otherwise)."),
    Flag("vectors_file", "student.vectors_file", help="word2vec/GloVe text file for --embeddings glove."),
    Flag("embedding_dim", "student.embedding_dim", int, help="bilstm/cnn/static embedding width (PCA of the teacher's when smaller)."),
    Flag("hidden_size", "student.hidden_size", int, help="bilstm hidden size per direction (default 300); static: MLP head width "
                                                               "(default: a linear head)."),
    Flag("min_token_count", "student.min_token_count", int,
         help="bilstm/cnn/static: keep only tokens the training texts use at least N times (default 1); rarer ones read [UNK]."),
    Flag("token_weights", "student.token_weights", bool, help="static: learn a weight per vocabulary token in the mean."),
    Flag("ngram_buckets", "student.ngram_buckets", int, help="static: hashed bigram buckets added to the token vectors (default 0: none; 65536 measured best, docs/benchmarks.md)."),
    Flag("pooling", "student.pooling", help="Sequence pooling: bilstm max | mean | attention (default max); static mean | max | "
                                                  "mean-max (default mean)."),
    Flag("pair_mode", "student.pair_mode", help="bilstm/cnn text pairs: concat (one sequence) | siamese (two encoded "
                                                "sides, [u; v; |u-v|; u*v]). Default concat."),
    Flag("crf", "student.crf", bool, help="bilstm tagging: add a CRF layer (Viterbi decoding)."),
    Flag("layers", "student.layers", convert=parse_layers,
         help="teacher-layers:K: which teacher layers to keep: lower, upper, uniform (first and last included; "
              "default), comma-separated indices counted from 0 (0 is the teacher's first Transformer layer), or random "
              "(the teacher's shape with K layers, random weights)."),
    Flag("recipe", "recipe", help="A named staged recipe: xtremedistil (representation, then logits with gradual "
                                  "unfreezing, then gold; Mukherjee & Awadallah 2020). Default: one stage, KL + gold."),
    Flag("general", "general", bool),
    Flag("init_from", "init_from", metavar="DIR"),
    Flag("objective", "objectives", multiple=True, convert=parse_objective, metavar="SPEC",
         help="A loss term, repeatable: name[:key=value,...], values as YAML, e.g. --objective kl:temperature=2,weight=0.5 "
              "--objective gold:weight=0.5 --objective hidden_mse:layers=uniform,weight=1 (replaces the default objectives)."),
    Flag("match", "matches", multiple=True, convert=parse_match, metavar="SPEC",
         help="A teacher/student layer match, repeatable: teacher_layer=6,student_layer=2,feature=hidden,loss=mse[,weight=1]."),
    Flag("cache_teacher", "cache_teacher", bool, option="--cache-teacher/--online-teacher",
         help="Reuse cached teacher outputs (default), or run the teacher on every batch (for benchmarks)."),
    Flag("cache_budget_gb", "cache_budget_gb", float),
    Flag("teacher_precision", "teacher_precision",
         help="fp32 | bf16 | fp16: the teacher's forward on the transfer set (default fp32; bf16 labels it faster on GPUs "
              "and on CPUs with native bf16; cached apart; the teacher's test score stays fp32)."),
    Flag("unlabelled", "transfer.unlabelled", multiple=True, metavar="FILE_OR_NAME",
         help="Unlabelled text for the transfer set, repeatable: a built-in dataset (movie-dialog, sentiment-snippets), "
              "a .txt file (one text per line) or a CSV/TSV/JSONL file; the teacher labels it."),
    Flag("unlabelled_column", "transfer.unlabelled_column", help="Text column of an unlabelled CSV/JSONL file (default: --text-column)."),
    Flag("max_unlabelled", "transfer.max_unlabelled", int, help="Use only N texts of each unlabelled source (a fixed sample)."),
    Flag("augment", "transfer.augment", convert=lambda s: parse_list(s, "--augment"), metavar="METHODS",
         help="Augment the labelled examples: comma-separated mask, neighbours, ngram, mlm; the teacher labels the copies."),
    Flag("augment_n", "transfer.augment_n", int, help="New examples per labelled example and method (default 1)."),
    Flag("augment_p", "transfer.augment_p", float, help="Per-word probability for mask/neighbours/mlm (default: each method's)."),
    Flag("augment_vectors", "transfer.augment_vectors", metavar="FILE",
         help="word2vec/GloVe text file for neighbours (default: the teacher's input embeddings)."),
    Flag("augment_mlm_model", "transfer.augment_mlm_model", metavar="DIR", help="Masked-LM model directory for mlm."),
    Flag("min_confidence", "transfer.min_confidence", float, metavar="P",
         help="Keep only teacher-labelled rows whose teacher confidence (max probability) is at least P."),
)}
"""``kdexam distill`` flags = keywords of :func:`distill_config`: the teacher's data, run and
training flags (not ``model``), and the student's and distillation's own."""
DISTILL_FLAGS["learning_rate"] = replace(DISTILL_FLAGS["learning_rate"], help="Peak learning rate (default per student kind).")


def keywords_of_options(unknown: list[str], table: Mapping[str, Flag]) -> str:
    """`` (--lr is learning_rate)``: the keywords of the unknown names that are an option's name."""
    said = []
    for flag in table.values():
        for i, option in enumerate((flag.option or "").split("/")):  # ``--on/--off``: the second is the switch's False
            name = option.strip().lstrip("-").replace("-", "_")
            if name in unknown and name != flag.name:
                said.append(f"{option.strip()} is {flag.name}{'=False' if i else ''}")
    return f" ({'; '.join(said)})" if said else ""


def _put(overrides: dict[str, Any], key: str, value: Any) -> None:
    overrides.pop(key, None)  # a key given again moves to the end: the last one wins
    overrides[key] = value


def _overrides(flags: dict[str, Any], table: Mapping[str, Flag], sets: Any = None) -> dict[str, Any]:
    """Dotted overrides in the order they apply: ``--set`` entries, then the explicit flags (``None``: not given)."""
    unknown = sorted(k for k in flags if k not in table)
    if unknown:
        raise UnknownArguments(unknown, keywords_of_options(unknown, table))
    out: dict[str, Any] = {}
    if isinstance(sets, Mapping):
        pairs: Iterable[tuple[str, Any]] = sets.items()
    elif sets is None or isinstance(sets, (str, list, tuple)):
        pairs = [parse_set(s) for s in ([sets] if isinstance(sets, str) else sets or [])]
    else:
        raise KdexamError(f"set={sets!r} is neither a mapping of config keys nor a list of 'key=value' strings; "
                          "give e.g. set={'train.epochs': 2} or set=['train.epochs=2'].")
    for key, value in pairs:
        _put(out, key, value)
    for name, given in flags.items():
        if given is not None and not (table[name].multiple and isinstance(given, (list, tuple)) and not given):
            _put(out, table[name].path, table[name].value(given))
    return out


def _resolve(model: type[BaseModel], config: str | Path | None, overrides: dict[str, Any]):
    """The config file with ``overrides`` (dotted keys) applied in order, validated with the closest-key
    check; unlike :func:`~kdexam.config.load_config` a ``None`` value (``--set key=null``) sets null."""
    raw: Any = {}
    if config is not None:
        try:
            raw = load_yaml(Path(config).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            raw = None
        if not isinstance(raw, dict):
            load_config(model, config)  # raises the sentence for a missing, unreadable or non-mapping file
        if "student" in model.model_fields:
            raw = default_rate_follows_the_student(raw, overrides)
    return build_config(model, raw, overrides, set_nulls=True)


def _no_flags_with_a_config(config: Any, model: type[BaseModel], flags: dict) -> None:
    """Flags beside a resolved config object would be dropped without a word: refuse them."""
    if isinstance(config, model) and flags:
        raise KdexamError(f"Got a {model.__name__} and flags ({', '.join(sorted(flags))}); put them in the config "
                          "(config.model_copy(update=...)), or pass the YAML path or no config with the flags.")
