import torch

from kdexam.data.encode import LengthBucketSampler, align_labels, encode, make_loader, words_from_subwords
from kdexam.data.readers import Example
from kdexam.tasks import IGNORE_INDEX, Task


def test_align_labels_first_subword():
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    assert align_labels(word_ids, [5, 6, 7]) == [-100, 5, -100, 6, 7, -100, -100, -100]


def test_tag_alignment_round_trip(tiny_tokenizer):
    task = Task("token-classification", ["ADJ", "DET", "NOUN"])
    words = ["the", "greatfilm", "dullplot", "moviestory"]  # unseen words split into subwords
    tags = ["DET", "ADJ", "ADJ", "NOUN"]
    f = encode([Example(words, None, tags)], tiny_tokenizer, task, max_length=64)
    row = f.rows[0]
    assert len(row["input_ids"]) > len(words) + 2, "the test words must split into subwords"
    labelled = [l for l in row["labels"] if l != IGNORE_INDEX]
    assert labelled == [task.label2id[t] for t in tags]
    # predictions equal to the labels on first subwords (garbage elsewhere) map back to the tags
    subword_preds = [l if l != IGNORE_INDEX else 0 for l in row["labels"]]
    assert words_from_subwords(row["word_ids"], subword_preds, row["n_words"]) == [task.label2id[t] for t in tags]


def test_truncated_words_get_fill():
    assert words_from_subwords([-1, 0, 1, -1], [9, 3, 4, 9], n_words=4, fill=7) == [3, 4, 7, 7]


def test_length_buckets_cover_everything_and_reshuffle():
    lengths = [((i * 37) % 50) + 1 for i in range(1000)]
    s = LengthBucketSampler(lengths, batch_size=32, seed=1)
    b0 = s.batches()
    assert sorted(i for b in b0 for i in b) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in b0) / len(b0)
    assert spread < 5, "batches should hold similar lengths"
    s.set_epoch(1)
    assert s.batches() != b0
    s.set_epoch(0)
    assert s.batches() == b0, "the same epoch and seed give the same batches"


def test_loader_pads_dynamically(tiny_tokenizer):
    task = Task("classification", ["neg", "pos"])
    ex = [Example("good", None, "pos"), Example("the movie was really quite dull and boring", None, "neg")]
    f = encode(ex, tiny_tokenizer, task, max_length=64)
    batch = next(iter(make_loader(f, tiny_tokenizer, task, batch_size=2, shuffle=False)))
    assert batch["input_ids"].shape[1] == max(f.lengths) < 64
    assert batch["labels"].tolist() == [task.label2id[ex[i].label] for i in batch["index"].tolist()]


def test_pairs_use_the_pair_encoding(tiny_tokenizer):
    task = Task("classification", ["0", "1"], text_pair=True)
    f = encode([Example("good movie", "bad plot", "1")], tiny_tokenizer, task, max_length=64)
    ids = f.rows[0]["input_ids"]
    assert ids.count(tiny_tokenizer.sep_token_id) == 2
    assert 1 in f.rows[0]["token_type_ids"]


def test_regression_labels_are_float(tiny_tokenizer):
    task = Task("regression")
    f = encode([Example("good", None, 1.5)], tiny_tokenizer, task, max_length=16)
    batch = next(iter(make_loader(f, tiny_tokenizer, task, 4, shuffle=False)))
    assert batch["labels"].dtype == torch.float and batch["labels"].tolist() == [1.5]


# ---- byte-level BPE (RoBERTa, GPT-2): pre-split words keep the space before them ----------------------


def byte_level_bpe_dir(tmp_path):
    """A RoBERTa-style tokenizer (byte-level BPE, ``add_prefix_space`` off, as roberta-base ships)
    trained in memory and saved the way a hub model's folder holds it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaConfig, RobertaTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the good film", "a bad movie", "good acting in the film"] * 20, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                         mask_token="<mask>").save_pretrained(tmp_path)
    RobertaConfig(vocab_size=tok.get_vocab_size()).save_pretrained(tmp_path)
    return tmp_path


def test_byte_level_bpe_tags_words_as_they_read_inside_a_sentence(tmp_path):
    """Without the prefix space every pre-split word was encoded as if it began the text ('good' →
    'go', 'od' where a sentence has 'Ġgood'): pieces the model hardly saw in pretraining."""
    from kdexam.teachers.loader import load_tokenizer

    tok = load_tokenizer(str(byte_level_bpe_dir(tmp_path)))
    task = Task("token-classification", ["ADJ", "DET", "NOUN"])
    row = encode([Example(["the", "good", "film"], None, ["DET", "ADJ", "NOUN"])], tok, task, max_length=32).rows[0]
    in_sentence = tok(" the good film")  # each word after a space, as it reads mid-sentence
    assert row["input_ids"] == in_sentence["input_ids"]
    assert tok.convert_ids_to_tokens(row["input_ids"]) == ["<s>", "Ġthe", "Ġgood", "Ġfilm", "</s>"]
    assert [l for l in row["labels"] if l != IGNORE_INDEX] == [1, 0, 2]


def test_serving_tokenizer_encodes_words_as_training_did(tmp_path):
    """The torch-free predictor reads tokenizer.json with the Rust tokenizer alone: its tagging
    input must get the same ids as kdexam.data.encode gave the model in training."""
    from tokenizers import Tokenizer

    from kdexam.inference.serving import space_before_words
    from kdexam.teachers.loader import load_tokenizer

    d = byte_level_bpe_dir(tmp_path)
    words = ["a", "bad", "film", "in", "the", "movie"]
    task = Task("token-classification", ["X"])
    trained = encode([Example(words, None, None)], load_tokenizer(str(d)), task, max_length=32).rows[0]["input_ids"]
    rust = Tokenizer.from_file(str(d / "tokenizer.json"))
    assert rust.encode(words, is_pretokenized=True).ids != trained, "the saved tokenizer must lack the prefix space"
    assert space_before_words(rust) is True
    assert rust.encode(words, is_pretokenized=True).ids == trained
    assert space_before_words(rust) is False  # already spaced: nothing to change


def test_space_before_words_reaches_into_a_sequence_and_leaves_wordpiece_alone(tiny_tokenizer):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from kdexam.inference.serving import space_before_words

    rust = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    rust.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    assert space_before_words(rust) is True
    assert '"add_prefix_space":true' in rust.to_str().replace(" ", "")
    wordpiece = tiny_tokenizer.backend_tokenizer
    before = wordpiece.pre_tokenizer.__getstate__()
    assert space_before_words(wordpiece) is False
    assert wordpiece.pre_tokenizer.__getstate__() == before


def test_a_word_that_tokenises_to_nothing_keeps_its_tag(tiny_tokenizer):
    """A soft hyphen alone is a CoNLL token that WordPiece reads as nothing: its tag never reached
    the loss, and evaluation filled it with the first tag. It is now the unknown token."""
    task = Task("token-classification", ["ADJ", "DET", "NOUN"])
    row = encode([Example(["the", "\u00ad", "film"], None, ["DET", "ADJ", "NOUN"])], tiny_tokenizer, task, max_length=64).rows[0]
    assert [l for l in row["labels"] if l != IGNORE_INDEX] == [1, 0, 2]
    assert sorted({w for w in row["word_ids"] if w >= 0}) == [0, 1, 2]
    assert tiny_tokenizer.unk_token_id in row["input_ids"]
    cut = encode([Example(["the", "film"] * 40, None, ["DET", "NOUN"] * 40)], tiny_tokenizer, task, max_length=16).rows[0]
    assert max(cut["word_ids"]) < 79 and tiny_tokenizer.unk_token_id not in cut["input_ids"]  # truncated words stay cut
