"""The files of ``kdexam predict``: texts, JSONL, tables and CoNLL read into the items a
predictor takes (:func:`read_inputs`), with one-sentence errors naming the file and line, and
the predictions written as JSON Lines (:func:`predict_file`)."""

from __future__ import annotations

import json
from pathlib import Path

from kdexam.data.readers import read_json_objects, read_lines, read_text
from kdexam.errors import KdexamError
from kdexam.inference.predictor import load_student, to_example
from kdexam.inference.serving import MAX_TOKENS


TEXT_EXTS = {".txt", ".text"}
JSONL_EXTS = {".jsonl", ".json", ".ndjson"}
CONLL_EXTS = {".conll", ".conllu", ".bio", ".iob"}
TABLE_EXTS = {".tsv": "\t", ".csv": ","}
PAIR_HEADERS = {"sentence1", "sentence2", "sentence", "question", "question1", "question2", "premise", "hypothesis",
                "text_a", "text_b", "query", "passage", "label", "labels"}
"""Header names of pair datasets (GLUE, SNLI): a ``.tsv`` first row of them alone is a header, not a pair."""


def input_format(path: Path) -> str:
    """``text``, ``jsonl``, ``conll`` or ``table``, from the extension; a file without one is sniffed
    (a first non-blank line starting with ``{``, or a whole file that parses as a JSON array, is
    JSONL; anything else is text)."""
    ext = path.suffix.lower()
    if ext in TEXT_EXTS:
        return "text"
    if ext in JSONL_EXTS:
        return "jsonl"
    if ext in CONLL_EXTS:
        return "conll"
    if ext in TABLE_EXTS:
        return "table"
    if ext == "":
        first = next((l for l in read_lines(path) if l.strip()), "").lstrip()
        if first.startswith("{"):
            return "jsonl"
        if first.startswith("["):
            try:
                return "jsonl" if isinstance(json.loads(read_text(path)), list) else "text"
            except ValueError:
                return "text"
        return "text"
    raise KdexamError(f"File '{path}' has an unknown extension '{ext}'; use .txt (one text per line), .jsonl, .csv, .tsv or .conll.")


def read_inputs(path: str | Path, task) -> list[dict]:
    """Inputs of a file as dicts (``text`` [+ ``text_pair``], or ``tokens`` for tagging).

    - text (``.txt``): one input per line, blank lines skipped; pairs as ``text<TAB>text_pair``;
      for tagging, the words of the line (split on whitespace);
    - JSONL (``.jsonl``/``.json``): objects with ``text`` [and ``text_pair``]; for tagging
      ``tokens`` (a word list) or ``text`` (a list or a string); a JSON array of such objects works too;
    - CoNLL (``.conll``/``.conllu``/``.bio``/``.iob``; ``.tsv`` for tagging): the first column
      is the word (CoNLL-U: the FORM column, multiword and empty-node rows skipped), a blank line
      ends a sentence; ``#`` comments and ``-DOCSTART-`` are skipped;
    - tables (``.csv``; ``.tsv`` for other tasks) with a header row: the ``text`` [and
      ``text_pair``] columns, other columns (a gold label) ignored; a ``.tsv`` whose first line is
      not such a header is read as ``text<TAB>text_pair`` lines for a pair model."""
    p = Path(path)
    if p.is_dir():
        raise KdexamError(f"Input '{path}' is a directory; pass one file of texts to --input (.txt, .jsonl, .csv, .tsv, .conll).")
    if not p.is_file():
        raise KdexamError(f"Input file '{path}' does not exist; check the path given to --input.")
    fmt = input_format(p)
    tagging = task.kind == "token-classification"
    if fmt == "table" and p.suffix.lower() == ".tsv" and tagging:
        fmt = "conll"
    if fmt == "conll":
        if not tagging:
            raise KdexamError(f"File '{p}' is CoNLL but the model does {task.kind}; give a .txt or .jsonl file of texts.")
        items = _read_conll_words(p)
    elif fmt == "table":
        items = _read_table(p, task)
    elif fmt == "jsonl":
        items = _read_jsonl(p, task)
    else:
        items = _read_text(p, task)
    if not items:
        raise KdexamError(f"File '{p}' holds no inputs; check that it is the right file.")
    return items


def _read_text(p: Path, task) -> list[dict]:
    items = []
    for i, line in enumerate(read_lines(p), start=1):
        if not line.strip():
            continue
        if task.kind == "token-classification":
            items.append({"tokens": line.split()})
        elif task.text_pair:
            text, tab, pair = line.rstrip("\t").partition("\t")  # (a spreadsheet's empty trailing column is none)
            if not tab or not text.strip() or not pair.strip() or "\t" in pair:  # (a third column, a label, joined the pair)
                raise KdexamError(f"File '{p}' line {i} is not 'text<TAB>text_pair' (one tab); the model reads text pairs. "
                                  "A table with more columns needs a header row naming text and text_pair.")
            items.append({"text": text, "text_pair": pair})
        else:
            items.append({"text": line})
    return items


def _read_jsonl(p: Path, task) -> list[dict]:
    items = []
    for where, r in read_json_objects(p, '{"text": ...}'):
        if task.kind == "token-classification":
            words = r.get("tokens", r.get("text"))
            if words is None:
                raise KdexamError(f"File '{p}' {where} has no 'tokens' or 'text' field; a tagger needs the words.")
            items.append({"tokens": words.split() if isinstance(words, str) else words})
        else:
            if "text" not in r:
                raise KdexamError(f"File '{p}' {where} has no 'text' field; write objects like {{\"text\": ...}}.")
            item = {"text": r["text"]}
            if task.text_pair or "text_pair" in r:
                item["text_pair"] = r.get("text_pair")
            items.append(item)
        to_example(items[-1], task, f"file '{p}' {where}")  # errors name the line
    return items


def _read_table(p: Path, task, quoting: int | None = None) -> list[dict]:
    """A CSV/TSV with a header row naming ``text`` [and ``text_pair``]; a headerless ``.tsv`` for a
    pair model is ``text<TAB>text_pair`` lines (:func:`_read_text`). Quoting is read strictly and a
    header naming a column twice is refused, as for training data
    (:func:`kdexam.data.readers.read_table`: a TSV that breaks the quote rules is read without them)."""
    import csv
    import io

    delimiter = TABLE_EXTS[p.suffix.lower()]
    if quoting is None:
        try:
            items = _read_table(p, task, csv.QUOTE_MINIMAL)
        except KdexamError as e:
            if delimiter != "\t" or "fix the quoting" not in str(e):
                raise
            return _read_table(p, task, csv.QUOTE_NONE)
        if delimiter == "\t" and any("\n" in v for item in items for v in item.values()):  # a stray quote's match rows later
            try:
                return _read_table(p, task, csv.QUOTE_NONE)
            except KdexamError:  # its lines are no rows alone: the quoted fields were whole, their line breaks the texts'
                return items
        return items
    from kdexam.data.readers import DELIMITER_NAMES, FIELD_LIMIT

    csv.field_size_limit(FIELD_LIMIT)
    reader = csv.DictReader(io.StringIO(read_text(p), newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        columns = reader.fieldnames or []
    except csv.Error as e:
        raise KdexamError(f"File '{p}' is not a valid table ({e}); fix the quoting.") from None
    if twice := sorted({c for c in columns if columns.count(c) > 1}):
        raise KdexamError(f"File '{p}' names the column '{twice[0]}' twice in its header row; give each column one name.")
    wanted = ["text", "text_pair"] if task.text_pair else ["text"]
    if "text" not in columns and delimiter == "\t" and task.text_pair:
        names = {c.strip().lower() for c in columns if c.strip()}
        if names and names <= PAIR_HEADERS:  # every field a column name (sentence1, sentence2): a header, not a first pair
            raise KdexamError(f"File '{p}' has the header row {', '.join(columns)}; name its input columns text and "
                              "text_pair, or give 'text<TAB>text_pair' lines without a header.")
        return _read_text(p, task)
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise KdexamError(f"File '{p}' has no column '{missing[0]}' in its header row (it has: {', '.join(columns) or 'none'}); "
                          f"name the input column{'s' if len(wanted) > 1 else ''} {' and '.join(wanted)}, or give a .txt or .jsonl file.")
    items = []
    try:
        for row in reader:
            if None in row:  # (a text cut at an unquoted delimiter: the rest of it was dropped)
                raise KdexamError(f"File '{p}' line {reader.line_num} has more fields than the header; "
                                  f"quote fields that contain {DELIMITER_NAMES[delimiter]}.")
            if all(not (v or "").strip() for v in row.values() if isinstance(v, str)):  # a blank row; one with other
                continue  # fields (a gold label) but no text is refused below, as in JSONL: outputs follow the rows
            items.append({c: row.get(c) or "" for c in wanted})
            to_example(items[-1], task, f"file '{p}' line {reader.line_num}")  # errors name the line
    except csv.Error as e:
        raise KdexamError(f"File '{p}' is not a valid table ({e}); fix the quoting.") from None
    return items


def _read_conll_words(p: Path) -> list[dict]:
    from kdexam.data.readers import ConllShape, _is_comment

    conllu = p.suffix.lower() == ".conllu"
    items, words = [], []
    lines = read_lines(p)
    shape = ConllShape.of(lines)  # (the last column, kdexam's default tag column)
    for line in lines:
        if _is_comment(line, in_sentence=bool(words), shape=shape):
            continue
        if not line.strip():
            if words:
                items.append({"tokens": words})
                words = []
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if conllu:  # ID FORM LEMMA …: multiword tokens (1-2) and empty nodes (8.1) are not words of the text
            if len(cols) < 2 or "-" in cols[0] or "." in cols[0]:
                continue
            word = cols[1].strip()
        else:
            word = cols[0].strip()
        if word != "-DOCSTART-":
            words.append(word)
    if words:
        items.append({"tokens": words})
    return items


def predict_file(model: str | Path, input_path: str | Path, output: str | Path | None = None, backend: str = "auto",
                 quantized: bool = False, batch_size: int = 32, max_tokens: int | None = MAX_TOKENS) -> list[dict]:
    """Predict every input of a file; returns the JSONL records (the input fields, then the
    prediction) and writes them to ``output`` when given (atomically)."""
    from kdexam.paths import atomic_write_text, json_text
    from kdexam.rundir import check_output_file

    if batch_size < 1:
        raise KdexamError(f"The batch size must be at least 1, not {batch_size}.")
    if output is not None and Path(output).is_dir():
        raise KdexamError(f"--output '{output}' is a directory; name the JSONL file to write.")
    check_output_file(output, [input_path, model], "--output")
    if output is not None and Path(output).suffix.lower() not in ("", ".jsonl", ".ndjson"):
        raise KdexamError(f"--output '{output}' would be JSON Lines under a '{Path(output).suffix}' name; name it .jsonl "
                          "(one JSON object a line), or '-' for standard output.")
    predictor = load_student(model, backend=backend, quantized=quantized)
    items = read_inputs(input_path, predictor.task)
    preds = predictor.predict(items, batch_size=batch_size, max_tokens=max_tokens)
    records = []
    for item, pred in zip(items, preds):
        records.append({**{k: v for k, v in item.items() if k != "tokens"}, **pred})
    if output is not None:
        atomic_write_text(output, "".join(json_text(r, ensure_ascii=False) + "\n" for r in records))
    return records
