"""``embeddings: contextual``: static token vectors averaged over each token's contexts in the
transfer set (Bommasani et al. 2020), with model2vec's PCA and SIF weighting, and the cache of
those averages (safetensors under the kdexam home's ``cache/contextual``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch

from kdexam.errors import KdexamError
from kdexam.students.embeddings import (
    SIF_COEFFICIENT,
    EmbeddingInit,
    load_encoder,
    single_token_vectors,
    static_table,
    teacher_path,
    iter_training_strings,
    token_counts,
)


def teacher_context_embeddings(teacher: str | Path, dim: int | None = None, texts: Iterable | None = None,
                               sif: float = SIF_COEFFICIENT, batch_size: int = 64, max_length: int = 128,
                               progress: bool = True) -> EmbeddingInit:
    """Static token vectors averaged over the token's contexts in the transfer set: the
    "aggregated" static embeddings of Bommasani, Davis & Cardie (2020), "Interpreting Pretrained
    Contextualized Representations via Reductions to Static Embeddings" (ACL 2020), with
    model2vec's PCA and SIF weighting (:func:`teacher_output_embeddings`):

    1. every distinct text is passed through the teacher's encoder once (``[CLS] text [SEP]``, at
       most ``max_length`` tokens), and each token id's output states are averaged over all its
       occurrences in them: ``v_t = (1 / n_t) Σ_{(s, i): s_i = t} h(s)_i``;
    2. ids the texts never show at an output position (the special tokens) get the model2vec
       vector ``mean(h([CLS] t [SEP]))``;
    3. PCA to ``dim`` and SIF weights ``a / (a + p(t))`` from the texts' token frequencies
       (duplicates counted, as for ``model2vec``).

    A fine-tuned teacher's states in context carry what the token means *for the task* in the
    sentences the student will read ("not" after "good" as well as before it), where model2vec
    sees each token alone. The cost is one teacher pass over the texts; its averages are cached
    (safetensors, keyed by the teacher's files, the distinct texts and ``max_length``:
    :func:`context_cache_file`), so a second student on the same texts skips it. Tokens the texts
    do not use keep zero rows (vocabulary trimming drops them)."""
    from kdexam.teachers.teacher import with_progress

    if not texts:
        raise KdexamError("Embeddings 'contextual' average the teacher's states over the training texts; pass train_texts.")
    tokenizer, encoder = load_encoder(teacher, dim)
    positions = getattr(encoder.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:  # a teacher with fewer positions than max_length
        max_length = min(max_length, positions)
    vocab = int(encoder.get_input_embeddings().weight.shape[0])
    width = int(encoder.config.hidden_size)
    counts = token_counts(tokenizer, texts)
    strings = sorted(set(iter_training_strings(texts)), key=lambda x: (len(x), x))  # each distinct text once, by length
    cache = context_cache_file(teacher, strings, max_length)
    stored = _read_context_cache(cache)
    if stored is not None:
        in_context, means = [int(i) for i in stored["ids"]], stored["means"]
    else:
        sums = torch.zeros(vocab, width, dtype=torch.float64)
        seen = torch.zeros(vocab, dtype=torch.float64)
        specials = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        batches = [strings[s : s + batch_size] for s in range(0, len(strings), batch_size)]
        with torch.inference_mode():
            for chunk in with_progress(batches, progress, "contextual embeddings (teacher pass)"):
                enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                states = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
                keep = enc["attention_mask"].bool() & ~torch.isin(enc["input_ids"], specials)
                ids = enc["input_ids"][keep]
                sums.index_add_(0, ids, states[keep].to(torch.float64))
                seen.index_add_(0, ids, torch.ones(len(ids), dtype=torch.float64))
        in_context = [int(i) for i in torch.nonzero(seen).flatten()]
        means = (sums[in_context] / seen[in_context].unsqueeze(1)).to(torch.float32)
        _write_context_cache(cache, in_context, means)
    alone = sorted((set(counts) | set(tokenizer.all_special_ids)) - set(in_context))
    alone = [i for i in alone if 0 <= i < vocab]
    ids = in_context + alone
    vectors = torch.cat([means, single_token_vectors(encoder, tokenizer, alone, 512)])
    info: dict = {"source": "contextual", "teacher": str(teacher), "texts_encoded": len(strings),
                  "tokens_in_context": len(in_context), "tokens_alone": len(alone), "context_cache": str(cache)}
    order = sorted(range(len(ids)), key=ids.__getitem__)
    weight = static_table(vectors[order], [ids[i] for i in order], counts, vocab, dim, sif, info)
    return EmbeddingInit(weight, tokenizer, info)


CONTEXT_CACHE_FORMAT = 2  # (2: a checksum in the file's metadata)
"""Bumped when the contextual averages change meaning, so old cache files are not read."""


def context_cache_file(teacher: str | Path, strings: list[str], max_length: int) -> Path:
    """Where the contextual averages of ``teacher`` over ``strings`` are cached: a SHA-256 of the
    teacher's files (a hub id: ``id@commit``), ``max_length`` and the distinct texts, under the kdexam
    home's ``cache/contextual``."""
    from kdexam.paths import kdexam_home
    from kdexam.teachers.cache import model_key

    model = model_key(Path(teacher_path(teacher)), str(teacher))
    h = hashlib.sha256(json.dumps({"format": CONTEXT_CACHE_FORMAT, "model": model, "max_length": max_length}).encode())
    for s in strings:
        h.update(json.dumps(s, ensure_ascii=False).encode())
    return kdexam_home() / "cache" / "contextual" / f"{h.hexdigest()[:32]}.safetensors"


def _checksum(ids: torch.Tensor, means: torch.Tensor) -> str:
    """SHA-256 of the cached tensors' bytes, kept in the file's metadata, so that damage is caught as
    the teacher cache catches it."""
    h = hashlib.sha256(ids.numpy().tobytes())
    h.update(means.float().numpy().tobytes())
    return h.hexdigest()


def _read_context_cache(path: Path) -> dict | None:
    """The cached averages, or None when there are none or the file is damaged (then it is removed
    and the pass runs again)."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:  # (tensors and checksum in one read)
            recorded = (f.metadata() or {}).get("sha256")
            stored = {name: f.get_tensor(name) for name in f.keys()}
        if stored["ids"].ndim != 1 or stored["means"].shape[0] != stored["ids"].shape[0]:
            raise ValueError("inconsistent shapes")
        if recorded != _checksum(stored["ids"], stored["means"]):  # (bits flipped on disk load without error)
            raise ValueError("checksum")
        return stored
    except Exception:
        path.unlink(missing_ok=True)
        return None


def _write_context_cache(path: Path, ids: list[int], means: torch.Tensor) -> None:
    """Write the averages through a temporary file and a rename (a reader never sees half a file)."""
    from safetensors.torch import save_file

    from kdexam.paths import temp_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path)
    os.close(fd)
    try:
        ids_t, means = torch.tensor(ids, dtype=torch.long), means.contiguous()
        save_file({"ids": ids_t, "means": means}, tmp, metadata={"sha256": _checksum(ids_t, means)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
