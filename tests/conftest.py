"""Shared fixtures: a tiny random BERT with a WordPiece tokenizer trained in memory,
and small synthetic datasets whose labels are learnable from the words."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

POS_WORDS = ["good", "great", "fine", "lovely", "superb", "nice"]
NEG_WORDS = ["bad", "awful", "poor", "boring", "dull", "ugly"]
FILLER = ["the", "movie", "was", "plot", "actors", "film", "story", "really", "quite", "and", "a", "it"]


def sentiment_examples(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(FILLER, 5) + [rng.choice(POS_WORDS if label == "pos" else NEG_WORDS)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def tagging_sentences(n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Words tagged ADJ / NOUN / DET by a fixed lexicon."""
    rng = random.Random(seed)
    lex = {**{w: "ADJ" for w in POS_WORDS + NEG_WORDS}, "movie": "NOUN", "plot": "NOUN", "film": "NOUN",
           "story": "NOUN", "actors": "NOUN", "the": "DET", "a": "DET"}
    words = list(lex)
    return [(ws := rng.sample(words, rng.randint(3, 7)), [lex[w] for w in ws]) for _ in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_conll(path: Path, sents) -> Path:
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(ws, ts)) for ws, ts in sents) + "\n", encoding="utf-8")
    return path


def build_tokenizer():
    """A lowercase WordPiece tokenizer made with the `tokenizers` library and wrapped for transformers.

    Its vocabulary is fixed (the synthetic words, their ``##`` continuations and single letters)
    rather than trained, because trainer tie-breaking varies between runs and tests compare runs."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted(set(POS_WORDS + NEG_WORDS + FILLER))
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    # ("a" is a word and a letter: keep one id per token, so ids run 0 … len - 1)
    vocab = list(dict.fromkeys(specials + words + [f"##{w}" for w in words] + letters + [f"##{c}" for c in letters]))
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) saved as a HF model directory."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny-bert")
    cfg = BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


def write_sentiment_splits(d: Path, train: int = 160, validation: int = 40, test: int = 40) -> Path:
    """``d`` with train/validation(/test when ``test``) JSONL files of the synthetic sentiment task (seeds 1, 2, 3)."""
    d.mkdir(parents=True, exist_ok=True)
    write_jsonl(d / "train.jsonl", sentiment_examples(train, seed=1))
    write_jsonl(d / "validation.jsonl", sentiment_examples(validation, seed=2))
    if test:
        write_jsonl(d / "test.jsonl", sentiment_examples(test, seed=3))
    return d


@pytest.fixture()
def sentiment_dir(tmp_path) -> Path:
    """train/validation/test JSONL files of the synthetic sentiment task."""
    return write_sentiment_splits(tmp_path / "sentiment", 200, 40, 60)


@pytest.fixture(scope="session")
def integration_home(tmp_path_factory) -> Path:
    """One kdexam home shared by the integration tests of a session: packages download once."""
    return tmp_path_factory.mktemp("kdexam-integration-home")


@pytest.fixture(autouse=True)
def _isolated_home(request, tmp_path, monkeypatch):
    """Tests never touch the user's kdexam home: unit tests get an empty one each, integration
    tests share one per session (set KDEXAM_TEST_REAL_HOME=1 to use the real home instead)."""
    if "KDEXAM_TEST_REAL_HOME" in __import__("os").environ:
        return
    if request.node.get_closest_marker("integration"):
        monkeypatch.setenv("KDEXAM_HOME", str(request.getfixturevalue("integration_home")))
    else:
        monkeypatch.setenv("KDEXAM_HOME", str(tmp_path / "kdexam-home"))


@pytest.fixture(scope="module")
def one_thread():
    """One CPU thread for a module's tiny models (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    other work may share the machine, and 2-thread runs of tiny models only contend."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
