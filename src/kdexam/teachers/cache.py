"""Teacher outputs, computed once and cached on disk, by name.

The teacher runs once per (teacher weights, tokenizer, texts, task, max length): a
fingerprint of those keys names a directory under ``$KDEXAM_HOME/cache/teacher/``. A
``kdexam teacher`` run leaves there the logits it scored its evaluation split with.
Inside it every named output (:mod:`kdexam.outputs`) has its own files and its own
manifest, so a run that needs another output (say ``attention.6`` after ``logits``)
adds it without recomputing the rest, and a partial or corrupted output (missing
file, wrong size, checksum mismatch) is rebuilt alone.

Stored per example, in content order (examples sorted by text, so the same examples in
another order share one cache), memory-mapped:

- ``logits``: float32 [N, C]; for tagging word-level [Σ words, C] with offsets (the
  teacher's logits at each word's first subword, so that a student with another
  tokenizer can still be matched word by word);
- ``cls.K`` / ``mean.K``: float16 [N, H];
- ``hidden.K``, ``query.K``, ``key.K``, ``value.K``: float16 [Σ tokens, H] with offsets;
- ``word.K`` (tagging): float16 [Σ words, H] with offsets;
- ``attention.K``: float16 [Σ L_i², heads] with offsets (example i is ``[heads, L_i, L_i]``).

Files: ``NAME.npy`` (+ ``NAME.offsets.npy``) and ``NAME.json`` (files, sizes,
SHA-256), the manifest written last, so a reader never takes a half-written output.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from kdexam.data.readers import Example
from kdexam.outputs import parse_name
from kdexam.paths import atomic_write_json, kdexam_home, sha256_file, sweep_stale, temp_file
from kdexam.tasks import Task

FORMAT = 2
console = Console(stderr=True)


FINGERPRINTED = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt",  # weights, in any format
                 ".json", ".txt", ".model", ".py")  # configuration, tokenizer, the model's own code
NOT_THE_MODEL = ("metrics.json", "kdexam_model.json", "export.json", "efficiency.json")
"""JSON files of a run that say something about the model without being it."""


def model_fingerprint(model_dir: Path) -> str:
    """SHA-256 over the teacher's weight, configuration, tokenizer and code files (content, not names
    or dates), so that retrained weights in any format never reuse the old outputs. A JSON or text
    file is part of the model only when it is one a model folder holds (``config.json``, the
    tokenizer's, ``task.json``…), not a file a user or a command wrote beside it (``kdexam
    evaluate --out RUN/eval-test.json`` made every teacher output be computed again, and an
    exam distil every student of that teacher again)."""
    h = hashlib.sha256()
    for name in sorted(p.name for p in model_dir.iterdir()):
        if not name.endswith(FINGERPRINTED) or name in NOT_THE_MODEL:
            continue
        if name.endswith((".json", ".txt")) and not _model_file(name):
            continue
        h.update(name.encode())
        h.update(sha256_file(model_dir / name).encode())
    return h.hexdigest()


def _model_file(name: str) -> bool:
    """A JSON or text file name that a model folder holds: config, task, tokenizer (vocab, merges,
    specials, added tokens), generation and preprocessing configs."""
    return (name in ("config.json", "task.json", "vocab.txt", "merges.txt", "vocab.json")
            or name.startswith(("tokenizer", "special_tokens", "added_tokens", "generation_config", "preprocessor_config",
                                "sentence_bert", "config_sentence", "modules")))


def hub_commit(repo_id: str) -> str | None:
    """The commit of a hub model id's local copy: the revision ``from_pretrained`` reads, named by
    the hub cache's ``refs/main``; None when there is no local copy (or the id is not a repo id)."""
    try:
        from huggingface_hub import constants
        from huggingface_hub.file_download import repo_folder_name

        ref = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model") / "refs" / "main"
        if not ref.is_file():
            return None
        return ref.read_text(encoding="utf-8").strip() or None
    except Exception:  # not a valid repo id, or no hub library
        return None


def model_key(path: Path, name: str) -> str:
    """A model's identity for a cache or a run's ``inputs.json``: the fingerprint of its local folder
    ``path`` (:func:`model_fingerprint`), or the hub id ``name`` at its commit (:func:`hub_model_key`)."""
    return model_fingerprint(path) if path.is_dir() else hub_model_key(name)


def hub_model_key(repo_id: str) -> str:
    """A hub model id's cache identity, ``id@commit`` (:func:`hub_commit`), so that a model updated on
    the hub and downloaded again never reuses the old outputs; the bare id when it has no local copy
    (:attr:`kdexam.teachers.teacher.Teacher.key` loads the model first in that case)."""
    commit = hub_commit(repo_id)
    return f"{repo_id}@{commit}" if commit else repo_id


def content_key(e: Example) -> str:
    """What the teacher reads of an example: its text (and pair), never its label or position."""
    return json.dumps([e.text, e.text_pair], ensure_ascii=False)


def fingerprint(model_key: str, examples: list[Example], task: Task | None, max_length: int) -> str:
    """The cache key of one teacher on one list of examples (outputs are files inside it); the
    teacher sorts its examples by :func:`content_key` first, so the key is the content's."""
    h = hashlib.sha256()
    identity = {"format": FORMAT, "model": model_key, "kind": task.kind if task else "general",
                "labels": task.labels if task else None, "max_length": max_length}
    if task is not None and task.kind == "token-classification":
        identity["words"] = "spaced"  # words encoded by space_before_words (older tagging caches are not reused)
    h.update(json.dumps(identity).encode())
    for e in examples:
        h.update(content_key(e).encode())
        h.update(b"\n")
    return h.hexdigest()[:32]


def content_order_key(model_key: str, examples: list[Example], task: Task | None, max_length: int) -> tuple[list[int], str]:
    """``(order, key)``: the indices of ``examples`` in content order (:func:`content_key`), as a
    cache stores them, and the :func:`fingerprint` of that sorted list — so the same examples in
    another order (another seed's shuffle) share one cache."""
    order = sorted(range(len(examples)), key=lambda i: content_key(examples[i]))
    return order, fingerprint(model_key, [examples[i] for i in order], task, max_length)


def cache_dir(key: str) -> Path:
    return kdexam_home() / "cache" / "teacher" / key


# ---- one stored output -------------------------------------------------------------------------


@dataclass
class Stored:
    """One named output on N examples: ``data`` rows, ``offsets`` [N + 1] when examples vary in length."""

    data: np.ndarray
    offsets: np.ndarray | None = None
    square: bool = False
    """attention: example i's rows are its L_i² (query, key) pairs, ``[heads]`` each."""

    def __len__(self) -> int:
        return len(self.offsets) - 1 if self.offsets is not None else len(self.data)

    def example(self, i: int) -> np.ndarray:
        if self.offsets is None:
            return self.data[i]
        rows = self.data[self.offsets[i] : self.offsets[i + 1]]
        if self.square:
            n = int(round(len(rows) ** 0.5))
            return rows.reshape(n, n, -1).transpose(2, 0, 1)
        return rows


def pack(name: str, per_example: list[np.ndarray]) -> Stored:
    """Per-example stored forms (see :func:`kdexam.teachers.teacher.stored_form`) → one :class:`Stored`."""
    kind, _ = parse_name(name)
    dtype = np.float32 if kind == "logits" else np.float16
    if kind == "attention":
        rows = [a.transpose(1, 2, 0).reshape(-1, a.shape[0]) for a in per_example]
    else:
        rows = list(per_example)
    variable = kind in ("hidden", "query", "key", "value", "attention", "word") or bool(rows and rows[0].ndim == 2 and kind == "logits")
    if not rows:  # a data-parallel process with no examples (fewer examples than processes)
        return Stored(np.zeros(0, dtype), np.zeros(1, dtype=np.int64) if variable else None, square=kind == "attention")
    if not variable:
        return Stored(np.stack(rows).astype(dtype))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    return Stored(np.concatenate(rows).astype(dtype), offsets, square=kind == "attention")


def write_output(d: Path, name: str, stored: Stored) -> None:
    """Write one output's files into ``d`` (each atomically), then its manifest. Several processes
    may write the same entry at once: each file is replaced whole, and the contents are the same.
    Temporary files of writers that were killed are swept first."""
    d.mkdir(parents=True, exist_ok=True)
    sweep_stale(d)
    arrays = {f"{name}.npy": stored.data}
    if stored.offsets is not None:
        arrays[f"{name}.offsets.npy"] = stored.offsets
    for fname, array in arrays.items():
        fd, tmp = temp_file(d / fname)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(array))
            os.replace(tmp, d / fname)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    atomic_write_json(d / f"{name}.json", {
        "format": FORMAT, "name": name, "square": stored.square, "examples": len(stored),
        "sizes": {f: (d / f).stat().st_size for f in arrays}, "sha256": {f: sha256_file(d / f) for f in arrays},
    })


def read_output(d: Path, name: str) -> Stored | None:
    """The output ``name`` from ``d``, memory-mapped; ``None`` when absent, partial or corrupted."""
    m = d / f"{name}.json"
    if not m.is_file():
        return None
    try:
        manifest = json.loads(m.read_text())
        ok = manifest["format"] == FORMAT and all(
            (d / f).is_file() and (d / f).stat().st_size == size and sha256_file(d / f) == manifest["sha256"][f]
            for f, size in manifest["sizes"].items())
    except (OSError, ValueError, KeyError):
        ok = False
    if not ok:
        console.print(f"[yellow]teacher cache {d / name} is incomplete or corrupted; rebuilding it[/]")
        return None
    data = np.load(d / f"{name}.npy", mmap_mode="r")
    offsets = np.load(d / f"{name}.offsets.npy") if (d / f"{name}.offsets.npy").is_file() else None
    return Stored(data, offsets, square=bool(manifest.get("square")))


# ---- a teacher's outputs on a list of examples ---------------------------------------------------------


@dataclass
class TeacherOutputs:
    """Named teacher outputs on a list of examples: cached ones memory-mapped, the rest computed
    online for each batch by ``compute(indices, names)`` (the teacher tokenizing those examples itself)."""

    stored: dict[str, Stored]
    path: Path | None = None
    from_cache: bool = False
    """True when every cached output was read from an earlier run's cache (the teacher did not run)."""
    online: tuple[str, ...] = ()
    """Outputs computed for each batch instead of cached (cache off, or beyond the disk budget)."""
    compute: Callable[[list[int], list[str]], dict[str, list[np.ndarray]]] | None = None
    """``compute(indices, names)``: stored forms of ``names`` for those examples (the online path)."""
    notes: list[str] = field(default_factory=list)
    rows: np.ndarray | None = None
    """``rows[i]``: the stored row of the caller's example ``i`` (``None``: the same order)."""

    def _rows(self, indices) -> list[int]:
        return list(indices) if self.rows is None else [int(self.rows[i]) for i in indices]

    def __len__(self) -> int:
        return len(next(iter(self.stored.values())))

    def example(self, i: int, name: str = "logits") -> np.ndarray:
        return self.stored[name].example(self._rows([i])[0])

    def gather(self, indices: list[int], names) -> dict[str, list[np.ndarray]]:
        """Each name's stored form for each example of ``indices`` (online names computed now)."""
        rows = self._rows(indices)
        out = {n: [self.stored[n].example(i) for i in rows] for n in names if n in self.stored}
        missing = [n for n in names if n not in self.stored]
        if missing:
            out.update(self.compute(rows, missing))
        return out


class JoinedOutputs(TeacherOutputs):
    """Several :class:`TeacherOutputs` (one per transfer-set segment, each with its own cache) seen as
    one list of examples: index ``i`` of the whole is index ``i - start`` of the part holding it."""

    def __init__(self, parts: list[TeacherOutputs], sizes: list[int]):
        first = parts[0]
        super().__init__(first.stored, first.path, from_cache=all(p.from_cache for p in parts),
                         online=tuple(sorted({n for p in parts for n in p.online})), notes=[n for p in parts for n in p.notes])
        self.parts = parts
        self.starts = np.cumsum([0] + list(sizes))
        self.paths = [p.path for p in parts]

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _locate(self, i: int) -> tuple[TeacherOutputs, int]:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[k], i - int(self.starts[k])

    def example(self, i: int, name: str = "logits") -> np.ndarray:
        part, j = self._locate(i)
        return part.example(j, name)

    def gather(self, indices: list[int], names) -> dict[str, list[np.ndarray]]:
        out: dict[str, list] = {n: [None] * len(indices) for n in names}
        by_part: dict[int, list[tuple[int, int]]] = {}
        for r, i in enumerate(indices):
            k = int(np.searchsorted(self.starts, i, side="right")) - 1
            by_part.setdefault(k, []).append((r, i - int(self.starts[k])))
        for k, items in by_part.items():
            got = self.parts[k].gather([j for _, j in items], names)
            for n in names:
                for (r, _), value in zip(items, got[n]):
                    out[n][r] = value
        return out
