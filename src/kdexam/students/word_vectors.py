"""``embeddings: glove``: a word vocabulary built from the training texts (a word-level fast
tokenizer) and word2vec / GloVe vectors read from a text file, the set-up of the BiLSTM students
of Tang et al. (2019), "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks".
Words missing from the file get random vectors of the pre-trained ones' variance (Kim 2014)."""

from __future__ import annotations

import gzip
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from kdexam.errors import KdexamError
from kdexam.students.embeddings import EmbeddingInit, iter_training_strings

WORD_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def _word_pipeline():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok


def build_word_tokenizer(texts: Iterable, min_frequency: int = 1):
    """A word-level fast tokenizer whose vocabulary is the (lowercased, BERT-pre-tokenised)
    words of ``texts``, most frequent first after the specials ``[PAD] [UNK] [CLS] [SEP]``.

    Wrapped in ``PreTrainedTokenizerFast``, so it pads, encodes pairs
    (``[CLS] a [SEP] b [SEP]`` with token type ids), gives ``word_ids`` for tagging and
    saves with ``save_pretrained``."""
    from tokenizers import processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = _word_pipeline()
    trainer = trainers.WordLevelTrainer(special_tokens=list(WORD_SPECIALS), min_frequency=min_frequency,
                                        show_progress=False)
    tok.train_from_iterator(iter_training_strings(texts), trainer)
    if tok.get_vocab_size() <= len(WORD_SPECIALS):
        raise KdexamError("The training texts give an empty word vocabulary; pass non-empty training texts "
                          "for 'glove' embeddings.")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", padding_side="right",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_vectors(path: str | Path, vocab: dict[str, int]) -> tuple[dict[int, torch.Tensor], int, dict]:
    """Vectors of the words in ``vocab`` from a word2vec / GloVe text file (``.gz`` too).

    The first line may be a ``count dim`` header. A line is a word and ``dim`` numbers;
    the word is everything before the last ``dim`` fields (some GloVe files have words
    with spaces). An exact match wins over a case-insensitive one (the file's first
    such line). Malformed lines are skipped and counted. Returns ``{id: vector}``, the
    width, and stats."""
    path = Path(path)
    if not path.is_file():
        raise KdexamError(f"Vectors file '{path}' does not exist; pass a word2vec/GloVe text file to --vectors-file.")
    exact: dict[int, torch.Tensor] = {}
    folded: dict[int, torch.Tensor] = {}
    dim, lines, skipped = None, 0, 0
    with _open_text(path) as f:
        for n, line in enumerate(f):
            parts = line.rstrip("\n\r").rstrip().split(" ")
            if n == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                dim = int(parts[1])
                continue
            if len(parts) < 2:
                skipped += 1 if line.strip() else 0
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) < dim + 1:
                skipped += 1
                continue
            word = " ".join(parts[: len(parts) - dim])
            try:
                values = [float(v) for v in parts[len(parts) - dim:]]
            except ValueError:
                skipped += 1
                continue
            if not all(math.isfinite(v) for v in values):  # (nan and inf parse as floats; one made every logit NaN)
                skipped += 1
                continue
            lines += 1
            i = vocab.get(word)
            if i is not None and i not in exact:
                exact[i] = torch.tensor(values, dtype=torch.float32)
                continue
            i = vocab.get(word.lower())
            if i is not None and i not in folded:
                folded[i] = torch.tensor(values, dtype=torch.float32)
    if dim is None or lines == 0:
        raise KdexamError(f"Vectors file '{path}' holds no word vectors; pass a word2vec/GloVe text file "
                          "('word v1 v2 …' per line).")
    found = {**folded, **exact}
    return found, dim, {"lines": lines, "skipped_lines": skipped}


def glove_embeddings(vectors_file: str | Path, texts: Iterable, dim: int | None = None,
                     min_frequency: int = 1) -> EmbeddingInit:
    """A word vocabulary from ``texts`` and its vectors from ``vectors_file``; missing words
    get U[-a, a] vectors with the variance of the found ones; ``[PAD]`` is zero."""
    texts = list(texts)
    tokenizer = build_word_tokenizer(texts, min_frequency=min_frequency)
    vocab = tokenizer.backend_tokenizer.get_vocab()
    words = {w: i for w, i in vocab.items() if w not in WORD_SPECIALS}
    found, file_dim, stats = read_vectors(vectors_file, words)
    if dim is not None and dim != file_dim:
        raise KdexamError(f"The vectors in '{vectors_file}' have {file_dim} dimensions, not embedding_dim {dim}; "
                          f"set embedding_dim to {file_dim} or leave it out.")
    size = len(vocab)
    weight = torch.empty(size, file_dim)
    if found:
        stacked = torch.stack(list(found.values()))
        var = float(stacked.var()) if stacked.numel() > 1 else 0.0
    else:
        var = 0.0
    a = math.sqrt(3 * var) if var > 0 else 0.1
    nn.init.uniform_(weight, -a, a)
    for i, v in found.items():
        weight[i] = v
    weight[vocab["[PAD]"]] = 0.0

    # coverage: of vocabulary words, and of word occurrences in the training texts
    pipeline = _word_pipeline()
    counts: Counter = Counter()
    for s in iter_training_strings(texts):
        counts.update(w for w, _ in pipeline.pre_tokenizer.pre_tokenize_str(pipeline.normalizer.normalize_str(s)))
    total = sum(c for w, c in counts.items() if w in words)
    covered = sum(c for w, c in counts.items() if w in words and words[w] in found)
    info = {"source": "glove", "vectors_file": str(vectors_file), "dim": file_dim, "vocab_size": size,
            "words": len(words), "words_found": len(found),
            "coverage": round(len(found) / max(1, len(words)), 6),
            "token_coverage": round(covered / max(1, total), 6), **stats}
    return EmbeddingInit(weight, tokenizer, info)
