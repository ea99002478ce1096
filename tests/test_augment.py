"""Augmenters of the transfer set: determinism under a seed, masking rate, n-gram spans,
tag alignment, text pairs, nearest neighbours (word-vector file and teacher embeddings),
masked-LM replacement with a tiny local BERT, and the errors of the registry."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from conftest import tagging_sentences

from kdexam.data.augment import (
    AUGMENTERS,
    MaskAugmenter,
    MlmAugmenter,
    NeighboursAugmenter,
    NgramAugmenter,
    build_augmenter,
)
from kdexam.data.readers import Example
from kdexam.errors import KdexamError

pytestmark = pytest.mark.usefixtures("one_thread")

TAGGING = "token-classification"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "a", "movie", "film", "plot", "story", "actors", "was", "is", "really", "quite", "and",
         "good", "great", "fine", "nice", "bad", "awful", "poor", "dull", "it", "very", "not", "so"]
PIECES = ["##ood", "##s", "##ing", "##ly"]
SENTENCES = ["the movie was really good", "a dull plot and poor actors", "it is not so bad",
             "the story was quite nice", "very good film", "awful"]


def texts(*sentences: str) -> list[Example]:
    return [Example(s) for s in sentences]


def tagged() -> list[Example]:
    return [Example(list(ws), None, list(ts)) for ws, ts in tagging_sentences(12, seed=3)]


def write_tokenizer(directory, words):
    from transformers import BertTokenizerFast

    (directory / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tok = BertTokenizerFast.from_pretrained(str(directory), do_lower_case=True)
    assert len(tok) == len(words)
    tok.save_pretrained(directory)
    return tok


def tiny_config(vocab_size: int):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64)


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory):
    """A tiny random BertForMaskedLM with a WordPiece vocabulary of whole words, pieces and punctuation."""
    import torch
    from transformers import BertForMaskedLM

    d = tmp_path_factory.mktemp("tiny-mlm")
    tok = write_tokenizer(d, SPECIALS + WORDS + PIECES + [".", ",", "!"])
    torch.manual_seed(0)
    BertForMaskedLM(tiny_config(len(tok))).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A tiny random BERT whose input embeddings make 'great' the nearest word of 'good', and
    'awful' of 'bad'; the '##ood' piece and the [MASK] token copy 'good' exactly (never candidates)."""
    import torch
    from transformers import BertModel

    d = tmp_path_factory.mktemp("tiny-teacher")
    vocab = SPECIALS + WORDS + PIECES
    tok = write_tokenizer(d, vocab)
    torch.manual_seed(0)
    model = BertModel(tiny_config(len(tok)))
    ids = {t: i for i, t in enumerate(vocab)}
    with torch.no_grad():
        emb = model.embeddings.word_embeddings.weight
        emb.normal_()
        emb[ids["great"]] = emb[ids["good"]] + 0.05 * torch.randn(32)
        emb[ids["awful"]] = emb[ids["bad"]] + 0.05 * torch.randn(32)
        emb[ids["##ood"]] = emb[ids["good"]]
        emb[ids["[MASK]"]] = emb[ids["good"]]
    model.save_pretrained(d)
    assert (d / "model.safetensors").is_file()
    return d


@pytest.fixture()
def vectors_file(tmp_path):
    lines = ["9 3",  # word2vec header: must be skipped
             "good 1 0 0", "great 0.9 0.1 0", "bad -1 0 0", "awful -0.9 -0.1 0",
             "movie 0 0 1", "film 0 0.1 0.99", "Good 1 0 0.01", "3.5 1 0 0", ", 1 0 0"]
    path = tmp_path / "vectors.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def copies(made, index):
    return [e for i, e in made if i == index]


# ---------------------------------------------------------------- shared rules


@pytest.mark.parametrize("name", ["mask", "ngram"])
def test_output_order_and_count(name):
    examples = texts(*SENTENCES)
    made = build_augmenter(name).augment(examples, 3, 0, "classification")
    assert [i for i, _ in made] == [i for i in range(len(examples)) for _ in range(3)]
    assert all(e.label is None and e.text for _, e in made)
    assert build_augmenter(name).augment(examples, 0, 0, "classification") == []


@pytest.mark.parametrize("name", ["mask", "ngram"])
def test_deterministic_under_seed(name):
    examples = texts(*SENTENCES) + texts(*[f"{s} and the plot was fine" for s in SENTENCES])
    aug = build_augmenter(name)
    random.seed(1)
    first = aug.augment(examples, 4, 7, "classification")
    random.seed(2)  # the global RNG state does not matter
    assert build_augmenter(name).augment(examples, 4, 7, "classification") == first
    assert aug.augment(examples, 4, 8, "classification") != first
    # Independent of the other examples and of their order.
    subset = [examples[5], examples[2]]
    made = aug.augment(subset, 4, 7, "classification")
    assert copies(made, 0) == copies(first, 5)
    assert copies(made, 1) == copies(first, 2)


def test_duplicate_originals_get_their_own_copies():
    examples = texts(*["the movie was really good and the plot was fine"] * 2)
    made = MaskAugmenter(p=0.3).augment(examples, 3, 0, "classification")
    assert copies(made, 0) != copies(made, 1)
    assert copies(MaskAugmenter(p=0.3).augment(examples[:1], 3, 0, "classification"), 0) == copies(made, 0)


@pytest.mark.parametrize("name", ["mask", "ngram"])
def test_empty_text_comes_back_unchanged(name):
    made = build_augmenter(name).augment([Example(""), Example("   "), Example("good")], 2, 0, "classification")
    assert [e.text for _, e in made][:4] == ["", "", "   ", "   "]
    assert all(e.text for i, e in made if i == 2)


def test_importing_the_package_imports_no_torch_or_transformers():
    code = ("import sys, kdexam.data.augment; "
            "print(sorted(m for m in ('torch', 'transformers', 'safetensors') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- mask


@pytest.mark.parametrize("p", [0.5, 0.1])
def test_mask_rate_near_p(p):
    words = [f"w{i}" for i in range(2000)]
    made = MaskAugmenter(p=p, token="<mask>").augment([Example(" ".join(words))], 1, 3, "classification")
    new = made[0][1].text.split()
    assert len(new) == len(words)
    masked = [a for a, b in zip(new, words) if a != b]
    assert set(masked) == {"<mask>"}
    assert abs(len(masked) / len(words) - p) < 0.03


def test_mask_changes_at_least_one_word():
    examples = texts("good film", "the plot was dull", "awful")
    for _, e in MaskAugmenter(p=0.01).augment(examples, 20, 0, "classification"):
        assert "[MASK]" in e.text.split()
    # a word that already is the mask token is not masked again (an audit, 2026-12-04: 6 of 10 copies of
    # "[MASK] good" were the original); "good" is the one word that can change, so every copy changes it
    for _, e in MaskAugmenter(p=0.01).augment(texts("[MASK] good"), 10, 0, "classification"):
        assert e.text == "[MASK] [MASK]"


def test_build_mask_uses_the_teacher_mask_token_and_p():
    aug = build_augmenter("mask", p=0.5, mask_token="<mask>")
    assert (aug.p, aug.token) == (0.5, "<mask>")
    assert build_augmenter("mask").token == "[MASK]"


# ---------------------------------------------------------------- ngram


def test_ngram_returns_contiguous_spans_with_their_tags():
    rng = random.Random(0)
    examples = []
    for _ in range(40):
        n = rng.randint(1, 12)
        examples.append(Example([f"w{i}" for i in range(n)], None, [f"T{i}" for i in range(n)]))
    lengths = set()
    for i, e in NgramAugmenter(max_n=4).augment(examples, 5, 0, TAGGING):
        words, tags = examples[i].text, examples[i].label
        if len(words) == 1:
            assert e.text == words and e.label == tags
            continue
        start = words.index(e.text[0])
        assert e.text == words[start:start + len(e.text)]
        assert e.label == tags[start:start + len(e.text)]
        assert 1 <= len(e.text) <= min(4, len(words) - 1)
        lengths.add(len(e.text))
    assert lengths == {1, 2, 3, 4}


def test_ngram_on_text_classification_and_unlabelled_tagging():
    text = "the movie was really good and the plot was fine"
    for _, e in NgramAugmenter().augment([Example(text, label="pos")], 10, 0, "classification"):
        assert e.label is None and f" {e.text} " in f" {text} " and 1 <= len(e.text.split()) <= 5
    made = NgramAugmenter().augment([Example(["a", "b", "c"], None, None)], 3, 0, TAGGING)
    assert all(e.label is None and 1 <= len(e.text) <= 2 for _, e in made)


# ---------------------------------------------------------------- pairs


@pytest.mark.parametrize("name", ["mask", "ngram"])
def test_pairs_augment_both_sides(name):
    pair = Example("the movie was really good and fun", "a film that is quite nice to watch", label="entailment")
    for _, e in build_augmenter(name, p=0.3).augment([pair], 5, 0, "classification"):
        assert e.label is None
        assert e.text != pair.text and e.text_pair != pair.text_pair
        assert e.text and e.text_pair


# ---------------------------------------------------------------- neighbours


def test_neighbours_from_a_vectors_file(vectors_file):
    aug = NeighboursAugmenter(p=1.0, k=1, vectors_file=str(vectors_file))
    made = aug.augment(texts("good movie xyz , bad", "Good film"), 2, 0, "classification")
    assert {e.text for i, e in made if i == 0} == {"great film xyz , awful"}
    assert {e.text for i, e in made if i == 1} == {"Great movie"}


def test_neighbours_file_without_header_and_bad_files(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("good 1 0\ngreat 0.9 0.1\nbad -1 0\nawful -0.9 -0.1\n", encoding="utf-8")
    made = NeighboursAugmenter(p=1.0, k=1, vectors_file=str(path)).augment(texts("bad good"), 1, 0, "classification")
    assert made[0][1].text == "awful great"
    path.write_text("good 1 0\ngreat nan 0.1\n", encoding="utf-8")  # (nan parses as a number)
    with pytest.raises(KdexamError, match="gives the word 'great' a value that is not finite"):
        NeighboursAugmenter(vectors_file=str(path)).augment(texts("good"), 1, 0, "classification")
    path.write_text("good 1 0\ngreat 0.9\n", encoding="utf-8")
    with pytest.raises(KdexamError, match="line 2"):
        NeighboursAugmenter(vectors_file=str(path)).augment(texts("good"), 1, 0, "classification")
    with pytest.raises(KdexamError, match="does not exist"):
        NeighboursAugmenter(vectors_file=str(tmp_path / "missing.txt")).augment(texts("good"), 1, 0, "classification")


def test_neighbours_leave_words_outside_the_vocabulary(vectors_file):
    aug = NeighboursAugmenter(p=1.0, k=2, vectors_file=str(vectors_file))
    made = aug.augment(texts("zebra xylophone quux"), 3, 0, "classification")
    assert {e.text for _, e in made} == {"zebra xylophone quux"}


def test_neighbours_rate_and_choice_among_k(vectors_file):
    aug = NeighboursAugmenter(p=0.5, k=3, vectors_file=str(vectors_file))
    original = " ".join(["good"] * 400)
    new = aug.augment(texts(original), 1, 0, "classification")[0][1].text.split()
    replaced = [w for w in new if w != "good"]
    assert abs(len(replaced) / 400 - 0.5) < 0.08
    # good's 3 nearest other words (its casing 'Good' left out): great, then movie and film.
    assert set(replaced) == {"great", "film", "movie"}


def test_neighbours_from_teacher_embeddings(teacher_dir):
    aug = build_augmenter("neighbours", teacher_dir=str(teacher_dir), p=1.0)
    aug.k = 1
    made = aug.augment(texts("good zebra bad", "Good"), 2, 0, "classification")
    assert {e.text for i, e in made if i == 0} == {"great zebra awful"}
    assert {e.text for i, e in made if i == 1} == {"Great"}
    vocab = set(WORDS)
    wide = NeighboursAugmenter(p=1.0, k=5, teacher_dir=str(teacher_dir))
    for _, e in wide.augment(texts(*SENTENCES), 5, 0, "classification"):
        assert set(e.text.split()) <= vocab  # never a ## piece or a special token


@pytest.mark.parametrize("name", ["mask", "neighbours", "ngram"])
def test_tags_stay_aligned(name, vectors_file):
    examples = tagged()
    aug = build_augmenter(name, vectors_file=str(vectors_file), p=0.4)
    for i, e in aug.augment(examples, 3, 0, TAGGING):
        original = examples[i]
        assert isinstance(e.text, list) and e.text_pair is None
        assert len(e.text) == len(e.label)
        if name != "ngram":
            assert e.label == original.label
            assert len(e.text) == len(original.text)


def test_mask_changes_tagged_words_only_to_the_token():
    examples = tagged()
    for i, e in MaskAugmenter(p=0.3).augment(examples, 3, 0, TAGGING):
        changed = [a for a, b in zip(e.text, examples[i].text) if a != b]
        assert changed and set(changed) == {"[MASK]"}


def test_neighbours_on_tagged_words(vectors_file):
    example = Example(["good", "movie", "xyz"], None, ["ADJ", "NOUN", "X"])
    made = NeighboursAugmenter(p=1.0, k=1, vectors_file=str(vectors_file)).augment([example], 1, 0, TAGGING)
    assert made[0][1] == Example(["great", "film", "xyz"], None, ["ADJ", "NOUN", "X"])


# ---------------------------------------------------------------- mlm


def test_mlm_keeps_word_count_and_uses_whole_words(mlm_dir):
    aug = MlmAugmenter(str(mlm_dir), p=0.3, top_k=5)
    examples = texts(*SENTENCES, "the movie, it was good !")
    made = aug.augment(examples, 3, 0, "classification")
    changed = 0
    for i, e in made:
        old, new = examples[i].text.split(), e.text.split()
        assert len(new) == len(old) and e.label is None
        for a, b in zip(old, new):
            if a != b:
                changed += 1
                assert b in WORDS  # a whole-word vocabulary entry: no ## piece, special token or punctuation
                assert any(c.isalpha() for c in a)
    assert changed >= len(made)  # at least one word per copy


def test_mlm_replaces_each_drawn_word_by_another_word(mlm_dir):
    examples = texts(*SENTENCES)
    for i, e in MlmAugmenter(str(mlm_dir), p=1.0, top_k=3).augment(examples, 4, 0, "classification"):
        assert all(a.lower() != b.lower() for a, b in zip(examples[i].text.split(), e.text.split()))


def test_mlm_keeps_mask_tokens_of_the_text(mlm_dir):
    example = Example("[MASK] the movie [MASK] was good")
    for _, e in MlmAugmenter(str(mlm_dir), p=1.0).augment([example], 3, 0, "classification"):
        new = e.text.split()
        assert new[0] == new[3] == "[MASK]"
        assert all(a != b and b in WORDS for a, b in zip(example.text.split(), new) if a != "[MASK]")


def test_mlm_slots_follow_the_mask_tokens_of_the_text():
    """A mask glued to punctuation in the text ('[MASK],') is a mask token too: the chosen word's
    candidates are those of its own position (it took the first mask's)."""
    from kdexam.data.augment.mlm import mask_slots

    assert mask_slots(["[MASK],", "good", "movie"], {2: 0.5}, "[MASK]") == [None, "movie"]
    assert mask_slots(["a", "[MASK]", "b[MASK][MASK]", "c"], {0: 0.1, 3: 0.2}, "[MASK]") == ["a", None, None, None, "c"]


def test_mlm_is_deterministic_and_independent_of_batching(mlm_dir):
    examples = texts(*SENTENCES)
    first = MlmAugmenter(str(mlm_dir), p=0.3).augment(examples, 2, 5, "classification")
    assert MlmAugmenter(str(mlm_dir), p=0.3, batch_size=1).augment(examples, 2, 5, "classification") == first
    assert MlmAugmenter(str(mlm_dir), p=0.3).augment(examples, 2, 6, "classification") != first
    subset = MlmAugmenter(str(mlm_dir), p=0.3).augment([examples[3]], 2, 5, "classification")
    assert copies(subset, 0) == copies(first, 3)


def test_mlm_tags_and_pairs(mlm_dir):
    aug = MlmAugmenter(str(mlm_dir), p=0.3)
    examples = tagged()
    for i, e in aug.augment(examples, 2, 0, TAGGING):
        assert len(e.text) == len(examples[i].text) and e.label == examples[i].label
    pair = Example("the movie was really good", "the film is quite nice", label="entailment")
    for _, e in aug.augment([pair], 3, 0, "classification"):
        assert e.label is None and e.text != pair.text and e.text_pair != pair.text_pair
        assert len(e.text.split()) == 5 and len(e.text_pair.split()) == 5


def test_mlm_refuses_a_model_without_masked_lm_head(tiny_bert_dir, tmp_path):
    with pytest.raises(KdexamError, match="has no masked-LM head"):
        MlmAugmenter(str(tiny_bert_dir)).augment(texts("good movie"), 1, 0, "classification")
    with pytest.raises(KdexamError, match="does not exist"):
        MlmAugmenter(str(tmp_path / "nowhere")).augment(texts("good movie"), 1, 0, "classification")


# ---------------------------------------------------------------- registry


def test_registry_names():
    assert list(AUGMENTERS) == ["mask", "neighbours", "ngram", "mlm"]
    assert all(cls.name == name and cls.__doc__ and "20" in cls.__doc__ for name, cls in AUGMENTERS.items())


@pytest.mark.parametrize(("name", "closest"), [("neighbors", "neighbours"), ("ngrams", "ngram"), ("masking", "mask")])
def test_unknown_augmenter_names_the_closest(name, closest):
    with pytest.raises(KdexamError, match=f"did you mean '{closest}'.*mask, neighbours, ngram, mlm"):
        build_augmenter(name)


def test_build_errors(mlm_dir):
    with pytest.raises(KdexamError, match="--augment-mlm-model"):
        build_augmenter("mlm")
    with pytest.raises(KdexamError, match="neighbours augmenter needs"):
        build_augmenter("neighbours")
    with pytest.raises(KdexamError, match="0 < p <= 1"):
        build_augmenter("mask", p=1.5)
    aug = build_augmenter("mlm", mlm_model=str(mlm_dir), p=0.2)
    assert isinstance(aug, MlmAugmenter) and aug.p == 0.2 and aug._model is None  # loaded lazily
    assert isinstance(build_augmenter("ngram", p=0.3), NgramAugmenter)


def test_a_neighbours_copy_does_not_depend_on_the_other_examples():
    """The similarity product of a chunk of words differs in the last bit with the chunk's make-up,
    which reordered near-tied neighbours: the copies of one sentence changed when 800 others were
    augmented in the same call (a near tie found in 20,000 random vectors)."""
    import numpy as np

    from kdexam.data.augment.neighbours import EmbeddingSpace, NeighboursAugmenter

    rng = np.random.default_rng(1)
    words = [f"w{''.join(chr(97 + int(d)) for d in str(i))}" for i in range(20000)]
    vectors = rng.normal(size=(len(words), 300)).astype(np.float32)

    def augmenter():
        a = NeighboursAugmenter(p=1.0, k=5, vectors_file="unused")
        a._space = EmbeddingSpace(words, vectors, False, "random vectors")
        return a

    target = Example("wfchc")
    alone = [e.text for _, e in augmenter().augment([target], 10, 13, "classification")]
    together = [e.text for i, e in augmenter().augment([target] + [Example(w) for w in words[:800]], 10, 13, "classification") if i == 0]
    assert alone == together
