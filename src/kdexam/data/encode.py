"""Tokenise examples for a model and batch them with dynamic padding.

Token classification aligns word tags to subwords: the tag sits on each word's
first subword and every other position (continuation subwords, special tokens)
gets ``-100``, which the loss ignores. ``word_ids`` are kept so that predictions
can be mapped back to one tag per word. A word that tokenises to nothing (format characters
alone, such as a soft hyphen) is encoded as the unknown token, so its tag is learnt and
predicted like any other. Words are encoded as they read inside a sentence: a
byte-level BPE tokenizer (RoBERTa, GPT-2) gets its prefix space turned on for pre-split words
(:func:`kdexam.inference.serving.space_before_words`, which the torch-free predictor applies too).

Batches are length-bucketed: after a seeded shuffle, examples are sorted by length
within chunks of ``batch_size × 50``, cut into batches, and the batches shuffled —
so a batch pads to nearly its own longest input, not to ``max_length``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from kdexam.data.readers import Example
from kdexam.inference.serving import space_before_words, wordless
from kdexam.tasks import IGNORE_INDEX, Task

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Features:
    """Encoded examples: one dict of lists per example."""

    rows: list[dict]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lengths(self) -> list[int]:
        return [len(r["input_ids"]) for r in self.rows]


class FeatureDataset(Dataset):
    """Rows of ``features`` (only those of ``indices`` when given); each item carries its ``index``
    in ``features``, which is also its index in the teacher outputs."""

    def __init__(self, features: Features, indices: list[int] | None = None):
        self.rows = features.rows
        self.indices = list(range(len(self.rows))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        index = self.indices[i]
        return dict(self.rows[index], index=index)


def encode(examples: list[Example], tokenizer, task: Task, max_length: int, batch: int = 1000) -> Features:
    """Tokenise ``examples`` (in chunks, with the fast tokenizer) and attach labels."""
    rows: list[dict] = []
    label2id = task.label2id
    if task.kind == "token-classification" and getattr(tokenizer, "is_fast", False):
        space_before_words(tokenizer.backend_tokenizer)  # RoBERTa-style BPE: 'Ġgood', not 'go' + 'od'
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        if task.kind == "token-classification":
            enc = tokenizer([e.text for e in chunk], is_split_into_words=True, truncation=True, max_length=max_length)
        else:
            pairs = [e.text_pair for e in chunk] if task.text_pair else None
            enc = tokenizer([e.text for e in chunk], pairs, truncation=True, max_length=max_length)
        for j, e in enumerate(chunk):
            row = {k: enc[k][j] for k in MODEL_INPUTS if k in enc}
            if task.kind == "token-classification":
                word_ids = enc.word_ids(j)
                if empty := wordless(word_ids, len(e.text), len(row["input_ids"]) < max_length):
                    one = tokenizer([[unknown_word(tokenizer) if w in empty else word for w, word in enumerate(e.text)]],
                                    is_split_into_words=True, truncation=True, max_length=max_length)
                    row, word_ids = {k: one[k][0] for k in MODEL_INPUTS if k in one}, one.word_ids(0)
                row["word_ids"] = [-1 if w is None else w for w in word_ids]
                row["n_words"] = len(e.text)
                if e.label is not None:
                    row["labels"] = align_labels(word_ids, [label2id[t] for t in e.label])
            elif e.label is not None:
                row["labels"] = float(e.label) if task.kind == "regression" else label2id[str(e.label)]
            rows.append(row)
    return Features(rows)


def unknown_word(tokenizer) -> str:
    """What a word that tokenises to nothing is read as: the tokenizer's unknown token (recorded in
    ``export.json`` for the torch-free predictor), ``[UNK]`` for one without."""
    return tokenizer.unk_token or "[UNK]"


def align_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Put each word's label on its first subword; ``-100`` everywhere else."""
    out, previous = [], None
    for w in word_ids:
        out.append(IGNORE_INDEX if w is None or w == previous else word_labels[w])
        previous = w
    return out


def first_subwords(word_ids: list[int], n_words: int) -> list[int]:
    """Each word's first-subword position in an encoding; -1 for a word cut off by truncation."""
    pos = [-1] * n_words
    for p, w in reversed(list(enumerate(word_ids))):
        if w is not None and w >= 0:
            pos[w] = p
    return pos


def words_from_subwords(word_ids: list[int], subword_preds: list[int], n_words: int, fill: int = 0) -> list[int]:
    """Map per-subword predictions back to one prediction per word (its first subword's).
    Words cut off by truncation get ``fill``."""
    out = [None] * n_words
    for w, p in zip(word_ids, subword_preds):
        if w is not None and w >= 0 and out[w] is None:
            out[w] = p
    return [fill if p is None else p for p in out]


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar length, reshuffled every epoch from ``seed + epoch``.

    With ``shuffle=False`` (evaluation) the batches are sorted by length, longest first."""

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool = True, seed: int = 0, bucket_mult: int = 50):
        self.lengths, self.batch_size, self.shuffle, self.seed = lengths, batch_size, shuffle, seed
        self.bucket = batch_size * bucket_mult
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's batch order; ``skip`` drops its first batches (a resumed run)."""
        self.epoch, self.skip = epoch, skip

    def batches(self) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        if not self.shuffle:
            idx.sort(key=lambda i: -self.lengths[i])
            return [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        rng = random.Random(self.seed + self.epoch)
        rng.shuffle(idx)
        batches = []
        for s in range(0, len(idx), self.bucket):
            chunk = sorted(idx[s : s + self.bucket], key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.skip :])

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


class Collator:
    """Pad model inputs with the tokenizer's pad token. Labels: each row's own, and for a row without
    a gold label (unlabelled or augmented text) ``-100`` (tagging: on every position) or NaN
    (regression), so that the gold loss skips it and the soft losses still see it. Tagging batches
    also get ``loss_mask``: each word's first subword, labelled or not."""

    def __init__(self, tokenizer, task: Task):
        self.tokenizer, self.task = tokenizer, task

    def __call__(self, rows: list[dict]) -> dict:
        inputs = [{k: r[k] for k in MODEL_INPUTS if k in r} for r in rows]
        batch = dict(self.tokenizer.pad(inputs, return_tensors="pt"))
        batch["index"] = torch.tensor([r["index"] for r in rows])
        if self.task.kind == "token-classification":
            width = batch["input_ids"].shape[1]
            labels = [r.get("labels") or [IGNORE_INDEX] * len(r["input_ids"]) for r in rows]
            batch["labels"] = torch.tensor([x + [IGNORE_INDEX] * (width - len(x)) for x in labels])
            if all("word_ids" in r for r in rows):
                mask = torch.zeros(len(rows), width, dtype=torch.bool)
                for b, r in enumerate(rows):
                    pos = [p for p in first_subwords(r["word_ids"], r["n_words"]) if p >= 0]
                    mask[b, pos] = True
                batch["loss_mask"] = mask
        elif self.task.kind == "regression":
            batch["labels"] = torch.tensor([r.get("labels", float("nan")) for r in rows], dtype=torch.float)
        else:
            batch["labels"] = torch.tensor([r.get("labels", IGNORE_INDEX) for r in rows], dtype=torch.long)
        return batch


def make_loader(features: Features, tokenizer, task: Task, batch_size: int, shuffle: bool, seed: int = 0,
                indices: list[int] | None = None) -> DataLoader:
    """Length-bucketed batches of ``features`` (of its rows ``indices`` only, when given)."""
    dataset = FeatureDataset(features, indices)
    lengths = features.lengths
    sampler = LengthBucketSampler([lengths[i] for i in dataset.indices], batch_size, shuffle=shuffle, seed=seed)
    # its own generator: creating an iterator must not draw from the global RNG (dropout), or a resumed
    # run would see different dropout masks than an uninterrupted one
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=Collator(tokenizer, task),
                      generator=torch.Generator().manual_seed(seed))
