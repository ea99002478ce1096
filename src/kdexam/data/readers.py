"""Read data files into lists of :class:`Example`: the formats, with errors that name the file and line.

- tables (CSV, TSV) and JSON lines / a JSON array, by column names (``text``, ``text_pair``,
  ``label`` unless the config names others);
- CoNLL (one token per line with its tag in a column, blank lines between sentences);
- a directory of split files (``train.*``, ``validation.*``/``valid.*``/``dev.*``, ``test.*``)
  or a dataset saved with ``datasets.Dataset.save_to_disk``;
- a Hugging Face dataset id (needs hub access), through ``datasets``.

Local files are read with the standard library so that every error can name the file and
line. Assembling the splits of a run — which source ``--data`` names, the task, the carved
validation split, the label set — is :mod:`kdexam.data.splits`.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdexam.config import DataConfig
from kdexam.errors import KdexamError

SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}
TABLE_EXTS = {".csv": ",", ".tsv": "\t"}
DELIMITER_NAMES = {",": "a comma", "\t": "a tab"}
JSON_EXTS = {".jsonl", ".json", ".ndjson"}
CONLL_EXTS = {".conll", ".conllu", ".bio", ".iob", ".txt"}
CONLLU_FORM, CONLLU_UPOS = 1, 3
"""CoNLL-U's columns (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC) a ``.conllu`` is read by."""
NO_LABEL_COLUMN = "\0no label column"
"""A ``label_column`` no file has: the rows are read as unlabelled text (labels ignored, a row without one too)."""
FIELD_LIMIT = 2**31 - 1
"""The csv module's largest field (its default, 131,072 characters, refused a long text as bad quoting)."""
KNOWN_EXTS = set(TABLE_EXTS) | JSON_EXTS | CONLL_EXTS


@dataclass
class Example:
    """One example: ``text`` is a string, or a list of words for tagging; ``label`` is a
    class name, a float, a list of tags, or ``None`` for unlabelled text."""

    text: str | list[str]
    text_pair: str | None = None
    label: Any = None


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
        if len(row) == 1 and ";" in str(next(iter(row))):  # (Excel's CSV in many locales)
            hint += " Its header looks separated by ';': save the file with ',' between fields, or as .tsv."
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
    if not has_label and cfg.label_column not in ("label", NO_LABEL_COLUMN):  # (a --label-column given, and not found)
        columns = sorted({str(c) for _, r in rows for c in r})
        close = difflib.get_close_matches(cfg.label_column, columns, n=1)
        raise KdexamError(f"File '{path}' has no label column '{cfg.label_column}' (it has: {', '.join(columns)}); pass "
                          f"--label-column NAME.{f' Did you mean {close[0]!r}?' if close else ''}")
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
        try:
            return _read_table(path, cfg, delimiter, text_flag, csv.QUOTE_NONE)
        except KdexamError:  # its lines are no rows alone: the quoted fields were whole, their line breaks the texts'
            return rows
    return rows


def _text_of(e: Example) -> str:
    return " ".join(e.text) if isinstance(e.text, list) else e.text + (e.text_pair or "")


def _read_table(path: Path, cfg: DataConfig, delimiter: str, text_flag: str, quoting: int) -> list[Example]:
    csv.field_size_limit(FIELD_LIMIT)
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
                                  f"quote fields that contain {DELIMITER_NAMES[delimiter]}.")
            rows.append((f"line {reader.line_num}", row))
    except csv.Error as e:
        raise KdexamError(f"File '{path}' is not valid {'TSV' if delimiter == chr(9) else 'CSV'} ({e}); fix the quoting.") from None
    if delimiter == "," and quoting != csv.QUOTE_NONE and (swallowed := _swallowed_row(rows, cfg.label_column)):
        where, line = swallowed
        raise KdexamError(f"File '{path}' {where} holds the line {line[:60]!r} inside a quoted field, and it reads as a row "
                          "of its own: a quote opened there closes rows later. Fix the quoting (a quote inside a text is "
                          'written twice, "").')
    return _rows_to_examples(rows, path, cfg, text_flag)


def _swallowed_row(rows: list[tuple[str, dict]], label_column: str) -> tuple[str, str] | None:
    """A CSV field holding a line that ends like a row, ``…,<a label of the file>``: a stray quote
    that opened a text and closed rows later, making one text of them (valid CSV, so only the
    shape tells). ``(where, that line)``, or None."""
    labels = {v.strip() for _, r in rows if isinstance(v := r.get(label_column), str) and v.strip()}
    for where, row in rows:
        for column, value in row.items():
            if column != label_column and isinstance(value, str) and "\n" in value:
                for line in value.split("\n")[:-1]:
                    if "," in line and line.rpartition(",")[2].strip() in labels:
                        return where, line
    return None


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
        rows = [(f"item {i}", r) for i, r in enumerate(data, start=1)]
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
    """CoNLL-U style comments (``# text = …``), which stand before a sentence; a token row such as
    ``#hashtag<TAB>NNP`` is never one. Space-separated files, with ``shape``: at a sentence's
    start a ``#`` row shaped like the file's token rows (as many columns and a tag the file uses
    elsewhere; in a file of words to tag, ``#`` alone) is the token ``#`` (``# NN O`` in
    CoNLL-2003); inside a sentence a ``#`` row is a token unless no token row has its column
    count (a stray ``# text = …``, skipped)."""
    if not line.startswith("#") or "\t" in line:
        return False
    cols = line.split()
    if in_sentence:
        return shape is not None and len(cols) not in shape.widths
    if shape is not None and shape.is_token_row(cols):
        return False
    return line.startswith("# ") or len(cols) < 2


@dataclass(frozen=True)
class ConllShape:
    """The column counts and tags of a space-separated CoNLL file's rows that do not start with
    ``#``, to tell a token ``#`` from a comment (:func:`_is_comment`). Rows of one column (a file
    of words to tag) have no tag to compare."""
    widths: frozenset
    tags: frozenset
    tag_column: int = -1

    @classmethod
    def of(cls, lines: list[str], tag_column: int = -1) -> "ConllShape | None":
        """The shape of ``lines``; None when no row starts with ``#`` (nothing to tell apart)."""
        if not any(line.startswith("#") for line in lines):
            return None
        rows = [line.split() for line in lines if line.strip() and not line.startswith("#") and "\t" not in line]
        rows = [r for r in rows if r[0] != "-DOCSTART-"]
        tags = frozenset(r[tag_column] for r in rows if len(r) > 1 and -len(r) <= tag_column < len(r))
        return cls(frozenset(len(r) for r in rows), tags, tag_column)

    def is_token_row(self, cols: list[str]) -> bool:
        if len(cols) not in self.widths:
            return False
        if len(cols) == 1:
            return cols[0] == "#"  # ('#tag' alone stays a comment, as before)
        return -len(cols) <= self.tag_column < len(cols) and cols[self.tag_column] in self.tags


def read_conll(path: Path, cfg: DataConfig) -> list[Example]:
    """CoNLL: one token per line with its tag in a column, a blank line between
    sentences, ``-DOCSTART-`` lines skipped. Columns are split on tabs, else on spaces.
    CoNLL-U (``.conllu``): the word is the FORM column and the tag the UPOS column unless
    ``token_column``/``tag_column`` say otherwise; multiword-token (``1-2``) and empty-node
    (``8.1``) rows are not words (the defaults read the ID and MISC columns)."""
    out: list[Example] = []
    words: list[str] = []
    tags: list[str] = []
    lines = read_lines(path)
    conllu = path.suffix.lower() == ".conllu"
    token_column, tag_column = cfg.token_column, cfg.tag_column
    if conllu and (token_column, tag_column) == (0, -1):  # (the defaults: ID and MISC in CoNLL-U)
        token_column, tag_column = CONLLU_FORM, CONLLU_UPOS
    shape = ConllShape.of(lines, tag_column)
    width: tuple[int, int] | None = None  # the first token row's column count, and its line
    hint = (" A .txt file is read as CoNLL; for one text per line with a label, give a .csv, .tsv or .jsonl file, "
            "and for unlabelled text use --unlabelled." if path.suffix.lower() == ".txt" else "")
    for i, line in enumerate(lines, start=1):
        if _is_comment(line, in_sentence=bool(words), shape=shape):
            continue
        if not line.strip():
            if words:
                out.append(Example(words, None, tags))
                words, tags = [], []
            continue
        cols = line.split("\t") if "\t" in line else line.strip(" \r\n").split(" ")
        cols = cols if "\t" in line else [c for c in cols if c]  # (spaces only: a no-break space stays inside a token)
        if cols[0] == "-DOCSTART-" or (conllu and ("-" in cols[0] or "." in cols[0])):
            continue
        try:
            word, tag = cols[token_column], cols[tag_column]
        except IndexError:
            word, tag = None, None
        if len(cols) < 2 or not word or not tag or not tag.strip():
            raise KdexamError(f"File '{path}' line {i} is not 'token<TAB>tag' ({line[:40]!r}); CoNLL needs a token and a tag column on every non-blank line.{hint}")
        width = width or (len(cols), i)
        if len(cols) != width[0] and min(token_column, tag_column) < 0:  # (a column counted from the end moves with the width)
            raise KdexamError(f"File '{path}' line {i} has {len(cols)} columns where line {width[1]} has {width[0]}; the "
                              f"{'tag' if tag_column < 0 else 'token'} is read from a column counted from the end, so every "
                              f"token row needs the same columns (or count it from the start: --set data.tag_column=N, data.token_column=N).{hint}")
        if hint and " " in word.strip():  # (a .txt of 'text<TAB>label' lines: one sentence of texts)
            raise KdexamError(f"File '{path}' line {i}'s token {word[:40]!r} holds spaces; CoNLL has one token per line.{hint}")
        words.append(word.strip())
        tags.append(tag.strip())
    if words:
        out.append(Example(words, None, tags))
    return out


def read_file(path: Path, cfg: DataConfig, text_flag: str = "--text-column") -> list[Example]:
    """Read one split file by its extension (``text_flag``: the option that names its text column)."""
    ext = path.suffix.lower()
    if ext == ".tsv" and cfg.task == "token-classification":  # (as 'kdexam predict' reads a tagger's .tsv)
        examples = read_conll(path, cfg)
    elif ext in TABLE_EXTS:
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
    """Each split's file: named exactly ``<split name>.<ext>`` (``train.backup.csv`` is not the
    training file), and only one per split (``train.csv`` beside ``train.jsonl``, or ``dev.csv``
    beside ``validation.csv``, is an error: which one was meant cannot be told)."""
    found: dict[str, Path] = {}
    for split, stems in SPLIT_NAMES.items():
        hits = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in KNOWN_EXTS and p.stem in stems)
        if len(hits) > 1:
            raise KdexamError(f"Directory '{directory}' has {len(hits)} {split} files ({', '.join(p.name for p in hits)}); "
                              "keep one, or move the others out of the folder.")
        if hits:
            found[split] = hits[0]
    return found


def read_directory(directory: Path, cfg: DataConfig) -> tuple[dict[str, list[Example]], dict]:
    """Split files in a directory (with kdexam's ``dataset.json`` manifest if present),
    or a dataset saved by ``datasets``."""
    manifest: dict = {}
    if (directory / "dataset.json").is_file():
        try:
            manifest = json.loads((directory / "dataset.json").read_text(encoding="utf-8"))
            files = {split: directory / f for split, f in manifest.get("files", {}).items()}
            if not files:  # another tool's dataset.json (no 'files'): the split files are read by name
                manifest, files = {}, _find_split_files(directory)
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

    from kdexam.hub import unreachable

    if not local and (why := unreachable(name, "dataset")):
        raise KdexamError(f"Dataset '{name}' is not a built-in dataset or a local file or directory, and the Hugging Face "
                          f"Hub cannot be reached to look for it ({why}); run 'kdexam data list' for built-ins or pass a path.")
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
            if tag_col is None or tok_col not in d.column_names:
                raise KdexamError(f"Dataset '{name}' {key} has no {'tag' if tok_col in d.column_names else 'token'} column "
                                  f"kdexam knows (it has: {', '.join(d.column_names)}); pass "
                                  f"{'--label-column' if tok_col in d.column_names else '--text-column'} NAME.")
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
