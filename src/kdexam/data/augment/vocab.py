"""Whole-word entries of a tokenizer's vocabulary (shared by ``neighbours`` and ``mlm``).

Takes tokenizer objects; imports nothing heavy itself.
"""

from __future__ import annotations

WORD_MARKERS = ("\u0120", "\u2581")
"""Byte-level BPE's "Ġ" and SentencePiece's "▁": a token that starts a space-separated word."""


def lowercases(tokenizer) -> bool:
    """Whether the tokenizer lower-cases its input (BERT uncased and the like)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = getattr(backend, "normalizer", None)
    if normalizer is not None and hasattr(normalizer, "normalize_str"):
        return normalizer.normalize_str("A") == "a"
    return bool(getattr(tokenizer, "do_lower_case", False))


def whole_words(tokenizer) -> dict[str, int]:
    """``word -> token id`` for every vocabulary entry that is a whole alphabetic word.

    WordPiece vocabularies (no marker style): every entry that is not a ``##`` piece.
    BPE / SentencePiece vocabularies (more than 5 % of entries start with "Ġ" or "▁"):
    the entries that start with the marker, without it. Special tokens are never words,
    and the word must be alphabetic (``str.isalpha``), so punctuation, numbers and
    ``[unused…]`` entries are left out. The lowest id wins when two entries give one word.
    """
    vocab = tokenizer.get_vocab()
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    marked = sum(1 for t in vocab if t.startswith(WORD_MARKERS))
    marker_style = marked > len(vocab) // 20
    words: dict[str, int] = {}
    for token, i in sorted(vocab.items(), key=lambda item: item[1]):
        if token in special:
            continue
        if marker_style:
            if not token.startswith(WORD_MARKERS):
                continue
            word = token[1:]
        elif token.startswith("##"):
            continue
        else:
            word = token
        if word.isalpha():
            words.setdefault(word, i)
    return words


def lookup(word: str, index: dict, lower: bool) -> str | None:
    """The vocabulary entry for ``word``: lower-cased first when the vocabulary is, else
    as written, falling back to lower case; ``None`` when neither is there."""
    if lower:
        word = word.lower()
    if word in index:
        return word
    low = word.lower()
    return low if low in index else None
