"""The transfer set: the examples a student learns its teacher from.

Labelled train (source ``gold``) + optional unlabelled text (``unlabelled``) +
augmented copies of the labelled examples (``augmented:METHOD``, see
:mod:`kdexam.data.augment`). Small students learn most from many examples labelled by
the teacher (Ba & Caruana 2014; Tang et al. 2019; Mukherjee & Awadallah 2020): the
teacher labels every transfer example (through its cache), the soft targets of every
row feed the distillation objectives, and only ``gold`` rows carry gold labels for the
gold loss (unlabelled and augmented rows are masked out of it, never dropped).

Rules, in order:

1. Every example has a stable id (a hash of its text and pair) and a source tag.
2. No leakage: every example whose text equals a validation or test example (all of them,
   not only the ``--max-eval`` first), exactly or after normalisation (:func:`normalise`:
   NFKC, case-folded, punctuation read as spaces, format characters dropped; a pair's sides
   in either order), is dropped, gold rows included.
3. A non-gold example that repeats an earlier example (normalised) is dropped; gold
   rows are the user's labelled data and are kept as they are.
4. Segments stay contiguous by source (gold, unlabelled, then each augmenter), so each
   segment has its own teacher cache keyed by its content: a new augmentation seed
   recomputes only its segment, the gold and unlabelled outputs are reused.
5. :meth:`TransferSet.confident` keeps the gold rows and the teacher-labelled rows whose
   teacher confidence (max probability; tagging: mean over words) is at least
   ``min_confidence``.

The composition (counts by source, duplicates dropped, rows filtered) goes to
``metrics.json`` under ``transfer``.
"""

from __future__ import annotations

import hashlib
import json
import random
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from kdexam.config import DataConfig, TransferConfig
from kdexam.data.readers import NO_LABEL_COLUMN, Example, read_directory, read_file, read_lines
from kdexam.data.splits import DataSplits
from kdexam.errors import KdexamError
from kdexam.paths import atomic_write_text
from kdexam.tasks import Task

console = Console(stderr=True)
UNLABELLED_SHUFFLE_SEED = 0
"""``max_unlabelled`` takes the first N of one fixed shuffle, whatever the run's seed, so that
runs with different seeds share the unlabelled set and its teacher cache."""


def _text(value) -> str:
    return " ".join(value) if isinstance(value, list) else str(value or "")


def normalise(text: str) -> str:
    """NFKC, case-folded, punctuation (and modifier symbols such as the backtick) read as a space,
    format and control characters (a soft hyphen, a zero-width space) dropped, every kind of space
    (tabs and line breaks too) collapsed to one:
    ``"It's  GOOD!"`` → ``"it s good"``, and ``"good.It"``, ``"well-known"`` and the CoNLL ``"Peter 's
    car"`` read as ``"good it"``, ``"well known"`` and ``"peter s car"``, as their spaced forms do.
    Other symbols (emoji, ``<``, ``$``) are kept: they tell texts apart."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if c.isspace() or _category(c) in ("P", "Sk") else "" if _category(c) == "C" else c for c in text)
    return " ".join(text.split())


def _category(c: str) -> str:
    cat = unicodedata.category(c)
    return cat if cat == "Sk" else cat[0]


def example_key(e: Example, normalised: bool = True) -> str:
    """The text (and pair) an example is compared by: ``text<TAB>pair``, normalised or not."""
    if not normalised:
        return _text(e.text) + "\t" + _text(e.text_pair)
    return normalise(_text(e.text)) + "\t" + normalise(_text(e.text_pair))


def either_order(key: str) -> str:
    """A normalised :func:`example_key` with the pair's two sides sorted, for the leakage check (a
    pair swapped holds the same two texts together); a normalised side holds no tab."""
    return "\t".join(sorted(key.split("\t")))


def example_id(e: Example) -> str:
    """A stable id: the first 16 hex digits of SHA-1 over the example's text (and pair)."""
    return hashlib.sha1(json.dumps([e.text, e.text_pair], ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass
class TransferSet:
    examples: list[Example]
    """Gold rows keep their labels; other rows have ``label=None``."""
    sources: list[str]
    ids: list[str]
    segments: list[tuple[str, int, int]]
    """``(source, start, end)``: contiguous rows of one source, each cached on its own."""
    report: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.examples)

    def indices(self, source: str | None = None) -> list[int]:
        return [i for i, s in enumerate(self.sources) if source is None or s == source]

    def segment_examples(self) -> list[list[Example]]:
        return [self.examples[a:b] for _, a, b in self.segments]

    def confident(self, logits: list[np.ndarray], task: Task, min_confidence: float | None) -> list[int]:
        """Row indices kept for training: every gold row, and each teacher-labelled row whose teacher
        confidence (softmax max; tagging: its mean over words) is ≥ ``min_confidence``."""
        if min_confidence is None:
            return list(range(len(self)))
        check_confidence_fits(min_confidence, task)
        keep, dropped = [], {}
        for i, (source, z) in enumerate(zip(self.sources, logits)):
            if source != "gold" and confidence(z) < min_confidence:
                dropped[source] = dropped.get(source, 0) + 1
            else:
                keep.append(i)
        self.report["min_confidence"] = min_confidence
        self.report["filtered"] = dropped
        self.report["trained_on"] = len(keep)
        console.print(f"transfer set: {sum(dropped.values()):,} teacher-labelled rows below confidence {min_confidence:g} "
                      f"left out; {len(keep):,} rows kept")
        return keep

    def write(self, path: Path) -> None:
        """One JSON line per row: id, source and text (``transfer.jsonl`` in the run directory), written
        to a temporary name and renamed, so a kill never leaves half a file."""
        rows = []
        for e, s, i in zip(self.examples, self.sources, self.ids):
            row = {"id": i, "source": s, "text": e.text}
            if e.text_pair is not None:
                row["text_pair"] = e.text_pair
            rows.append(json.dumps(row, ensure_ascii=False) + "\n")
        atomic_write_text(path, "".join(rows))


def confidence(logits: np.ndarray) -> float:
    """The teacher's confidence on one example: max softmax probability (tagging: mean over words;
    words cut off by truncation, whose logits are all zero, count like the others)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    return float(p.max(-1).mean())


def build_transfer_set(cfg: TransferConfig, data: DataSplits, task: Task, seed: int, data_cfg: DataConfig,
                       teacher_dir: str | None = None, mask_token: str | None = None) -> TransferSet:
    """The transfer set of a run: ``data.train`` + ``cfg.unlabelled`` + ``cfg.augment`` (see the module doc)."""
    held_out = data.held_out or [e for split in ("validation", "test") for e in (data.split(split) or [])]
    exact = {example_key(e, normalised=False) for e in held_out}
    normal = {either_order(example_key(e)) for e in held_out}
    seen: set[str] = set()
    examples: list[Example] = []
    sources: list[str] = []
    segments: list[tuple[str, int, int]] = []
    report: dict = {"sources": {}, "leaked_exact": {}, "leaked_normalised": {}, "duplicates": {}}

    def add(source: str, items: list[Example]) -> None:
        start = len(examples)
        for e in items:
            key = example_key(e)
            if example_key(e, normalised=False) in exact:
                report["leaked_exact"][source] = report["leaked_exact"].get(source, 0) + 1
            elif either_order(key) in normal:
                report["leaked_normalised"][source] = report["leaked_normalised"].get(source, 0) + 1
            elif source != "gold" and key in seen:
                report["duplicates"][source] = report["duplicates"].get(source, 0) + 1
            else:
                seen.add(key)
                examples.append(e if source == "gold" else Example(e.text, e.text_pair, None))
                sources.append(source)
        if len(examples) > start:
            segments.append((source, start, len(examples)))
        report["sources"][source] = len(examples) - start

    add("gold", data.train)
    if not examples:
        raise KdexamError(f"Every training example of '{data.name}' also stands in its validation or test split "
                          f"({len(data.train):,} of {len(data.train):,}); give held-out splits that differ from train.")
    kept_gold = examples[:]  # (the gold rows that did not leak: only these are augmented)
    if cfg.unlabelled:
        per_source = {name: read_unlabelled(name, cfg, task, data_cfg) for name in cfg.unlabelled}
        if len(per_source) > 1:
            report["unlabelled_sources"] = {name: len(rows) for name, rows in per_source.items()}
        add("unlabelled", [e for rows in per_source.values() for e in rows])
    if cfg.augment:
        from kdexam.data.augment import build_augmenter

        originals = kept_gold
        for method in cfg.augment:
            augmenter = build_augmenter(method, teacher_dir=teacher_dir, vectors_file=cfg.augment_vectors,
                                        mlm_model=cfg.augment_mlm_model, p=cfg.augment_p, mask_token=mask_token)
            console.print(f"transfer set: augmenting {len(originals):,} examples with {method} × {cfg.augment_n}")
            made = augmenter.augment(originals, cfg.augment_n, seed, task.kind)
            add(f"augmented:{method}", [e for _, e in made])
    report["total"] = len(examples)
    report = {k: v for k, v in report.items() if v != {}}
    dropped = sum(sum(report.get(k, {}).values()) for k in ("leaked_exact", "leaked_normalised", "duplicates"))
    read = report.get("unlabelled_sources")
    per_source = f" ({', '.join(f'{Path(k).name} {v:,}' for k, v in read.items())} read)" if read else ""
    console.print(f"transfer set: {len(examples):,} examples ({', '.join(f'{k} {v:,}' for k, v in report['sources'].items())})"
                  f"{per_source}; {dropped:,} dropped as duplicates of validation/test or of earlier rows")
    return TransferSet(examples, sources, [example_id(e) for e in examples], segments, report)


def check_confidence_fits(min_confidence: float | None, task: Task) -> None:
    """``min_confidence`` is refused for a regression teacher (it has no class probabilities); checked
    before any teacher work."""
    if min_confidence is not None and task.kind == "regression":
        raise KdexamError("--min-confidence filters by the teacher's class probabilities; a regression teacher has none.")


def check_unlabelled_column(cfg: TransferConfig) -> None:
    """``unlabelled_column`` names a column of a CSV/TSV/JSON(L) source; with only .txt files and
    built-in datasets (read by their own columns) it would do nothing, so it is refused."""
    from kdexam.data.builtin import BUILTIN_DATASETS

    tables = [n for n in cfg.unlabelled if n not in BUILTIN_DATASETS and Path(n).suffix.lower() != ".txt"]
    if cfg.unlabelled_column is not None and cfg.unlabelled and not tables:
        raise KdexamError(f"--unlabelled-column names a column of a CSV, TSV or JSONL source, and {', '.join(cfg.unlabelled)} "
                          "has none (a .txt file holds one text per line; a built-in dataset is read by its own columns); "
                          "drop --unlabelled-column.")


def check_unlabelled_name(name: str) -> None:
    """An unlabelled source is a built-in dataset or an existing file; anything else is refused
    with the closest built-in name."""
    from kdexam.data.builtin import BUILTIN_DATASETS, closest_dataset

    if name in BUILTIN_DATASETS or Path(name).expanduser().is_file():
        return
    close = closest_dataset(name)
    hint = f"did you mean '{close}'?" if close else "pass a .txt, .csv, .tsv or .jsonl file or a built-in name such as movie-dialog."
    raise KdexamError(f"Unlabelled text '{name}' is neither a built-in dataset nor an existing file; {hint}")


def read_unlabelled(name: str, cfg: TransferConfig, task: Task, data_cfg: DataConfig) -> list[Example]:
    """The unlabelled examples of one source ``name`` (one of ``cfg.unlabelled``): a built-in dataset
    (its train split), a ``.txt`` file (one text per line), or a CSV/TSV/JSONL file
    (``unlabelled_column``, default the data's text column); for pair tasks each row needs both
    texts. Tagging splits each text on whitespace into words. ``max_unlabelled``: the first N of a
    fixed seeded shuffle of this source (a source of at most N texts is taken whole, in its order)."""
    from kdexam.data.builtin import BUILTIN_DATASETS, prepare_dataset

    path = Path(name).expanduser()
    read_cfg = data_cfg.model_copy(update={"text_column": cfg.unlabelled_column or data_cfg.text_column,
                                           "label_column": NO_LABEL_COLUMN})
    flag = "--unlabelled-column"
    if name in BUILTIN_DATASETS:  # (a built-in is read by its own columns, whatever the user's data has)
        builtin_cfg = read_cfg.model_copy(update={"text_column": "text", "text_pair_column": None})
        examples = read_directory(prepare_dataset(name), builtin_cfg)[0]["train"]
    elif path.is_file() and path.suffix.lower() == ".txt":
        if task.text_pair:
            raise KdexamError(f"Unlabelled file '{path}' has one text per line, but the task reads text pairs; "
                              "give a CSV or JSONL file with both text columns.")
        examples = [Example(line.strip()) for line in read_lines(path) if line.strip()]
    elif path.is_file():
        examples = read_file(path, read_cfg, flag)
    else:
        check_unlabelled_name(name)
    if task.text_pair and any(e.text_pair is None for e in examples):
        raise KdexamError(f"Unlabelled text '{name}' has no second text, but the task reads text pairs; "
                          "name its column with --text-pair-column.")
    if not task.text_pair:
        examples = [Example(_text(e.text)) for e in examples]
    if task.kind == "token-classification":
        examples = [Example(_text(e.text).split()) for e in examples]
        examples = [e for e in examples if e.text]
    examples = [Example(e.text, e.text_pair) for e in examples]
    if not examples:
        raise KdexamError(f"Unlabelled text '{name}' holds no texts (it is empty or every line is blank); give texts "
                          "there, or leave it out of --unlabelled.")
    if cfg.max_unlabelled is not None and len(examples) > cfg.max_unlabelled:  # (a smaller source is taken whole, in order)
        random.Random(UNLABELLED_SHUFFLE_SEED).shuffle(examples)
        examples = examples[: cfg.max_unlabelled]
    return examples
