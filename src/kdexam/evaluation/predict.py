"""Run a model over encoded examples and turn its outputs into task predictions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from kdexam.data.encode import MODEL_INPUTS, Features, first_subwords, make_loader, words_from_subwords
from kdexam.parallel import attention_kernels, gather_items, my_share, rank_and_world
from kdexam.tasks import Task


def hf_forward(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Logits of a Hugging Face ``AutoModelFor…`` model."""
    return model(**{k: batch[k] for k in MODEL_INPUTS if k in batch}).logits


@torch.inference_mode()
def predict_logits(model, features: Features, tokenizer, task: Task, batch_size: int = 64,
                   forward: Callable = hf_forward, device: torch.device | None = None,
                   indices: list[int] | None = None) -> list[np.ndarray]:
    """Per-example logits in the original order (length-sorted batches inside); only the examples
    at ``indices`` (the rest ``None``) when given. Tagging logits are cut to each example's own length."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    out: list[np.ndarray | None] = [None] * len(features)
    with attention_kernels(device):  # (length-sorted batches: a new shape nearly every batch)
        for batch in make_loader(features, tokenizer, task, batch_size, shuffle=False, indices=indices):
            inputs = {k: v.to(device) for k, v in batch.items() if k in MODEL_INPUTS}
            logits = forward(model, inputs).float().cpu().numpy()
            for row, i in enumerate(batch["index"].tolist()):
                n = len(features.rows[i]["input_ids"])
                out[i] = logits[row, :n] if task.kind == "token-classification" else logits[row]
    if was_training:
        model.train()
    return out  # type: ignore[return-value]


def predict_logits_shared(model, features: Features, tokenizer, task: Task, batch_size: int = 64,
                          forward: Callable = hf_forward) -> list[np.ndarray]:
    """:func:`predict_logits` of every example, split across data-parallel processes
    (:mod:`kdexam.parallel`): each predicts its share, and every process gets all of them back.
    Alone, it is :func:`predict_logits`."""
    if rank_and_world()[1] == 1:
        return predict_logits(model, features, tokenizer, task, batch_size, forward)
    mine = my_share(len(features))
    part = predict_logits(model, features, tokenizer, task, batch_size, forward, indices=mine)
    return gather_items({i: part[i] for i in mine}, len(features))


def decode(task: Task, logits: list[np.ndarray], features: Features, crf: dict | None = None) -> list:
    """Label names, word tag sequences or floats from per-example logits.

    Tagging: each word takes the tag of its first subword — the argmax there, or with
    ``crf`` (:func:`kdexam.students.crf.crf_params`) the Viterbi path over the words'
    first-subword scores. Words cut off by truncation get ``O`` (or the first tag)."""
    labels = task.labels or []
    if task.kind == "regression":
        return [float(l.reshape(-1)[0]) for l in logits]
    if task.kind == "classification":
        return [labels[int(l.argmax())] for l in logits]
    fill = labels.index("O") if "O" in labels else 0
    out = []
    for l, row in zip(logits, features.rows):
        if crf is None:
            ids = words_from_subwords(row["word_ids"], l.argmax(-1).tolist(), row["n_words"], fill)
        else:
            ids = crf_words(l, row["word_ids"], row["n_words"], crf, fill)
        out.append([labels[i] for i in ids])
    return out


def crf_words(logits: np.ndarray, word_ids: list[int], n_words: int, crf: dict, fill: int = 0) -> list[int]:
    """Viterbi tags of the words present in the encoding (first subwords, in order); ``fill`` for the rest."""
    from kdexam.students.crf import viterbi

    first = first_subwords(word_ids, n_words)
    words = [w for w, pos in enumerate(first) if pos >= 0]
    path = viterbi(np.asarray(logits)[[first[w] for w in words]], **crf)
    out = [fill] * n_words
    for w, tag in zip(words, path):
        out[w] = tag
    return out


def evaluate(model, features: Features, examples, tokenizer, task: Task, batch_size: int = 64,
             forward: Callable = hf_forward) -> tuple[dict, list[np.ndarray]]:
    """Task metrics of ``model`` on encoded ``examples``; also returns the logits."""
    logits = predict_logits(model, features, tokenizer, task, batch_size, forward)
    preds = decode(task, logits, features)
    return task.metrics([e.label for e in examples], preds), logits
