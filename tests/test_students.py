"""Student models: every kind on every task kind (shapes, padding invariance, save/load),
teacher layer selection, teacher/PCA/GloVe/random embeddings, learning, and errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import sentiment_examples, tagging_sentences
from kdexam.data.encode import Collator, encode
from kdexam.data.readers import Example
from kdexam.errors import KdexamError
from kdexam.students import (KINDS, StudentSpec, build_student, check_spec, count_parameters, load_student,
                             save_student)
from kdexam.students.embeddings import pca
from kdexam.students.word_vectors import read_vectors
from kdexam.students.teacher_layers import find_layer_list, select_layers
from kdexam.tasks import Task

TASKS = {
    "cls": Task("classification", ["neg", "pos"]),
    "pair": Task("classification", ["no", "yes", "maybe"], text_pair=True),
    "tag": Task("token-classification", ["ADJ", "DET", "NOUN"]),
    "reg": Task("regression"),
}
# lengths differ a lot, so that the short examples are heavily padded in a batch
LONG = "the movie was really quite good and the plot was great and the actors were lovely but the story was dull"
EXAMPLES = {
    "cls": [Example("good"), Example(LONG), Example("bad film it was")],
    "reg": [Example("good"), Example(LONG), Example("bad film it was")],
    "pair": [Example("good", "fine"), Example(LONG, "the plot was dull and boring and ugly"), Example("bad", LONG)],
    "tag": [Example(["good"]), Example(LONG.split()), Example(["the", "film", "story"])],
}
ALL_KINDS = ["bilstm", "cnn", "bert-tiny", "bert-mini", "bert-small", "bert-medium", "teacher-layers:1"]
SMALL = {"bilstm": dict(hidden_size=16), "cnn": dict(num_filters=8)}


pytestmark = pytest.mark.usefixtures("one_thread")


def save_teacher(src: Path, dst: Path, num_labels: int = 2) -> Path:
    """A fine-tuned-shaped teacher directory: the tiny encoder with a sequence-classification head."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_pretrained(src, num_labels=num_labels).save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


@pytest.fixture(scope="session")
def teacher_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    return save_teacher(tiny_bert_dir, tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="session")
def deep_teacher_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    """A 6-layer random BERT with a classification head, to check which layers are kept."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(2)
    d = tmp_path_factory.mktemp("deep-teacher")
    cfg = BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=16, num_hidden_layers=6, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=2)
    BertForSequenceClassification(cfg).save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


def batch_of(tokenizer, task: Task, examples: list[Example]) -> dict:
    """Encode and pad ``examples`` exactly as training does (``encode`` + ``Collator``)."""
    rows = encode(examples, tokenizer, task, max_length=64).rows
    batch = Collator(tokenizer, task)([dict(r, index=i) for i, r in enumerate(rows)])
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def logits_of(model, batch: dict) -> torch.Tensor:
    with torch.inference_mode():
        return model(**batch)["logits"]


# ---- every kind × every task kind --------------------------------------------------------------


@pytest.mark.parametrize("task_name", list(TASKS))
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_student_shapes_padding_and_save_load(kind, task_name, teacher_dir, tmp_path):
    task, examples = TASKS[task_name], EXAMPLES[task_name]
    teacher = shutil.copytree(teacher_dir, tmp_path / "teacher")  # removed before loading: load needs no teacher
    spec = StudentSpec(kind=kind, **SMALL.get(kind, {}))
    torch.manual_seed(0)
    model, tok = build_student(spec, task, teacher)
    model.eval()
    with torch.no_grad():  # a padding vector that is not zero, so that any read of padding shows
        model.get_input_embeddings().weight[tok.pad_token_id] = 0.5
    batch = batch_of(tok, task, examples)
    if task.text_pair:
        assert "token_type_ids" in batch and batch["token_type_ids"].max() == 1
        segments = getattr(getattr(model, "embeddings", None), "segment", None)
        if segments is not None:  # learned from zero: give it a value, as training would
            with torch.no_grad():
                segments.weight.normal_()
        no_types = dict(batch, token_type_ids=torch.zeros_like(batch["token_type_ids"]))
        assert not torch.allclose(logits_of(model, batch), logits_of(model, no_types)), "token types are ignored"
    B, L = batch["input_ids"].shape
    lengths = batch["attention_mask"].sum(1).tolist()
    assert min(lengths) < L / 3, "the batch must hold heavily padded examples"

    # padding invariance: each example alone gives the logits it gets in the padded batch
    full = logits_of(model, batch)
    for i, n in enumerate(lengths):
        alone = logits_of(model, batch_of(tok, task, [examples[i]]))
        if task.kind == "token-classification":
            assert alone.shape[1] == n
        got = full[i, :n] if task.kind == "token-classification" else full[i]
        assert torch.allclose(alone[0], got, atol=1e-5, rtol=0), \
            f"{kind}/{task_name}: example {i} changes with padding (max diff {(alone[0] - got).abs().max():.2e})"

    # save -> load (without the teacher) -> identical predictions
    out_dir = tmp_path / "student"
    save_student(model, tok, spec, task, out_dir)
    shutil.rmtree(teacher)
    assert (out_dir / "model.safetensors").is_file() and (out_dir / "student.json").is_file()
    assert not list(out_dir.glob("*.bin")) and not list(out_dir.glob(".student-*")), "safetensors only, no leftovers"
    record = json.loads((out_dir / "student.json").read_text())
    assert record["spec"]["kind"] == kind and record["task"]["kind"] == task.kind
    assert record["parameters"]["total"] == count_parameters(model)
    torch.manual_seed(123)  # a different random init, so that an ignored weight file would show
    loaded, tok2, spec2, task2 = load_student(out_dir)
    assert not loaded.training and spec2 == spec and task2 == task
    batch2 = batch_of(tok2, task, examples)
    assert all(torch.equal(batch[k], batch2[k]) for k in batch), "the saved tokenizer encodes differently"
    assert torch.allclose(logits_of(loaded, batch2), full, atol=1e-6, rtol=0)

    # shapes (asked last: attention maps switch transformers from SDPA to eager attention)
    with torch.inference_mode():
        out = model(**batch, output_hidden_states=True, output_attentions=True)
    expected = {"classification": (B, task.num_labels), "regression": (B, 1),
                "token-classification": (B, L, task.num_labels)}[task.kind]
    assert tuple(out["logits"].shape) == expected
    assert torch.allclose(out["logits"], full, atol=1e-5, rtol=0)
    hs = out["hidden_states"]
    assert isinstance(hs, tuple) and len(hs) >= 2
    assert all(h.shape[:2] == (B, L) and h.dim() == 3 for h in hs)
    if kind.startswith(("bert-", "teacher-layers")):
        n_layers = model.config.num_hidden_layers
        assert len(hs) == n_layers + 1 and len(out["attentions"]) == n_layers
        heads = model.config.num_attention_heads
        assert all(tuple(a.shape) == (B, heads, L, L) for a in out["attentions"])
    else:
        assert "attentions" not in out
        if task.kind != "token-classification":
            assert out["pooled"].shape[0] == B



def test_saved_transformer_student_is_a_hugging_face_model(teacher_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    task = TASKS["cls"]
    model, tok = build_student(StudentSpec(kind="bert-tiny"), task, teacher_dir)
    model.eval()
    save_student(model, tok, StudentSpec(kind="bert-tiny"), task, tmp_path / "s")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s").eval()
    batch = batch_of(tok, task, EXAMPLES["cls"])
    with torch.inference_mode():
        assert torch.allclose(hf(**batch).logits, logits_of(model, batch), atol=1e-6)
    assert hf.config.max_position_embeddings == 64 and hf.config.vocab_size >= len(tok)


def test_presets_have_the_published_shapes(teacher_dir):
    shapes = {"bert-tiny": (2, 128, 2, 512), "bert-mini": (4, 256, 4, 1024), "bert-small": (4, 512, 8, 2048),
              "bert-medium": (8, 512, 8, 2048)}
    task = Task("regression")
    for kind, shape in shapes.items():
        model, tok = build_student(StudentSpec(kind=kind), task, teacher_dir)
        c = model.config
        assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == shape
        assert c.max_position_embeddings == 64 and c.vocab_size == len(tok)
        assert c.num_labels == 1 and c.problem_type == "regression"
        assert len(model.model.base_model.encoder.layer) == shape[0]


# ---- teacher layers ----------------------------------------------------------------------------------


def test_layer_rules():
    assert select_layers(12, 6, "uniform") == [0, 2, 4, 7, 9, 11]  # DistilBERT's choice
    assert select_layers(6, 2, "uniform") == [0, 5]
    assert select_layers(6, 3, "uniform") == [0, 3, 5]
    assert select_layers(6, 1, "uniform") == [0]
    assert select_layers(6, 6, "uniform") == list(range(6))
    assert select_layers(6, 2, "lower") == [0, 1]
    assert select_layers(6, 2, "upper") == [4, 5]
    assert select_layers(6, 2, [4, 1]) == [4, 1]
    for n in range(1, 13):
        for k in range(1, n + 1):
            idx = select_layers(n, k, "uniform")
            assert len(set(idx)) == k and idx == sorted(idx) and idx[0] == 0 and (k == 1 or idx[-1] == n - 1)
    for bad in ([0, 0], [0, 6], [-1, 2]):
        with pytest.raises(KdexamError):
            select_layers(6, 2, bad)
    with pytest.raises(KdexamError, match="teacher has 6"):
        select_layers(6, 7, "lower")


@pytest.mark.parametrize("kind,layers,expected", [
    ("teacher-layers:2", "lower", [0, 1]),
    ("teacher-layers:2", "upper", [4, 5]),
    ("teacher-layers:2", "uniform", [0, 5]),
    ("teacher-layers:3", "uniform", [0, 3, 5]),
    ("teacher-layers:2", [4, 1], [4, 1]),
    ("teacher-layers", [2, 3, 5], [2, 3, 5]),
])
def test_teacher_layers_copy_the_right_layers(kind, layers, expected, deep_teacher_dir):
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(deep_teacher_dir)
    model, _ = build_student(StudentSpec(kind=kind, layers=layers), TASKS["cls"], deep_teacher_dir)
    student = model.model
    assert student.config.num_hidden_layers == len(expected)
    assert model.kdexam_info["teacher_layers"] == expected
    s_layers, t_layers = student.bert.encoder.layer, teacher.bert.encoder.layer
    assert len(s_layers) == len(expected)
    for j, i in enumerate(expected):
        t_state = t_layers[i].state_dict()
        for name, value in s_layers[j].state_dict().items():
            assert torch.equal(value, t_state[name]), f"student layer {j} {name} is not teacher layer {i}"
        other = [k for k in range(6) if k != i]
        assert not any(torch.equal(s_layers[j].output.dense.weight, t_layers[k].output.dense.weight) for k in other)
    # embeddings, pooler and the (same-sized) head are the teacher's
    for prefix in ("bert.embeddings.", "bert.pooler.", "classifier."):
        t_state = teacher.state_dict()
        for name, value in student.state_dict().items():
            if name.startswith(prefix):
                assert torch.equal(value, t_state[name]), name


def test_teacher_layers_of_an_encoder_with_per_layer_config(tiny_tokenizer, tmp_path):
    """ModernBERT lists an attention type per layer and builds its first layer without an attention
    norm: the kept layers' types follow them (the student saves and reloads to the same logits), and a
    selection that would move another layer first is refused at build time (it failed on reload)."""
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    torch.manual_seed(0)
    tok = tiny_tokenizer
    cfg = ModernBertConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=6, num_attention_heads=2,
                           max_position_embeddings=64, global_attn_every_n_layers=3, local_attention=4, num_labels=2,
                           pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                           cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id, attn_implementation="eager")
    d = tmp_path / "modernbert"
    ModernBertForSequenceClassification(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    task = Task("classification", ["LABEL_0", "LABEL_1"])
    model, t = build_student(StudentSpec(kind="teacher-layers:2", layers=[0, 3]), task, d)
    assert model.config.layer_types == [cfg.layer_types[0], cfg.layer_types[3]]
    save_student(model, t, StudentSpec(kind="teacher-layers:2", layers=[0, 3]), task, tmp_path / "s")
    enc = t(["the movie was good and the plot was great"], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(enc["input_ids"], enc["attention_mask"])["logits"],
                           load_student(tmp_path / "s")[0](enc["input_ids"], enc["attention_mask"])["logits"])
    with pytest.raises(KdexamError, match="builds its layers by position; keep its first layer first"):
        build_student(StudentSpec(kind="teacher-layers:2", layers="upper"), task, d)
    random, _ = build_student(StudentSpec(kind="teacher-layers:2", layers="random"), task, d)
    assert len(random.config.layer_types) == 2
    # the bare encoder of general distillation too (it was accepted, and its reload dropped a trained attention norm)
    from kdexam.students.encoder import build_general_student

    with pytest.raises(KdexamError, match="builds its layers by position"):
        build_general_student("teacher-layers", 2, d, [1, 2])
    encoder, _, info = build_general_student("teacher-layers", 2, d, [0, 3])
    assert info["teacher_layers"] == [0, 3]


def test_a_half_precision_teacher_gives_float32_students_random_control_too(tiny_bert_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = tmp_path / "half"
    AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2).half().save_pretrained(d)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(d)
    task = Task("classification", ["LABEL_0", "LABEL_1"])
    for layers in ("uniform", "random"):
        model, _ = build_student(StudentSpec(kind="teacher-layers:1", layers=layers), task, d)
        assert {p.dtype for p in model.parameters()} == {torch.float32}, layers


def test_teacher_layers_find_the_layers_of_other_encoders(tiny_tokenizer, tmp_path):
    """MPNet (no token type ids) and DistilBERT (layers under ``transformer``), found generically."""
    from transformers import (DistilBertConfig, DistilBertForSequenceClassification, MPNetConfig,
                              MPNetForSequenceClassification)

    torch.manual_seed(3)
    v = len(tiny_tokenizer)
    models = {
        "mpnet": MPNetForSequenceClassification(MPNetConfig(vocab_size=v, hidden_size=16, num_hidden_layers=4,
                                                            num_attention_heads=2, intermediate_size=32,
                                                            max_position_embeddings=70, num_labels=2,
                                                            pad_token_id=0)),
        "distilbert": DistilBertForSequenceClassification(DistilBertConfig(vocab_size=v, dim=16, n_layers=4, n_heads=2,
                                                                           hidden_dim=32, max_position_embeddings=64,
                                                                           num_labels=2)),
    }
    task = TASKS["pair"]
    for name, teacher in models.items():
        d = tmp_path / name
        teacher.save_pretrained(d)
        tiny_tokenizer.save_pretrained(d)
        model, tok = build_student(StudentSpec(kind="teacher-layers:2", layers="upper"), task, d)
        _, _, layers = find_layer_list(model.model)
        _, _, t_layers = find_layer_list(teacher)
        assert len(layers) == 2 and layers[0] is not t_layers[2]
        assert all(torch.equal(a, b) for a, b in zip(layers[0].state_dict().values(), t_layers[2].state_dict().values()))
        model.eval()
        batch = batch_of(tok, task, EXAMPLES["pair"])
        assert tuple(logits_of(model, batch).shape) == (3, 3)
        save_student(model, tok, StudentSpec(kind="teacher-layers:2", layers="upper"), task, tmp_path / f"{name}-s")
        loaded = load_student(tmp_path / f"{name}-s")[0]
        assert torch.allclose(logits_of(loaded, batch), logits_of(model, batch), atol=1e-6)


def test_half_precision_teacher_gives_float32_students(teacher_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    half = tmp_path / "half-teacher"
    AutoModelForSequenceClassification.from_pretrained(teacher_dir).half().save_pretrained(half)
    _tok(teacher_dir).save_pretrained(half)
    task = TASKS["cls"]
    for spec in (StudentSpec(kind="teacher-layers:1"), StudentSpec(kind="bilstm", hidden_size=8)):
        model, tok = build_student(spec, task, half)
        assert {p.dtype for p in model.parameters()} == {torch.float32}, spec.kind
        model.eval()
        save_student(model, tok, spec, task, tmp_path / spec.kind)
        loaded = load_student(tmp_path / spec.kind)[0]
        assert {p.dtype for p in loaded.parameters()} == {torch.float32}, spec.kind
        batch = batch_of(tok, task, EXAMPLES["cls"])
        assert torch.equal(logits_of(loaded, batch), logits_of(model, batch))


# ---- embeddings -------------------------------------------------------------------------------------


def test_pca_teacher_embeddings_have_the_requested_width(teacher_dir):
    from sklearn.decomposition import PCA
    from transformers import AutoModel

    teacher_matrix = AutoModel.from_pretrained(teacher_dir).get_input_embeddings().weight.detach()
    model, tok = build_student(StudentSpec(kind="bilstm", embedding_dim=8, hidden_size=8), TASKS["cls"], teacher_dir)
    w = model.embeddings.word.weight.detach()
    assert tuple(w.shape) == (teacher_matrix.shape[0], 8)
    info = model.kdexam_info["embeddings"]
    assert info["pca"] and info["dim"] == 8 and info["teacher_dim"] == 32
    ref = PCA(n_components=8, svd_solver="full").fit(teacher_matrix.double().numpy())
    assert info["explained_variance"] == pytest.approx(ref.explained_variance_ratio_.sum(), abs=1e-5)
    proj = ref.transform(teacher_matrix.double().numpy())
    # principal components are defined up to sign
    assert np.allclose(np.abs(w.numpy()), np.abs(proj), atol=1e-4)
    # full width: an exact copy of the teacher's matrix, no PCA
    model, _ = build_student(StudentSpec(kind="cnn", num_filters=4), TASKS["cls"], teacher_dir)
    assert torch.equal(model.embeddings.word.weight.detach(), teacher_matrix)
    assert model.kdexam_info["embeddings"]["pca"] is False
    # variance kept grows with the width and is 1 at full width
    x = torch.randn(50, 10) @ torch.randn(10, 10)
    kept = [pca(x, k)[1] for k in (2, 5, 10)]
    assert kept[0] < kept[1] < kept[2] == pytest.approx(1.0)


def test_random_embeddings_use_the_teacher_tokenizer(teacher_dir, tiny_tokenizer):
    model, tok = build_student(StudentSpec(kind="bilstm", embeddings="random", hidden_size=8), TASKS["cls"], teacher_dir)
    assert tuple(model.embeddings.word.weight.shape) == (len(tiny_tokenizer), 300)
    assert tok.get_vocab() == tiny_tokenizer.get_vocab()
    model, _ = build_student(StudentSpec(kind="cnn", embeddings="random", embedding_dim=12, num_filters=4),
                             TASKS["cls"], teacher_dir)
    assert model.embeddings.word.weight.shape[1] == 12


def write_vectors(path: Path, vectors: dict[str, list[float]], header: bool = True) -> Path:
    dim = len(next(iter(vectors.values())))
    lines = ([f"{len(vectors)} {dim}"] if header else []) + [f"{w} " + " ".join(f"{x:.6f}" for x in v)
                                                            for w, v in vectors.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("header", [True, False])
def test_glove_vocabulary_and_vectors(teacher_dir, tmp_path, header):
    rng = np.random.default_rng(0)
    texts = [r["text"] for r in sentiment_examples(100)]
    vectors = {w: rng.normal(size=6).round(6).tolist() for w in ["good", "bad", "movie", "plot", "zebra"]}
    vectors["Great"] = rng.normal(size=6).round(6).tolist()  # cased in the file, matched case-insensitively
    vectors["the"] = [0.5] * 6
    vectors["Plot"] = [9.0] * 6  # after 'plot' in the file: the exact match wins
    vectors = {"Movie": [7.0] * 6, **vectors}  # before 'movie' in the file: the exact match still wins
    vectors_file = write_vectors(tmp_path / "vec.txt", vectors, header=header)
    spec = StudentSpec(kind="bilstm", embeddings="glove", vectors_file=str(vectors_file), hidden_size=8)
    model, tok = build_student(spec, TASKS["cls"], teacher_dir, train_texts=texts)
    vocab = tok.get_vocab()
    assert "zebra" not in vocab and "movie" in vocab and "dull" in vocab and "[PAD]" in vocab
    w = model.embeddings.word.weight.detach()
    for word in ["good", "bad", "movie", "plot", "the"]:
        assert torch.equal(w[vocab[word]], torch.tensor(vectors[word], dtype=torch.float32)), word
    assert torch.equal(w[vocab["great"]], torch.tensor(vectors["Great"], dtype=torch.float32))
    assert torch.equal(w[vocab["[PAD]"]], torch.zeros(6))
    missing = w[vocab["dull"]]
    assert missing.abs().max() > 0 and missing.abs().max() < 3
    info = model.kdexam_info["embeddings"]
    words = len(vocab) - 4
    assert info["words_found"] == 6 and info["words"] == words and info["coverage"] == pytest.approx(6 / words, abs=1e-6)
    assert 0 < info["token_coverage"] < 1 and info["dim"] == 6
    # lowercase, pairs and word ids work with the word tokenizer
    enc = tok("The GOOD movie", "bad plot")
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "the", "good", "movie", "[SEP]", "bad", "plot", "[SEP]"]
    assert enc["token_type_ids"] == [0, 0, 0, 0, 0, 1, 1, 1]
    assert tok(["Good", "film"], is_split_into_words=True).word_ids() == [None, 0, 1, None]
    # saved and loaded without the vectors file
    model.eval()
    batch = batch_of(tok, TASKS["cls"], EXAMPLES["cls"])
    save_student(model, tok, spec, TASKS["cls"], tmp_path / "s")
    vectors_file.unlink()
    loaded, tok2, _, _ = load_student(tmp_path / "s")
    assert tok2.get_vocab() == vocab
    assert torch.equal(logits_of(loaded, batch_of(tok2, TASKS["cls"], EXAMPLES["cls"])), logits_of(model, batch))


def test_a_vector_of_nan_or_inf_is_a_skipped_line(teacher_dir, tmp_path):
    """An audit (2026-12-04, late): ``nice nan 0 0`` went into the table as it was, and every logit of
    a text with 'nice' was NaN."""
    texts = ["the nice movie", "the bad movie", "a movie"]
    path = write_vectors(tmp_path / "vec.txt", {"the": [0.1, 0.2, 0.3], "movie": [3.0, -3.0, 2.0], "nice": [float("nan"), 0.0, 0.0],
                                                "bad": [float("inf"), 1.0, 1.0]}, header=False)
    spec = StudentSpec(kind="bilstm", embeddings="glove", vectors_file=str(path), hidden_size=8)
    model, tok = build_student(spec, TASKS["cls"], teacher_dir, train_texts=texts)
    assert torch.isfinite(model.embeddings.word.weight).all()
    info = model.kdexam_info["embeddings"]
    assert info["words_found"] == 2 and info["skipped_lines"] == 2


def test_glove_for_tagging_and_pairs(teacher_dir, tmp_path):
    vectors_file = write_vectors(tmp_path / "vec.txt", {"movie": [1.0, 2.0, 3.0], "good": [0.0, 1.0, 0.0]})
    sents = tagging_sentences(30)
    for kind in ("bilstm", "cnn"):
        spec = StudentSpec(kind=kind, embeddings="glove", vectors_file=str(vectors_file), **SMALL[kind])
        model, tok = build_student(spec, TASKS["tag"], teacher_dir, train_texts=[ws for ws, _ in sents])
        assert torch.equal(model.embeddings.word.weight[tok.get_vocab()["movie"]].detach(), torch.tensor([1.0, 2.0, 3.0]))
        model.eval()
        batch = batch_of(tok, TASKS["tag"], EXAMPLES["tag"])
        assert logits_of(model, batch).shape[:2] == batch["input_ids"].shape
        pairs = [(r["text"], "good movie") for r in sentiment_examples(20)]
        model, tok = build_student(spec, TASKS["pair"], teacher_dir, train_texts=pairs)
        batch = batch_of(tok, TASKS["pair"], EXAMPLES["pair"])
        assert batch["token_type_ids"].max() == 1 and logits_of(model.eval(), batch).shape == (3, 3)


def test_read_vectors_handles_headers_spaces_and_bad_lines(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text("3 2\nnew york 1.0 2.0\nbroken 1.0\ncat 0.5 0.25\n\n", encoding="utf-8")
    found, dim, stats = read_vectors(p, {"new york": 0, "cat": 1, "dog": 2})
    assert dim == 2 and set(found) == {0, 1} and stats["skipped_lines"] == 1
    assert found[1].tolist() == [0.5, 0.25]
    with pytest.raises(KdexamError, match="does not exist"):
        read_vectors(tmp_path / "nope.txt", {})
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(KdexamError, match="no word vectors"):
        read_vectors(tmp_path / "empty.txt", {"cat": 0})


# ---- learning -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [
    StudentSpec(kind="bilstm", hidden_size=32),
    StudentSpec(kind="cnn", num_filters=16),
], ids=["bilstm", "cnn"])
def test_small_students_learn_the_sentiment_task(spec, teacher_dir):
    torch.manual_seed(0)
    task = TASKS["cls"]
    rows = sentiment_examples(200, seed=1)
    model, tok = build_student(spec, task, teacher_dir)
    batch = batch_of(tok, task, [Example(r["text"]) for r in rows])
    gold = torch.tensor([task.label2id[r["label"]] for r in rows])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for epoch in range(15):
        for start in range(0, len(rows), 32):
            part = {k: v[start:start + 32] for k, v in batch.items()}
            loss = torch.nn.functional.cross_entropy(model(**part)["logits"], gold[start:start + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    accuracy = (logits_of(model, batch).argmax(-1) == gold).float().mean().item()
    assert accuracy >= 0.9, f"{spec.kind} reached only {accuracy:.2f} train accuracy"


# ---- parameters, options, shared tensors ----------------------------------------------------------


def test_options_change_the_architecture(teacher_dir):
    task = TASKS["cls"]
    base, _ = build_student(StudentSpec(kind="bilstm", hidden_size=8), task, teacher_dir)
    deep, _ = build_student(StudentSpec(kind="bilstm", hidden_size=8, num_layers=2, pooling="attention"), task, teacher_dir)
    assert len(deep.lstms) == 2 and deep.attention is not None
    assert count_parameters(deep) > count_parameters(base)
    emb = base.embeddings.word.weight.numel()
    assert count_parameters(base) - count_parameters(base, exclude_embeddings=True) == emb
    out = deep.eval()(**batch_of(_tok(teacher_dir), task, EXAMPLES["cls"]), output_hidden_states=True)
    assert len(out["hidden_states"]) == 3 and out["hidden_states"][-1].shape[-1] == 16
    for pooling in ("mean", "attention"):
        m, tok = build_student(StudentSpec(kind="bilstm", hidden_size=8, pooling=pooling), task, teacher_dir)
        m.eval()
        b = batch_of(tok, task, EXAMPLES["cls"])
        alone = logits_of(m, batch_of(tok, task, EXAMPLES["cls"][:1]))
        assert torch.allclose(alone[0], logits_of(m, b)[0], atol=1e-5), pooling
    cnn, _ = build_student(StudentSpec(kind="cnn", filter_widths=[2, 3], num_filters=5), task, teacher_dir)
    assert [c.kernel_size[0] for c in cnn.convs] == [2, 3] and cnn.classifier.in_features == 10
    tagger, _ = build_student(StudentSpec(kind="cnn", num_filters=5, num_layers=2), TASKS["tag"], teacher_dir)
    assert len(tagger.convs) == 2
    frozen, _ = build_student(StudentSpec(kind="bert-tiny", freeze_embeddings=True), task, teacher_dir)
    assert not frozen.model.get_input_embeddings().weight.requires_grad
    frozen, _ = build_student(StudentSpec(kind="cnn", freeze_embeddings=True, num_filters=4), task, teacher_dir)
    assert not frozen.embeddings.word.weight.requires_grad
    assert "bilstm" in KINDS and "teacher-layers:K" in KINDS
    # a spec written out in full (config.yaml, student.json) is still valid when read back
    spec = StudentSpec(kind="cnn", num_filters=5, filter_widths=[2, 3])
    assert check_spec(StudentSpec.model_validate(json.loads(json.dumps(spec.model_dump(mode="json")))), task) == ("cnn", None)


def _tok(teacher_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(teacher_dir)


def test_save_handles_shared_tensors(teacher_dir, tmp_path):
    task = TASKS["cls"]
    model, tok = build_student(StudentSpec(kind="bert-tiny"), task, teacher_dir)
    layers = model.model.bert.encoder.layer
    layers[1].output.dense.weight = layers[0].output.dense.weight  # shared, as in ALBERT-style students
    save_student(model, tok, StudentSpec(kind="bert-tiny"), task, tmp_path / "s")
    keys = load_file(tmp_path / "s" / "model.safetensors").keys()
    assert sum(k.endswith("output.dense.weight") and "attention" not in k for k in keys) == 1
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


# ---- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec,texts,match", [
    (dict(kind="lstm"), None, "did you mean 'bilstm'"),
    (dict(kind="bert-tiney"), None, "did you mean 'bert-tiny'"),
    (dict(kind="teacher-layer:2"), None, "teacher-layers:K"),
    (dict(kind="teacher-layers:5"), None, "teacher has 2"),
    (dict(kind="teacher-layers:x"), None, "positive layer count"),
    (dict(kind="teacher-layers"), None, "layer count"),
    (dict(kind="teacher-layers:3", layers=[0, 1]), None, "lists 2 indices"),
    (dict(kind="teacher-layers:2", layers=[0, 7]), None, "out of range"),
    (dict(kind="bilstm", embeddings="glove"), ["good movie"], "vectors_file"),
    (dict(kind="bilstm", embeddings="glove", vectors_file="/no/such/vectors.txt"), ["good movie"], "does not exist"),
    (dict(kind="cnn", embeddings="glove", vectors_file="VEC"), None, "train_texts"),
    (dict(kind="cnn", embeddings="glove", vectors_file="VEC", embedding_dim=7), ["good movie"], "3 dimensions"),
    (dict(kind="bilstm", vectors_file="VEC"), None, "only read with embeddings 'glove'"),
    (dict(kind="bilstm", embedding_dim=64), None, "wider than the teacher"),
    (dict(kind="cnn", hidden_size=50), None, "'hidden_size' does not apply to cnn"),
    (dict(kind="cnn", num_layers=2), None, "only applies to token classification"),
    (dict(kind="bert-mini", embeddings="random"), None, "does not apply to bert-mini"),
    (dict(kind="teacher-layers:1", dropout=0.3), None, "does not apply"),
    (dict(kind="bilstm", layers="upper"), None, "'layers' does not apply"),
])
def test_bad_specs_are_user_errors(spec, texts, match, teacher_dir, tmp_path):
    vec = write_vectors(tmp_path / "v.txt", {"good": [1.0, 0.0, 0.0]})
    spec = {k: (str(vec) if v == "VEC" else v) for k, v in spec.items()}
    with pytest.raises(KdexamError, match=match) as e:
        build_student(StudentSpec(**spec), TASKS["cls"], teacher_dir, train_texts=texts)
    assert "\n" not in str(e.value) and str(e.value).endswith(".")


def test_more_user_errors(teacher_dir, tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        StudentSpec(kind="bilstm", hiden_size=10)  # typo: extra keys are forbidden
    with pytest.raises(ValidationError):
        StudentSpec(kind="bilstm", pooling="min")
    with pytest.raises(KdexamError, match="pooling"):
        build_student(StudentSpec(kind="bilstm", pooling="mean"), TASKS["tag"], teacher_dir)
    with pytest.raises(KdexamError, match="student.json"):
        load_student(tmp_path)
    with pytest.raises(KdexamError, match="no-teacher"):
        build_student(StudentSpec(kind="bilstm"), TASKS["cls"], tmp_path / "no-teacher")
    with pytest.raises(KdexamError, match="at least two"):
        build_student(StudentSpec(kind="cnn"), Task("classification", ["only"]), teacher_dir)


def test_trimmed_vocabulary_keeps_used_rows_and_maps_the_rest_to_unk(teacher_dir, tiny_tokenizer, tmp_path):
    from kdexam.students.embeddings import load_teacher_embedding_matrix
    from kdexam.students.registry import StudentSpec, build_student, load_student, save_student

    task = Task("classification", ["neg", "pos"])
    texts = ["the movie was good", "awful plot"]
    model, tok = build_student(StudentSpec(kind="bilstm", hidden_size=8), task, teacher_dir, train_texts=texts)
    used = set(tok.all_special_ids) | {i for t in texts for i in tok(t, add_special_tokens=False)["input_ids"]}
    word = model.embeddings.word.weight
    assert word.shape[0] == len(used) < len(tiny_tokenizer)
    teacher_rows = load_teacher_embedding_matrix(teacher_dir)
    good = tok.convert_tokens_to_ids("good")
    assert torch.equal(word[model.embeddings.id_map[good]], teacher_rows[good])
    unseen = tok.convert_tokens_to_ids("superb")
    assert unseen not in used and model.embeddings.id_map[unseen] == model.embeddings.id_map[tok.unk_token_id]
    untrimmed, _ = build_student(StudentSpec(kind="bilstm", hidden_size=8, trim_vocab=False), task, teacher_dir, train_texts=texts)
    assert untrimmed.embeddings.word.weight.shape[0] == len(tiny_tokenizer)
    save_student(model, tok, StudentSpec(kind="bilstm", hidden_size=8), task, tmp_path / "s")
    loaded = load_student(tmp_path / "s")[0]
    assert torch.equal(loaded.embeddings.id_map, model.embeddings.id_map)
    enc = tok(["the superb movie"], return_tensors="pt")
    model.eval()
    with torch.inference_mode():
        assert torch.equal(model(**enc)["logits"], loaded(**enc)["logits"])


def test_min_token_count_drops_rare_tokens_to_unk(teacher_dir, tiny_tokenizer):
    """``min_token_count: 2`` keeps the specials and the tokens used twice or more; a token used
    once reads [UNK]'s row; with trim_vocab false it is refused."""
    from kdexam.students.registry import StudentSpec, build_student

    task = Task("classification", ["neg", "pos"])
    texts = ["the movie was good", "the plot was awful", "good"]
    model, tok = build_student(StudentSpec(kind="cnn", min_token_count=2), task, teacher_dir, train_texts=texts)
    ids = {w: tok.convert_tokens_to_ids(w) for w in ("the", "was", "good", "movie", "awful")}
    assert tok.unk_token_id not in ids.values()
    assert model.embeddings.word.weight.shape[0] == len(set(tok.all_special_ids)) + 3  # the, was, good
    unk = model.embeddings.id_map[tok.unk_token_id]
    assert all(model.embeddings.id_map[ids[w]] != unk for w in ("the", "was", "good"))
    assert all(model.embeddings.id_map[ids[w]] == unk for w in ("movie", "awful"))
    assert model.kdexam_info["embeddings"]["min_token_count"] == 2
    with pytest.raises(KdexamError, match="min_token_count"):
        build_student(StudentSpec(kind="cnn", min_token_count=2, trim_vocab=False), task, teacher_dir, train_texts=texts)
    with pytest.raises(KdexamError, match="does not apply"):
        build_student(StudentSpec(kind="bert-mini", min_token_count=2), task, teacher_dir, train_texts=texts)
    with pytest.raises(KdexamError, match="pass train_texts"):
        build_student(StudentSpec(kind="cnn", min_token_count=2), task, teacher_dir)


def test_bilstm_two_way_pass_equals_packing():
    """The BiLSTM's unpacked two-way pass gives the packed LSTM's outputs and gradients, zero at
    padding, for rows of mixed lengths (an empty row included) — in training mode too."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from kdexam.students.bilstm import bidirectional_lstm, lengths_and_mask

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 5, batch_first=True, bidirectional=True)
    attention = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [1] + [0] * 6, [1] * 5 + [0] * 2])
    x = torch.randn(4, 7, 6)
    lengths, mask = lengths_and_mask(attention)
    outs, grads = [], []
    for two_way in (False, True):
        inputs = x.clone().requires_grad_(True)
        if two_way:
            out = bidirectional_lstm(lstm, inputs, lengths, mask)
        else:
            packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
            out = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=7)[0]
        lstm.zero_grad()
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append(out.detach())
        grads.append([inputs.grad] + [p.grad.clone() for p in lstm.parameters()])
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    assert outs[1][1, 3:].abs().max() == 0 and outs[1][2, 1:].abs().max() == 0
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_small_fixes_of_the_build(tiny_bert_dir, tiny_tokenizer, tmp_path):
    """PCA keeps the asked width with fewer tokens than dimensions; contextual vectors of a text longer
    than the teacher's positions (64) are cut there; a kind in capitals gets its kind's learning rate;
    a student from an encoder takes the spec's dropout and refuses trim_vocab."""
    from transformers import BertConfig, BertModel

    from kdexam.config import DistillRunConfig
    from kdexam.students.encoder import ENCODER_FILE
    from kdexam.students.transformer import PRESETS

    projected, explained = pca(torch.randn(3, 10), 5)
    assert projected.shape == (3, 5) and torch.equal(projected[:, 3:], torch.zeros(3, 2)) and explained == pytest.approx(1.0)
    long_text = " ".join(["good movie and great plot"] * 20)  # 100 words, past the teacher's 64 positions
    model, _ = build_student(StudentSpec(kind="static", embeddings="contextual", embedding_dim=8),
                             Task("classification", ["neg", "pos"]), tiny_bert_dir, train_texts=[long_text, "bad film"])
    assert model.config.embedding_dim == 8
    cfg = DistillRunConfig.model_validate({"teacher": "t", "data": {"name": "d"}, "out": "o", "student": {"kind": "BiLSTM"}})
    assert cfg.train.learning_rate == 1e-3
    enc = tmp_path / "enc"
    BertModel(BertConfig(vocab_size=len(tiny_tokenizer), max_position_embeddings=64, **PRESETS["bert-tiny"])).save_pretrained(enc)
    tiny_tokenizer.save_pretrained(enc)
    (enc / ENCODER_FILE).write_text("{}")
    task = Task("classification", ["neg", "pos"])
    model, _ = build_student(StudentSpec(kind="bert-tiny", dropout=0.0), task, tiny_bert_dir, init_from=enc)
    assert model.config.hidden_dropout_prob == 0.0 and model.config.attention_probs_dropout_prob == 0.0
    with pytest.raises(KdexamError, match="trim_vocab does not apply to a student initialised from an encoder"):
        build_student(StudentSpec(kind="bert-tiny", trim_vocab=True), task, tiny_bert_dir, init_from=enc)


def test_a_bilstm_with_packed_weights_saves_and_loads(teacher_dir, tmp_path):
    """On a GPU cuDNN packs an LSTM's weights into one buffer (views of it), which safetensors refused
    to save ("None is covering the entire storage", seen on an H200); packed here by hand."""
    task, examples = TASKS["cls"], EXAMPLES["cls"]
    spec = StudentSpec(kind="bilstm", **SMALL.get("bilstm", {}))
    torch.manual_seed(0)
    model, tok = build_student(spec, task, teacher_dir)
    model.eval()
    lstm = next(m for m in model.modules() if isinstance(m, torch.nn.LSTM))
    weights = [getattr(lstm, n) for n in lstm._flat_weights_names]
    flat = torch.cat([w.detach().reshape(-1) for w in weights])
    offset = 0
    with torch.no_grad():
        for w in weights:
            w.data = flat[offset:offset + w.numel()].view_as(w)
            offset += w.numel()
    assert weights[0].untyped_storage().data_ptr() == weights[-1].untyped_storage().data_ptr()
    batch = batch_of(tok, task, examples)
    full = logits_of(model, batch)
    save_student(model, tok, spec, task, tmp_path / "student")
    assert weights[1].untyped_storage().data_ptr() == flat.untyped_storage().data_ptr(), "the live model is left as it was"
    loaded, tok2, _, _ = load_student(tmp_path / "student")
    assert torch.equal(logits_of(loaded, batch_of(tok2, task, examples)), full)
