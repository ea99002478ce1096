"""Teacher outputs, computed once and cached on disk.

The teacher runs once per (teacher weights, tokenizer, texts, max length, outputs):
a fingerprint of those keys a directory under ``$KDEXAM_HOME/cache/teacher/``
holding memory-mapped ``.npy`` files and a ``manifest.json`` with their sizes and
SHA-256 checksums. Every student, epoch and run that asks for the same outputs
reads them from there; a changed input gives a new key; a partial or corrupted
cache (missing file, wrong size, checksum mismatch) is detected and rebuilt.

Stored per example, in the order of the examples:

- classification / regression: ``logits`` of shape [N, C] (C = 1 for regression);
- tagging: word-level ``logits`` (the teacher's logits at each word's first
  subword) flattened to [Σ words, C], with ``offsets`` [N + 1] — word level, so
  that a student with another tokenizer can still be matched word by word.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from kdexam.data.encode import Features, encode, first_subwords
from kdexam.data.readers import Example
from kdexam.evaluation.predict import predict_logits
from kdexam.paths import atomic_write_json, kdexam_home, sha256_file
from kdexam.tasks import Task

FORMAT = 1
console = Console(stderr=True)


def model_fingerprint(model_dir: Path) -> str:
    """SHA-256 over the teacher's weight and tokenizer files (content, not names or dates)."""
    h = hashlib.sha256()
    for name in sorted(p.name for p in model_dir.iterdir()):
        if name.endswith((".safetensors", ".json", ".txt", ".model")) and name not in ("metrics.json", "kdexam_model.json"):
            h.update(name.encode())
            h.update(sha256_file(model_dir / name).encode())
    return h.hexdigest()


def fingerprint(model_key: str, examples: list[Example], task: Task, max_length: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "model": model_key, "kind": task.kind, "labels": task.labels,
                         "max_length": max_length, "outputs": ["logits"]}).encode())
    for e in examples:
        h.update(json.dumps([e.text, e.text_pair], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:32]


@dataclass
class TeacherOutputs:
    """Cached teacher logits, memory-mapped; ``rows(indices)`` gathers examples by index."""

    logits: np.ndarray
    offsets: np.ndarray | None
    path: Path
    from_cache: bool

    def __len__(self) -> int:
        return len(self.offsets) - 1 if self.offsets is not None else len(self.logits)

    def example(self, i: int) -> np.ndarray:
        if self.offsets is None:
            return self.logits[i]
        return self.logits[self.offsets[i] : self.offsets[i + 1]]

    def rows(self, indices: list[int]) -> torch.Tensor:
        """Classification/regression: a [B, C] tensor of the examples' logits."""
        return torch.from_numpy(np.stack([self.logits[i] for i in indices]).astype(np.float32))


def _valid(d: Path) -> bool:
    m = d / "manifest.json"
    if not m.is_file():
        return False
    try:
        manifest = json.loads(m.read_text())
        return all((d / f).is_file() and (d / f).stat().st_size == size and sha256_file(d / f) == manifest["sha256"][f]
                   for f, size in manifest["sizes"].items())
    except (OSError, ValueError, KeyError):
        return False


def _open(d: Path, from_cache: bool) -> TeacherOutputs:
    logits = np.load(d / "logits.npy", mmap_mode="r")
    offsets = np.load(d / "offsets.npy") if (d / "offsets.npy").is_file() else None
    return TeacherOutputs(logits, offsets, d, from_cache)


def word_level(logits: list[np.ndarray], features: Features) -> tuple[np.ndarray, np.ndarray]:
    """Per-example subword logits → the logits at each word's first subword, flattened."""
    rows, offsets = [], [0]
    for l, row in zip(logits, features.rows):
        words = np.zeros((row["n_words"], l.shape[-1]), dtype=np.float32)
        for w, pos in enumerate(first_subwords(row["word_ids"], row["n_words"])):
            if pos >= 0:  # words cut by truncation keep zeros: a uniform distribution
                words[w] = l[pos]
        rows.append(words)
        offsets.append(offsets[-1] + len(words))
    return np.concatenate(rows), np.asarray(offsets, dtype=np.int64)


def teacher_outputs(model, tokenizer, model_dir: Path, examples: list[Example], task: Task, max_length: int,
                    batch_size: int = 64, model_key: str | None = None) -> TeacherOutputs:
    """The teacher's logits on ``examples``: read from the cache, or computed once and cached.

    ``model`` may be a zero-argument callable returning the model, so that a cache hit
    never even loads the teacher."""
    key = fingerprint(model_key or model_fingerprint(Path(model_dir)), examples, task, max_length)
    d = kdexam_home() / "cache" / "teacher" / key
    if _valid(d):
        return _open(d, from_cache=True)
    if callable(model) and not isinstance(model, torch.nn.Module):
        model = model()
    if d.exists():
        console.print(f"[yellow]teacher cache {d} is incomplete or corrupted; rebuilding it[/]")
        shutil.rmtree(d)
    console.print(f"teacher: computing outputs for {len(examples)} examples (cached for later runs)")
    features = encode(examples, tokenizer, task, max_length)
    per_example = predict_logits(model, features, tokenizer, task, batch_size)
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=d.parent, prefix=f".{key}."))
    try:
        files = {"logits.npy": None}
        if task.kind == "token-classification":
            flat, offsets = word_level(per_example, features)
            np.save(tmp / "offsets.npy", offsets)
            files["offsets.npy"] = None
        else:
            flat = np.stack(per_example).astype(np.float32)
        np.save(tmp / "logits.npy", flat)
        atomic_write_json(tmp / "manifest.json", {
            "format": FORMAT, "fingerprint": key, "examples": len(examples), "task": task.kind,
            "sizes": {f: (tmp / f).stat().st_size for f in files},
            "sha256": {f: sha256_file(tmp / f) for f in files},
        })
        if d.exists():  # another process finished the same outputs first
            shutil.rmtree(d, ignore_errors=True)
        tmp.rename(d)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _open(d, from_cache=False)
