"""Read a dataset into train / validation / test lists of :class:`Example`.

Sources, tried in this order for ``data.name``:

1. a built-in dataset name (prepared on first use, see :mod:`kdexam.data.builtin`);
2. a local file (CSV, TSV, JSONL/JSON, CoNLL) — used as the training split;
3. a local directory holding split files (``train.*``, ``validation.*``/``valid.*``/``dev.*``,
   ``test.*``) or a dataset saved with ``datasets.Dataset.save_to_disk``;
4. a Hugging Face dataset id (needs hub access).

Local files are read with the standard library so that every error can name the
file and line; HF datasets go through ``datasets``. A missing validation split is
carved from train with a fixed seed, whatever the run's seed (stratified for
classification), so that a teacher and its students, and an exam's seeds, hold out the same
examples. The label vocabulary comes from train (all of it, before ``--max-train``); a label
in validation/test that train lacks is an error.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdexam.config import DataConfig
from kdexam.errors import KdexamError
from kdexam.evaluation.metrics import is_bio_scheme
from kdexam.tasks import Task

SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}
TABLE_EXTS = {".csv": ",", ".tsv": "\t"}
JSON_EXTS = {".jsonl", ".json", ".ndjson"}
CONLL_EXTS = {".conll", ".conllu", ".bio", ".iob", ".txt"}
KNOWN_EXTS = set(TABLE_EXTS) | JSON_EXTS | CONLL_EXTS
METRICS_BY_TASK = {
    "classification": ("accuracy", "macro_f1"),
    "token-classification": ("accuracy", "macro_f1", "span_f1", "span_precision", "span_recall"),
    "regression": ("pearson", "spearman", "mse"),
}


@dataclass
class Example:
    """One example: ``text`` is a string, or a list of words for tagging; ``label`` is a
    class name, a float, a list of tags, or ``None`` for unlabelled text."""

    text: str | list[str]
    text_pair: str | None = None
    label: Any = None


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


# ---------------------------------------------------------------------------- files


def read_text(path: Path) -> str:
    """A UTF-8 text file with its line ends made ``\\n`` (a BOM is dropped); unreadable files are
    one-sentence errors."""
    try:
        return path.read_text(encoding="utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as e:
        raise KdexamError(f"File '{path}' is not valid UTF-8 (byte {e.start}); re-save it with UTF-8 encoding.") from None
    except OSError as e:
        raise KdexamError(f"File '{path}' cannot be read ({e.strerror}); check the path and its permissions.") from None


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, split at line ends only: ``str.splitlines`` would also split
    at U+2028, U+0085 or a form feed inside a text."""
    lines = read_text(path).split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def check_encodable(value: str, path: Path, where: str) -> None:
    """A text must be valid Unicode: a JSON escape of half a surrogate pair (``"\\ud83d"``, a cut emoji)
    reads as a lone surrogate, which no tokenizer or cache key can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise KdexamError(f"File '{path}' {where} holds half of a UTF-16 surrogate pair (a cut-off emoji escape such as "
                          "\\ud83d); remove it or give the whole character.") from None


def _column(row: dict, column: str, path: Path, where: str, flag: str) -> Any:
    if column not in row:
        cols = ", ".join(map(str, row))
        close = difflib.get_close_matches(column, list(map(str, row)), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        name = flag if flag.endswith("NAME") else f"{flag} NAME"
        raise KdexamError(f"File '{path}' has no column '{column}' (it has: {cols}); pass {name}.{hint}")
    return row[column]


def _rows_to_examples(rows: list[tuple[str, dict]], path: Path, cfg: DataConfig,
                      text_flag: str = "--text-column") -> list[Example]:
    """Turn table/JSON rows into examples; ``rows`` carries a location string for errors, and
    ``text_flag`` is the option that names the text column (for the error when it is missing).
    A ``text_pair`` (or label) key in any row is read from every row that has it: JSON objects need
    not all have the same keys, and a pair in row 2 onwards was dropped without a word (a split
    whose rows disagree is refused by :func:`check_splits_match`)."""
    if not rows:
        return []
    pair_col = cfg.text_pair_column or ("text_pair" if any("text_pair" in r for _, r in rows) else None)
    has_label = any(cfg.label_column in r for _, r in rows)
    out = []
    for where, row in rows:
        text = _column(row, cfg.text_column, path, where, text_flag)
        for name, value in ((cfg.text_column, text), (pair_col, row.get(pair_col) if pair_col else None)):
            if value is not None and not isinstance(value, str):  # (predict refuses them too)
                raise KdexamError(f"File '{path}' {where} has a '{name}' that is not text ({type(value).__name__}); give "
                                  "strings (tagged words go in a CoNLL file).")
        if text is None or not str(text).strip():
            raise KdexamError(f"File '{path}' {where} has an empty text; remove that row or fill it in.")
        check_encodable(str(text), path, where)
        pair = None
        if pair_col and (cfg.text_pair_column or pair_col in row):  # (a split mixing both is refused by check_splits_match)
            pair = _column(row, pair_col, path, where, "--text-pair-column")
            if pair is None or not str(pair).strip():
                raise KdexamError(f"File '{path}' {where} has an empty '{pair_col}'; remove that row or fill it in.")
            pair = str(pair)
            check_encodable(pair, path, where)
        label = row.get(cfg.label_column) if has_label else None
        if has_label and cfg.label_column not in row:
            raise KdexamError(f"File '{path}' {where} has no '{cfg.label_column}' where other rows have one; label every row "
                              "or none (unlabelled text goes to --unlabelled).")
        if has_label and (label is None or (isinstance(label, str) and not label.strip())):
            raise KdexamError(f"File '{path}' {where} has no value in label column '{cfg.label_column}'; fill it in or drop the row.")
        out.append(Example(str(text), pair, label))
    return out


def read_table(path: Path, cfg: DataConfig, delimiter: str, text_flag: str = "--text-column") -> list[Example]:
    """CSV or TSV with a header row; a quoted field may span lines (RFC 4180). Quoting is read
    strictly: a quote that opens a field must close it, so that a text starting with ``"`` never
    swallows the rows after it into one. A TSV that breaks those rules, or whose quoted text spans
    lines (a stray quote's match found rows later), is read again with no quoting at all (each line
    one row, quotes kept as text: GLUE's TSV files are written so)."""
    try:
        rows = _read_table(path, cfg, delimiter, text_flag, csv.QUOTE_MINIMAL)
    except KdexamError as e:
        if delimiter != "\t" or "fix the quoting" not in str(e):
            raise
        return _read_table(path, cfg, delimiter, text_flag, csv.QUOTE_NONE)
    if delimiter == "\t" and any("\n" in _text_of(e) for e in rows):
        return _read_table(path, cfg, delimiter, text_flag, csv.QUOTE_NONE)
    return rows


def _text_of(e: Example) -> str:
    return " ".join(e.text) if isinstance(e.text, list) else e.text + (e.text_pair or "")


def _read_table(path: Path, cfg: DataConfig, delimiter: str, text_flag: str, quoting: int) -> list[Example]:
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    rows = []
    try:
        if not reader.fieldnames:
            raise KdexamError(f"File '{path}' is empty; it needs a header row and at least one example.")
        if twice := sorted({c for c in reader.fieldnames if reader.fieldnames.count(c) > 1}):
            raise KdexamError(f"File '{path}' names the column '{twice[0]}' twice in its header row; give each column one name.")
        for row in reader:
            if None in row:
                raise KdexamError(f"File '{path}' line {reader.line_num} has more fields than the header; "
                                  f"quote fields that contain '{delimiter}'.")
            rows.append((f"line {reader.line_num}", row))
    except csv.Error as e:
        raise KdexamError(f"File '{path}' is not valid {'TSV' if delimiter == chr(9) else 'CSV'} ({e}); fix the quoting.") from None
    return _rows_to_examples(rows, path, cfg, text_flag)


def read_json_objects(path: Path, example: str = '{"text": ..., "label": ...}') -> list[tuple[str, dict]]:
    """The objects of a JSON Lines file or a JSON array, each with where it stands
    (``"line N"`` / ``"item N"``, for error sentences); anything else is a one-sentence error."""
    lines = read_lines(path)
    stripped = "\n".join(lines).lstrip()
    rows: list[tuple[str, dict]] = []
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise KdexamError(f"File '{path}' is not valid JSON (line {e.lineno}: {e.msg}); fix it or write one object per line.") from None
        rows = [(f"item {i}", r) for i, r in enumerate(data)]
    else:
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"line {i}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise KdexamError(f"File '{path}' line {i} is not valid JSON ({e.msg}); each line must be one JSON object.") from None
    for where, r in rows:
        if not isinstance(r, dict):
            raise KdexamError(f"File '{path}' {where} is not a JSON object; write objects like {example}.")
    return rows


def read_jsonl(path: Path, cfg: DataConfig, text_flag: str = "--text-column") -> list[Example]:
    """JSON Lines (one object per line) or a JSON array of objects."""
    return _rows_to_examples(read_json_objects(path), path, cfg, text_flag)


def _is_comment(line: str, in_sentence: bool = False, shape: "ConllShape | None" = None) -> bool:
    """CoNLL-U style comments (``# text = …``), which stand before a sentence: inside one, ``# O``
    is the token ``#``; a token row such as ``#hashtag<TAB>NNP`` is never one. At a sentence's
    start, a ``#`` row shaped like the file's token rows (as many columns, and a tag the file
    uses elsewhere) is the token ``#`` too: ``# NN O`` in CoNLL-2003, ``#`` alone in a file of
    one token per line."""
    if in_sentence or not line.startswith("#") or "\t" in line:
        return False
    if shape is not None and shape.is_token_row(line.split()):
        return False
    return line.startswith("# ") or len(line.split()) < 2


@dataclass(frozen=True)
class ConllShape:
    """The column counts and tags of a space-separated CoNLL file's rows that do not start with
    ``#``, to tell a token ``#`` from a comment (:func:`_is_comment`). Rows of one column (a file
    of words to tag) have no tag to compare."""
    widths: frozenset
    tags: frozenset
    tag_column: int = -1

    @classmethod
    def of(cls, lines: list[str], tag_column: int = -1) -> "ConllShape":
        rows = [line.split() for line in lines if line.strip() and not line.startswith("#") and "\t" not in line]
        rows = [r for r in rows if r[0] != "-DOCSTART-"]
        tags = frozenset(r[tag_column] for r in rows if len(r) > 1 and -len(r) <= tag_column < len(r))
        return cls(frozenset(len(r) for r in rows), tags, tag_column)

    def is_token_row(self, cols: list[str]) -> bool:
        if len(cols) not in self.widths:
            return False
        return len(cols) == 1 or (-len(cols) <= self.tag_column < len(cols) and cols[self.tag_column] in self.tags)


def read_conll(path: Path, cfg: DataConfig) -> list[Example]:
    """CoNLL: one token per line with its tag in a column, a blank line between
    sentences, ``-DOCSTART-`` lines skipped. Columns are split on tabs, else on spaces."""
    out: list[Example] = []
    words: list[str] = []
    tags: list[str] = []
    lines = read_lines(path)
    shape = ConllShape.of(lines, cfg.tag_column)
    for i, line in enumerate(lines, start=1):
        if not line.strip() or _is_comment(line, in_sentence=bool(words), shape=shape):
            if words:
                out.append(Example(words, None, tags))
                words, tags = [], []
            continue
        cols = line.split("\t") if "\t" in line else line.strip(" \r\n").split(" ")
        cols = cols if "\t" in line else [c for c in cols if c]  # (spaces only: a no-break space stays inside a token)
        if cols[0] == "-DOCSTART-":
            continue
        try:
            word, tag = cols[cfg.token_column], cols[cfg.tag_column]
        except IndexError:
            word, tag = None, None
        if len(cols) < 2 or not word or not tag or not tag.strip():
            hint = (" A .txt file is read as CoNLL; for one text per line with a label, give a .csv, .tsv or .jsonl file, "
                    "and for unlabelled text use --unlabelled." if path.suffix.lower() == ".txt" else "")
            raise KdexamError(f"File '{path}' line {i} is not 'token<TAB>tag' ({line[:40]!r}); CoNLL needs a token and a tag column on every non-blank line.{hint}")
        words.append(word.strip())
        tags.append(tag.strip())
    if words:
        out.append(Example(words, None, tags))
    return out


def read_file(path: Path, cfg: DataConfig, text_flag: str = "--text-column") -> list[Example]:
    """Read one split file by its extension (``text_flag``: the option that names its text column)."""
    ext = path.suffix.lower()
    if ext in TABLE_EXTS:
        examples = read_table(path, cfg, TABLE_EXTS[ext], text_flag)
    elif ext in JSON_EXTS:
        examples = read_jsonl(path, cfg, text_flag)
    elif ext in CONLL_EXTS:
        examples = read_conll(path, cfg)
    else:
        raise KdexamError(f"File '{path}' has an unknown extension '{ext}'; use .csv, .tsv, .jsonl or .conll.")
    if not examples:
        raise KdexamError(f"File '{path}' holds no examples; check that it is the right file.")
    return examples


def _find_split_files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for split, stems in SPLIT_NAMES.items():
        for stem in stems:
            hits = sorted(p for p in directory.glob(f"{stem}.*") if p.suffix.lower() in KNOWN_EXTS)
            if hits:
                found[split] = hits[0]
                break
    return found


def read_directory(directory: Path, cfg: DataConfig) -> tuple[dict[str, list[Example]], dict]:
    """Split files in a directory (with kdexam's ``dataset.json`` manifest if present),
    or a dataset saved by ``datasets``."""
    manifest: dict = {}
    if (directory / "dataset.json").is_file():
        try:
            manifest = json.loads((directory / "dataset.json").read_text(encoding="utf-8"))
            files = {split: directory / f for split, f in manifest.get("files", {}).items()}
        except (ValueError, AttributeError, TypeError) as e:  # (JSONDecodeError and UnicodeDecodeError are ValueErrors)
            raise KdexamError(f"'{directory / 'dataset.json'}' is not a valid dataset manifest ({type(e).__name__}); "
                              "remove it to read the split files directly, or prepare the dataset again with --force.") from None
    else:
        files = _find_split_files(directory)
    if not files:
        if (directory / "dataset_dict.json").is_file() or (directory / "dataset_info.json").is_file():
            notes: list[str] = []
            return read_hf(str(directory), cfg, local=True, notes=notes), {"read_notes": notes}
        raise KdexamError(f"Directory '{directory}' has no train.csv/.tsv/.jsonl/.conll file; name the training file train.<ext>.")
    if "train" not in files:
        raise KdexamError(f"Directory '{directory}' has no training split; add a file named train.<ext>.")
    return {split: read_file(path, cfg) for split, path in files.items()}, manifest


def read_hf(name: str, cfg: DataConfig, local: bool = False, notes: list[str] | None = None) -> dict[str, list[Example]]:
    """A dataset saved with ``save_to_disk`` or a hub id, through ``datasets``. A class label of -1 is
    ``datasets``' "no label" (GLUE's test splits): a validation or test split without a single label is
    left out (said in ``notes``), and a missing label anywhere else is an error."""
    import datasets

    try:
        if local:
            ds = datasets.load_from_disk(name)
        else:
            ds = datasets.load_dataset(name)
    except Exception as e:  # the datasets library raises many kinds; all mean "cannot load"
        raise KdexamError(
            f"Dataset '{name}' is not a built-in dataset, a local file or directory, or a loadable Hugging Face dataset "
            f"({type(e).__name__}); run 'kdexam data list' for built-ins or pass a path."
        ) from None
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    out: dict[str, list[Example]] = {}
    for split, stems in SPLIT_NAMES.items():
        key = next((s for s in stems if s in ds), None)
        if key is None:
            continue
        d = ds[key]
        if cfg.task == "token-classification" or ("tokens" in d.column_names and "text" not in d.column_names):
            tok_col = "tokens" if "tokens" in d.column_names else cfg.text_column
            tag_col = next((c for c in ("ner_tags", "pos_tags", "tags", cfg.label_column) if c in d.column_names), None)
            feat = d.features.get(tag_col)
            names = getattr(getattr(feat, "feature", None), "names", None)
            examples = []
            for i, r in enumerate(d):
                tags = list(r[tag_col])
                if names and any(t < 0 for t in tags):  # -1 is "no tag" in datasets, never the last tag name
                    raise KdexamError(f"Dataset '{name}' {key} row {i} has tag id {min(tags)}, which names no tag "
                                      f"(its tags are 0..{len(names) - 1}); tag every word or remove that row.")
                examples.append(Example(list(r[tok_col]), None, [names[t] if names else str(t) for t in tags]))
            out[split] = examples
        else:
            feat = d.features.get(cfg.label_column)
            names = getattr(feat, "names", None)
            rows = []
            for i, r in enumerate(d):
                value = r.get(cfg.label_column)
                if names is not None and value is not None:
                    r = dict(r, **{cfg.label_column: names[value] if value >= 0 else None})
                rows.append((f"row {i}", r))
            if split != "train" and names is not None and rows and all(r[cfg.label_column] is None for _, r in rows):
                if notes is not None:
                    notes.append(f"{key} split left out: it has no labels (-1 throughout)")
                continue
            out[split] = _rows_to_examples(rows, Path(name), cfg)
    if "train" not in out:
        raise KdexamError(f"Dataset '{name}' has no 'train' split; it has: {', '.join(ds)}.")
    return out


# ---------------------------------------------------------------------------- task


def infer_task(train: list[Example]) -> str:
    """Tagging when texts are word lists; regression when labels are non-integral numbers."""
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
    return "classification" if integral and len(set(values)) <= max(2, len(values) // 10) else "regression"


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
    from kdexam.data.builtin import BUILTIN_DATASETS

    path = Path(name).expanduser()
    if name in BUILTIN_DATASETS or path.exists():
        return
    if path.suffix.lower() in KNOWN_EXTS or "/" in name and path.parent.exists() or name.startswith((".", "~")):
        raise KdexamError(f"Data file '{name}' does not exist; check the path given to --data.")
    close = difflib.get_close_matches(name, list(BUILTIN_DATASETS), n=1, cutoff=0.6)
    if close:
        raise KdexamError(f"Dataset '{name}' is not a built-in dataset; did you mean '{close[0]}'? ('kdexam data list' shows all.)")


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
                    raise KdexamError(f"--max-eval {cfg.max_eval} leaves {len(examples)} {split} example(s) of '{cfg.name}', all with "
                                      f"target {examples[0].label!r}; Pearson's and Spearman's correlations need targets that "
                                      "vary: raise --max-eval.")

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
    for split, examples in splits.items():
        for e in examples:
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
        if examples and len({e.label for e in examples}) == 1:
            every = "Every target" if len(examples) > 1 else "The only target"
            raise KdexamError(f"{every} of the {split} split of '{name}' is {examples[0].label!r}; a regression "
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
