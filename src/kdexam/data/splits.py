"""A run's dataset: train / validation / test lists of :class:`~kdexam.data.readers.Example` and its task.

Sources, tried in this order for ``data.name``:

1. a built-in dataset name (prepared on first use, see :mod:`kdexam.data.builtin`);
2. a local file (CSV, TSV, JSONL/JSON, CoNLL) — used as the training split;
3. a local directory holding split files (``train.*``, ``validation.*``/``valid.*``/``dev.*``,
   ``test.*``) or a dataset saved with ``datasets.Dataset.save_to_disk``;
4. a Hugging Face dataset id (needs hub access).

The files are read by :mod:`kdexam.data.readers`. A missing validation split is
carved from train with a fixed seed, whatever the run's seed (stratified for
classification), so that a teacher and its students, and an exam's seeds, hold out the same
examples. The label vocabulary comes from train (all of it, before ``--max-train``); a label
in validation/test that train lacks is an error.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdexam.config import DataConfig
from kdexam.data.readers import KNOWN_EXTS, NO_LABEL_COLUMN, Example, read_directory, read_file, read_hf, read_lines
from kdexam.errors import KdexamError
from kdexam.evaluation.metrics import is_bio_scheme
from kdexam.tasks import Task

METRICS_BY_TASK = {
    "classification": ("accuracy", "macro_f1"),
    "token-classification": ("accuracy", "macro_f1", "span_f1", "span_precision", "span_recall"),
    "regression": ("pearson", "spearman", "mse"),
}


@dataclass
class DataSplits:
    name: str
    task: Task
    train: list[Example]
    validation: list[Example]
    test: list[Example] | None
    notes: list[str] = field(default_factory=list)
    held_out: list[Example] = field(default_factory=list)
    """Every validation and test example, before ``--max-eval`` cut them: what no training example
    may equal (:func:`kdexam.data.transfer.build_transfer_set`)."""

    def split(self, name: str) -> list[Example]:
        return getattr(self, name)

    @property
    def eval_split(self) -> str:
        """The split that final metrics are reported on: test, or validation when there is no test."""
        return "test" if self.test else "validation"


# ---------------------------------------------------------------------------- task


INFERRED_CLASSES = 20
"""Integer labels are classes when there are at most this many distinct values (or at most one per
ten examples): a 3-class or 12-intent file coded 0..N stays classification, a 0-100 score with few
repeats is regression."""


def infer_task(train: list[Example]) -> str:
    """Tagging when texts are word lists; regression when labels are non-integral numbers, or
    integers with more distinct values than :data:`INFERRED_CLASSES` and than a tenth of the examples."""
    if isinstance(train[0].text, list):
        return "token-classification"
    labels = [e.label for e in train]
    if all(isinstance(v, float) for v in labels):
        return "regression" if any(not float(v).is_integer() for v in labels) else "classification"
    try:
        values = [float(v) for v in labels]
    except (TypeError, ValueError):
        return "classification"
    integral = all(v.is_integer() for v in values)
    return "classification" if integral and len(set(values)) <= max(INFERRED_CLASSES, len(values) // 10) else "regression"


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _integral(value) -> bool:
    try:
        return float(value).is_integer()
    except (TypeError, ValueError):
        return False


CARVE_SEED = 42
"""The seed a missing validation split is carved with, whatever the run's seed."""


def _stratified_split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Carve ``fraction`` of ``examples`` off, per label where each label has ≥ 2 examples."""
    rng = random.Random(seed)
    groups: dict[str, list[Example]] = {}
    for e in examples:
        groups.setdefault(class_name(e.label), []).append(e)
    keep, carved = [], []
    for key in sorted(groups):
        g = groups[key][:]
        rng.shuffle(g)
        n = int(round(len(g) * fraction)) if len(g) >= 2 else 0
        carved += g[:n]
        keep += g[n:]
    rng.shuffle(keep)
    rng.shuffle(carved)
    return keep, carved


def check_dataset_name(name: str) -> None:
    """Refuse at once a ``--data`` that can be nothing: a path that does not exist, or a name
    close to a built-in one. Any other bare name may be a Hugging Face dataset, found or not
    when read (:func:`read_hf`)."""
    from kdexam.data.builtin import BUILTIN_DATASETS, closest_dataset

    path = Path(name).expanduser()
    if name in BUILTIN_DATASETS or path.exists():
        return
    if path.suffix.lower() in KNOWN_EXTS or "/" in name and path.parent.exists() or name.startswith((".", "~")):
        raise KdexamError(f"Data file '{name}' does not exist; check the path given to --data.")
    if close := closest_dataset(name):
        raise KdexamError(f"Dataset '{name}' is not a built-in dataset; did you mean '{close}'? ('kdexam data list' shows all.)")


def load_data(cfg: DataConfig, seed: int = 42) -> DataSplits:
    """Read, validate and split a dataset as ``cfg`` describes."""
    if not cfg.name:
        raise KdexamError("No dataset given; pass --data with a built-in name (see 'kdexam data list'), a file or a directory.")
    from kdexam.data.builtin import BUILTIN_DATASETS, prepare_dataset

    manifest: dict = {}
    path = Path(cfg.name).expanduser()
    check_dataset_name(cfg.name)
    if cfg.name in BUILTIN_DATASETS:
        splits, manifest = read_directory(prepare_dataset(cfg.name), cfg)
    elif path.is_file():
        splits = {"train": read_file(path, cfg)}
    elif path.is_dir():
        splits, manifest = read_directory(path, cfg)
    else:
        manifest = {"read_notes": []}
        splits = read_hf(cfg.name, cfg, notes=manifest["read_notes"])
    name = manifest.get("name") or (path.stem if path.exists() else cfg.name)

    train = splits["train"]
    kind = cfg.task or manifest.get("task") or infer_task(train)
    if kind == "unlabelled" or train[0].label is None:
        raise KdexamError(f"Dataset '{cfg.name}' has no labels (no column '{cfg.label_column}'); pass --label-column NAME, or use it as unlabelled transfer text.")
    if kind == "token-classification" and not isinstance(train[0].text, list):
        raise KdexamError(f"Dataset '{cfg.name}' is not in CoNLL form but the task is token-classification; give a .conll file (token<TAB>tag lines).")
    if kind != "token-classification" and isinstance(train[0].text, list):
        raise KdexamError(f"Dataset '{cfg.name}' is CoNLL (tagged words) but the task is {kind}; use --task token-classification.")

    check_splits_match(splits, cfg)
    notes = list(manifest.get("read_notes", []))
    if not (cfg.task or manifest.get("task")) and kind == "regression" and all(_integral(e.label) for e in train):
        notes.append(f"task inferred as regression: the {len({str(e.label) for e in train})} integer labels are too many "
                     "for the training examples to be classes; pass --task classification if they are")
    if "validation" not in splits:
        stratify = kind == "classification"
        if stratify:
            train, val = _stratified_split(train, cfg.validation_fraction, CARVE_SEED)
        else:
            shuffled = train[:]
            random.Random(CARVE_SEED).shuffle(shuffled)
            n = int(round(len(shuffled) * cfg.validation_fraction))
            val, train = shuffled[:n], shuffled[n:]
            if kind == "token-classification":  # a tag only carved sentences hold goes back to train, with them
                seen = {t for e in train for t in e.label}
                back = []
                for e in val:
                    if not seen.issuperset(e.label):
                        back.append(e)
                        seen.update(e.label)
                moved = {id(e) for e in back}
                val, train = [e for e in val if id(e) not in moved], train + back
        labels = {str(e.label) for e in splits["train"]}
        if not val and stratify and len(labels) * 2 > len(splits["train"]):
            numbers = all(_is_number(label) for label in labels)
            raise KdexamError(f"Dataset '{cfg.name}' is read as classification, but nearly every example has a label of its own "
                              f"({len(labels)} labels in {len(splits['train'])} examples), so no validation split can be carved "
                              "by class; " + ("are they regression targets? Then use --task regression (and a regression "
                                              "teacher), or give a validation file." if numbers else
                                              "check that --label-column names the label column."))
        if not val:
            raise KdexamError(f"Dataset '{cfg.name}' is too small to carve a validation split; add a validation file.")
        splits["validation"] = val
        notes.append(f"validation carved from train ({len(val)} examples, seed {CARVE_SEED}{', stratified' if stratify else ''})")

    # Fix the label types, then the seeded shuffle and --max-train / --max-eval.
    type_labels(splits, kind, cfg.name)
    full_train = train
    train = train[:]
    random.Random(seed).shuffle(train)
    if cfg.max_train:
        train = train[: cfg.max_train]
    val, test = splits["validation"], splits.get("test")
    held_out = val + (test or [])
    if cfg.max_eval:
        val = val[: cfg.max_eval]
        test = test[: cfg.max_eval] if test else test

    if kind == "regression":
        for split, examples in (("validation", val), ("test", test or [])):
            if examples and len({e.label for e in examples}) == 1:
                notes.append(f"the {split} split holds {len(examples)} example(s) with one target value: Pearson's and "
                             "Spearman's r are undefined (NaN) on it, so they neither choose a checkpoint nor score a "
                             "model there; give more examples (--max-eval) or --set data.primary_metric=mse")
    labels = None
    if kind != "regression":
        counts = Counter(t for e in full_train for t in (e.label if isinstance(e.label, list) else [e.label]))
        labels = sorted(counts)
        if kind == "classification" and len(labels) < 2:
            raise KdexamError(f"Dataset '{cfg.name}' has only one label in train ({labels[0]!r}); a classifier needs at least two.")
        known = set(labels)
        for split, examples in (("validation", val), ("test", test or [])):
            for e in examples:
                for t in e.label if isinstance(e.label, list) else [e.label]:
                    if t not in known:
                        raise KdexamError(
                            f"Label {t!r} appears in the {split} split of '{cfg.name}' but never in train; "
                            "add training examples with it or remove it from that split."
                        )
    has_pair = train[0].text_pair is not None
    task = Task(kind, labels, has_pair, cfg.primary_metric or manifest.get("primary_metric") or "", name)
    valid_metrics = METRICS_BY_TASK[kind]
    if task.primary_metric not in valid_metrics:
        raise KdexamError(f"Primary metric '{task.primary_metric}' does not exist for {kind}; choose one of: {', '.join(valid_metrics)}.")
    if task.primary_metric.startswith("span_") and not is_bio_scheme(labels or []):
        raise KdexamError(f"Primary metric '{task.primary_metric}' scores entity spans, but the tags of '{cfg.name}' are not "
                          "BIO/BIOES/BILOU (B-X, I-X, …, O); choose accuracy or macro_f1.")
    return DataSplits(name, task, train, val, test, notes, held_out)


def check_splits_match(splits: dict[str, list[Example]], cfg: DataConfig) -> None:
    """Validation and test must be read like train: labelled, and with a second text exactly when
    train has one (a pair missing from one split would otherwise crash the tokenizer, or let a
    training row equal to a held-out one slip past the leakage check)."""
    train = splits["train"]
    pair = train[0].text_pair is not None
    if any((e.text_pair is not None) != pair for e in train):
        raise KdexamError(f"The train split of '{cfg.name}' has a second text (text_pair) in some rows and not in others; "
                          "give every row its second text, or none.")
    for split, examples in splits.items():
        if split == "train" or not examples:
            continue
        missing = next((e for e in examples if e.label is None), None)
        if missing is not None:
            raise KdexamError(f"The {split} split of '{cfg.name}' has {'no' if examples[0].label is None else 'a missing'} "
                              f"label (column '{cfg.label_column}'); label every {split} example or remove that file.")
        if any((e.text_pair is not None) != pair for e in examples):
            has, lacks = ("train", split) if pair else (split, "train")
            raise KdexamError(f"The {has} split of '{cfg.name}' has a second text (text pair) and the {lacks} split does "
                              "not; give every split the same text columns (--text-pair-column).")


def type_labels(splits: dict[str, list[Example]], kind: str, name) -> None:
    """Labels as the task reads them, in place: class names as strings, regression targets as
    finite floats that vary (:func:`check_targets`); tag lists stay as they are."""
    labels = [e.label for examples in splits.values() for e in examples]
    mixed = (any(isinstance(v, int) and not isinstance(v, bool) for v in labels)  # 1 and 1.0 in one dataset: one class
             and any(isinstance(v, float) and v.is_integer() for v in labels))
    spellings: dict[str, dict[str, str]] = {}  # a label's key -> its class names, as the data spells each
    for split, examples in splits.items():
        for i, e in enumerate(examples):
            if kind == "token-classification" and isinstance(e.text, list) and len(e.text) != len(e.label or []):
                raise KdexamError(f"Dataset '{name}' {split} example {i + 1} has {len(e.text)} words and {len(e.label or [])} "
                                  "tags; give every word one tag, or remove that example.")
            if kind == "classification" and not isinstance(e.label, (list, dict)):
                named = class_name(e.label, mixed)
                shown = f"{str(e.label).lower()} (a JSON boolean)" if isinstance(e.label, bool) else repr(named)
                spellings.setdefault(spelling_key(e.label), {})[named] = shown
            if kind == "regression":
                try:
                    e.label = float(e.label)
                except (TypeError, ValueError):
                    raise KdexamError(f"Dataset '{name}' {split} has label {e.label!r}, which is not a number, but the task is regression; check --label-column or --task.") from None
            elif kind == "classification":
                if isinstance(e.label, (list, dict)):
                    raise KdexamError(f"Dataset '{name}' {split} has label {e.label!r}, which is not a class name; tagged "
                                      "words and their tags go in a CoNLL file (token<TAB>tag lines).")
                e.label = class_name(e.label, mixed)
    if kind == "regression":
        check_targets(splits, name)
    if twice := next((sorted(names.values()) for names in spellings.values() if len(names) > 1), None):
        raise KdexamError(f"Dataset '{name}' spells one label {len(twice)} ways ({', '.join(twice)}), which would be "
                          f"{len(twice)} classes; write it one way in every file.")


def spelling_key(label: Any) -> str:
    """What one class label spelled several ways shares: its text without surrounding spaces, its
    value for a number (``1``, ``1.0``, ``"1.0"``), lower case for a JSON ``true``/``false``."""
    if isinstance(label, bool):
        return str(label).lower()
    text = str(label).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(number) if math.isfinite(number) else text


def class_name(label: Any, integral_floats: bool = False) -> str:
    """A class label as a string (``str``, as runs before have named their classes);
    ``integral_floats``: a ``1.0`` is the class ``1`` (for data that spells one class both ways,
    JSON ``1`` and ``1.0``, which were two classes)."""
    if integral_floats and isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def check_targets(splits: dict[str, list[Example]], name) -> None:
    """Regression targets must be finite numbers that vary within each split: a NaN or infinite
    target poisons the loss, and constant targets leave nothing to learn and Pearson undefined."""
    for split, examples in splits.items():
        for i, e in enumerate(examples):
            if not math.isfinite(e.label):
                raise KdexamError(f"Dataset '{name}' {split} example {i + 1} has target {e.label!r}; regression targets must "
                                  "be finite numbers: fix or drop that row.")
        if len(examples) > 1 and len({e.label for e in examples}) == 1:
            raise KdexamError(f"Every target of the {split} split of '{name}' is {examples[0].label!r}; a regression "
                              "split needs targets that vary (check --label-column).")


def load_texts(cfg: DataConfig, seed: int = 42, default: str = "movie-dialog") -> tuple[list[Example], list[Example], str]:
    """Unlabelled text for task-agnostic distillation: ``(train, validation, name)``.

    ``cfg.name``: a built-in dataset (default ``movie-dialog``; of a labelled built-in only its
    train split is read), a ``.txt`` file (one text per line), a data file or a directory (its
    text column; labels are ignored). Texts are deduplicated and shuffled (seeded); a
    validation share (``validation_fraction``, at most 1,000 texts) is held out, then
    ``max_train`` applies."""
    from kdexam.data.builtin import BUILTIN_DATASETS, prepare_dataset

    name = cfg.name or default
    path = Path(name).expanduser()
    cfg = cfg.model_copy(update={"label_column": NO_LABEL_COLUMN})
    if name in BUILTIN_DATASETS:
        examples = read_directory(prepare_dataset(name), cfg)[0]["train"]
    elif path.is_file() and path.suffix.lower() == ".txt":
        examples = [Example(line.strip()) for line in read_lines(path) if line.strip()]
    elif path.is_file():
        examples = read_file(path, cfg)
    elif path.is_dir():
        examples = read_directory(path, cfg)[0]["train"]
    else:
        raise KdexamError(f"Text source '{name}' is neither a built-in dataset nor an existing file or directory; check --data.")
    seen, texts = set(), []
    for e in examples:
        text = " ".join(e.text) if isinstance(e.text, list) else e.text
        if text not in seen:
            seen.add(text)
            texts.append(Example(text, e.text_pair))
    if len(texts) < 2:
        raise KdexamError(f"Text source '{name}' holds {len(texts)} distinct text(s); general distillation needs many.")
    random.Random(seed).shuffle(texts)
    n_val = min(1000, max(1, int(round(len(texts) * cfg.validation_fraction))))
    validation, train = texts[:n_val], texts[n_val:]
    if cfg.max_train:
        train = train[: cfg.max_train]
    if cfg.max_eval:
        validation = validation[: cfg.max_eval]
    return train, validation, path.stem if path.exists() else name
