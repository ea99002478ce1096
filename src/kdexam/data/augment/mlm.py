"""Masked-LM replacement: words swapped for a local masked language model's predictions (TinyBERT)."""

from __future__ import annotations

import random
from pathlib import Path

from kdexam.data.augment.base import (
    Selection,
    Tags,
    Words,
    WordSubstitution,
    check_probability,
    match_case,
)
from kdexam.data.augment.vocab import whole_words
from kdexam.errors import KdexamError

MAX_TOKENS_PER_BATCH = 4096
"""Padded tokens per forward pass at most (the logits are tokens × vocabulary floats)."""


class MlmAugmenter(WordSubstitution):
    """Each word, with probability ``p``, is replaced by a word a masked language model predicts.

    Procedure: the words drawn for replacement (see
    :class:`~kdexam.data.augment.base.WordSubstitution`: each word that has a letter, with
    probability ``p``, at least one per copy; bracketed tokens such as ``[MASK]`` stay)
    are each replaced by one mask token; the sentence (words joined with spaces) goes
    through the masked LM; at each mask the ``top_k`` most probable whole-word tokens (no
    ``##`` pieces, no special tokens, alphabetic, not the original word) are the
    candidates, and one is chosen uniformly with the copy's generator. The replacement
    takes the original's simple casing. Word count and tags are kept; a word whose mask
    was cut off by the model's maximum length stays. Sentences are run in batches (sorted
    by length, at most ``batch_size`` per pass) under ``torch.inference_mode``; the model
    is loaded on first use, from a local directory only. Every random number is drawn
    before the model runs, and the candidates are taken as a set (ordered by token id),
    so the output does not depend on the batching; on another device (``cuda`` vs
    ``cpu``) only near-ties at the top-k boundary can change a candidate set.

    Jiao et al. (2020) mask one word at a time (the rest of the sentence intact), take the
    top K = 15 predictions that are not ``##`` pieces (GloVe neighbours for words of
    several pieces), leave stop words alone and replace each word with probability 0.4
    (their released code makes 10 to 30 copies per example, depending on the task); here
    the drawn words are masked together, one model pass per copy, every word may be
    replaced, whatever its number of pieces, by one predicted token, and the original word
    is never its own replacement.

    Args:
        model: a local directory with a masked-LM model (``AutoModelForMaskedLM``) and its
            tokenizer, e.g. ``bert-base-uncased`` saved with ``save_pretrained``. kdexam's
            teachers and built-in encoders have no masked-LM head and are refused.
        p: per-word probability, 0 < p <= 1 (default 0.15, BERT's masking rate).
        top_k: number of predicted words to choose from, ≥ 1 (default 10).
        batch_size: sentences per forward pass (default 32).
        device: torch device (default ``cuda`` when available, else ``cpu``).

    Source: X. Jiao, Y. Yin, L. Shang, X. Jiang, X. Chen, L. Li, F. Wang and Q. Liu,
    "TinyBERT: Distilling BERT for Natural Language Understanding", Findings of EMNLP 2020
    (arXiv:1909.10351).
    """

    name = "mlm"

    def __init__(self, model: str, p: float = 0.15, top_k: int = 10, batch_size: int = 32,
                 device: str | None = None) -> None:
        self.p = check_probability(p, self.name)
        for what, value in (("top_k", top_k), ("batch_size", batch_size)):
            if int(value) != value or value < 1:
                raise ValueError(f"{what} must be an integer >= 1, got {value!r}.")
        self.model_path = str(model)
        self.top_k = int(top_k)
        self.batch_size = int(batch_size)
        self.device = device
        self._model = None
        self._tokenizer = None
        self._candidates = None  # bool tensor over the logits' vocabulary
        self._surface: dict[int, str] = {}

    @classmethod
    def from_options(cls, *, mlm_model=None, p=None, **_) -> MlmAugmenter:
        if not mlm_model:
            raise KdexamError("The mlm augmenter needs a masked-LM model: pass --augment-mlm-model DIR.")
        return cls(mlm_model, p=0.15 if p is None else p)

    def eligible(self, word: str) -> bool:
        """Words with a letter, except special-token look-alikes such as ``[MASK]`` or ``<unk>``."""
        bracketed = word[:1] in "[<" and word[-1:] in "]>" and len(word) > 2
        return not bracketed and any(c.isalpha() for c in word)

    def augment_words(self, words: Words, tags: Tags, rng: random.Random) -> tuple[Words, Tags]:
        return self.augment_batch([(words, tags, rng)])[0]

    # ---------------------------------------------------------------- model

    def load(self) -> None:
        """Load the tokenizer and the masked-LM model (once)."""
        if self._model is not None:
            return
        path = Path(self.model_path).expanduser()
        if not path.is_dir():
            raise KdexamError(f"Masked-LM model directory '{path}' does not exist; pass a local model directory "
                              "(saved with save_pretrained) to --augment-mlm-model.")
        import torch
        from transformers import AutoModelForMaskedLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        no_head = (f"Model '{path}' has no masked-LM head; give a masked-LM model (e.g. a saved "
                   "bert-base-uncased) for the mlm augmenter.")
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the "newly initialized weights" report is our error below
        try:
            model, info = AutoModelForMaskedLM.from_pretrained(str(path), local_files_only=True,
                                                               output_loading_info=True)
        except ValueError:  # a configuration class with no masked-LM model (GPT-2, T5, …)
            raise KdexamError(no_head) from None
        except OSError as e:
            raise KdexamError(f"Could not load masked-LM model '{path}' ({str(e).splitlines()[0]}); "
                              "pass a local model directory to --augment-mlm-model.") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        prefix = getattr(model, "base_model_prefix", "") + "."
        if any(not key.startswith(prefix) for key in info.get("missing_keys", ())):
            raise KdexamError(no_head)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise KdexamError(f"Could not load the tokenizer of masked-LM model '{path}' "
                              f"({str(e).splitlines()[0]}); save the tokenizer next to the model.") from None
        if tokenizer.mask_token_id is None:
            raise KdexamError(f"The tokenizer of model '{path}' has no mask token; give a masked-LM model "
                              "for the mlm augmenter.")
        size = model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() is not None \
            else model.config.vocab_size
        words = {i: w for w, i in whole_words(tokenizer).items() if i < size}
        if not words:
            raise KdexamError(f"The vocabulary of model '{path}' has no whole-word token; give a masked-LM model "
                              "with a word-level vocabulary for the mlm augmenter.")
        candidates = torch.zeros(size, dtype=torch.bool)
        candidates[list(words)] = True
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._model = model.to(device).eval()
        self._tokenizer = tokenizer
        self._candidates = candidates.to(device)
        self._surface = words

    def _max_length(self) -> int:
        limits = [getattr(self._tokenizer, "model_max_length", None),
                  getattr(self._model.config, "max_position_embeddings", None)]
        return min([x for x in limits if isinstance(x, int) and 0 < x < 10**6] or [512])

    def _predict(self, sentences: list[tuple[str, list[str | None]]]) -> list[list[list[int] | None]]:
        """For each (text with masks, per mask in order the word it replaces or ``None`` for a
        mask token that was in the text already): per mask found, the candidate token ids
        (top_k, original left out, sorted by id), or ``None`` for a mask of the text."""
        import torch

        tok = self._tokenizer
        encoded = tok([s for s, _ in sentences], truncation=True, max_length=self._max_length())
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in encoded]
        lengths = [len(ids) for ids in encoded["input_ids"]]
        order = sorted(range(len(sentences)), key=lambda i: (lengths[i], i))
        out: list[list[list[int] | None]] = [[] for _ in sentences]
        mask_id = tok.mask_token_id
        device = self._candidates.device
        at = 0
        while at < len(order):
            batch = [order[at]]
            while (at + len(batch) < len(order) and len(batch) < self.batch_size
                   and (len(batch) + 1) * lengths[order[at + len(batch)]] <= MAX_TOKENS_PER_BATCH):
                batch.append(order[at + len(batch)])
            at += len(batch)
            padded = tok.pad([{k: encoded[k][i] for k in keys} for i in batch], return_tensors="pt")
            ids = padded["input_ids"]
            rows, cols = (ids == mask_id).nonzero(as_tuple=True)
            if len(rows) == 0:
                continue
            with torch.inference_mode():
                logits = self._model(**{k: v.to(device) for k, v in padded.items()}).logits
                logits = logits[rows.to(device), cols.to(device)]
            logits = logits.float().masked_fill(~self._candidates[: logits.shape[-1]], float("-inf"))
            width = min(self.top_k + 1, int(self._candidates.sum()))
            top = logits.topk(width, dim=-1).indices.cpu().tolist()
            masks_seen: dict[int, int] = {}
            for r, cand in zip(rows.tolist(), top):
                i = batch[r]
                m = masks_seen.get(i, 0)
                masks_seen[i] = m + 1
                slots = sentences[i][1]
                if m >= len(slots) or slots[m] is None:
                    out[i].append(None)
                    continue
                original = _letters(slots[m])
                kept = [c for c in cand if self._surface[c].lower() != original][: self.top_k]
                out[i].append(sorted(kept))
        return out

    def augment_batch(self, items: list[tuple[Words, Tags, random.Random]]) -> list[tuple[Words, Tags]]:
        selections: list[Selection] = [self.select(words, rng) if words else [] for words, _, rng in items]
        todo = [n for n, sel in enumerate(selections) if sel]
        results = [(list(words), tags) for words, tags, _ in items]
        if not todo:
            return results
        self.load()
        mask = self._tokenizer.mask_token
        sentences = []
        for n in todo:
            words, chosen = items[n][0], dict(selections[n])
            sentences.append((" ".join(mask if j in chosen else w for j, w in enumerate(words)), mask_slots(words, chosen, mask)))
        predictions = self._predict(sentences)
        for n, per_mask in zip(todo, predictions):
            words = results[n][0]
            ours = [cand for cand in per_mask if cand is not None]
            for (j, u), cand in zip(selections[n], ours):
                if cand:
                    words[j] = match_case(words[j], self._surface[cand[int(u * len(cand))]])
        return results

    def __repr__(self) -> str:
        return f"MlmAugmenter(model={self.model_path!r}, p={self.p}, top_k={self.top_k}, batch_size={self.batch_size})"


def mask_slots(words: Words, chosen, mask: str) -> list[str | None]:
    """One entry per mask token of the masked sentence, in order: the word a chosen position
    replaces, ``None`` for each mask already in the text (also one glued to punctuation, ``[MASK],``)."""
    slots: list[str | None] = []
    for j, w in enumerate(words):
        slots.extend([w] if j in chosen else [None] * w.count(mask))
    return slots


def _letters(word: str) -> str:
    """``word`` lower-cased, letters only: "Good," -> "good"."""
    return "".join(c for c in word if c.isalpha()).lower()
