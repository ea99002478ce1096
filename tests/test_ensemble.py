"""Several teachers with different tokenizers (issue 12): the combination rules on hand-computed
outputs, word-level alignment across a WordPiece and a word-level tokenizer (with truncation),
members' caches kept apart, label-set checks, and ensemble distillation end to end."""

import json
import os
import math

import numpy as np
import pytest
import torch
from scipy.special import softmax

from conftest import FILLER, NEG_WORDS, POS_WORDS, tagging_sentences, write_conll, write_sentiment_splits
from kdexam import api
from kdexam.data.readers import Example
from kdexam.errors import KdexamError
from kdexam.teachers.ensemble import combine, label_order, member_names
from kdexam.tasks import Task

pytestmark = pytest.mark.usefixtures("one_thread")
LN3 = math.log(3.0)


# ---- the combination rules on hand-computed outputs ---------------------------------------------------


def test_mean_of_probabilities():
    # p1 = [1/4, 3/4], p2 = [3/4, 1/4] -> mean [1/2, 1/2]; the target's logits are log p̄
    out = combine([np.array([0.0, LN3]), np.array([LN3, 0.0])], "classification", "probs")
    np.testing.assert_allclose(out, np.log([0.5, 0.5]), rtol=1e-6)
    np.testing.assert_allclose(softmax(out), [0.5, 0.5], rtol=1e-6)


def test_mean_of_logits():
    out = combine([np.array([0.0, LN3]), np.array([2.0, -1.0])], "classification", "logits")
    np.testing.assert_allclose(out, [1.0, (LN3 - 1.0) / 2], rtol=1e-6)


def test_fixed_weights_are_normalised():
    # weights 3 : 1 -> 0.75 p1 + 0.25 p2 = [0.75/4 + 0.25*3/4, 0.75*3/4 + 0.25/4] = [0.375, 0.625]
    out = combine([np.array([0.0, LN3]), np.array([LN3, 0.0])], "classification", "probs", weights=[3.0, 1.0])
    np.testing.assert_allclose(softmax(out), [0.375, 0.625], rtol=1e-6)
    out = combine([np.array([0.0, LN3]), np.array([2.0, -1.0])], "classification", "logits", weights=[3.0, 1.0])
    np.testing.assert_allclose(out, [0.5, 0.75 * LN3 - 0.25], rtol=1e-6)


def test_confidence_weighting_per_example():
    # p1 = [1/4, 3/4] (confidence 0.75), p2 = [0.6, 0.4] (confidence 0.6)
    z1, z2 = np.array([0.0, LN3]), np.log([0.6, 0.4])
    w1, w2 = 0.75 / 1.35, 0.6 / 1.35
    out = combine([z1, z2], "classification", "probs", confidence=True)
    np.testing.assert_allclose(softmax(out), w1 * np.array([0.25, 0.75]) + w2 * np.array([0.6, 0.4]), rtol=1e-6)
    # per word for tagging: each row its own weights
    rows = combine([np.stack([z1, z2]), np.stack([z2, z1])], "token-classification", "probs", confidence=True)
    np.testing.assert_allclose(softmax(rows[0]), softmax(out), rtol=1e-6)
    np.testing.assert_allclose(softmax(rows[1]), w2 * np.array([0.6, 0.4]) + w1 * np.array([0.25, 0.75]), rtol=1e-6)


def test_regression_weighted_mean():
    assert combine([np.array([1.0]), np.array([3.0])], "regression", weights=[1.0, 3.0]) == pytest.approx([2.5])
    assert combine([np.array([1.0]), np.array([3.0])], "regression", "logits") == pytest.approx([2.0])


def test_a_word_one_member_truncated_takes_the_others_vote():
    z1 = np.array([[0.0, LN3], [0.0, 0.0]])  # member 1 cut the second word (stored as zeros)
    z2 = np.array([[LN3, 0.0], [1.0, -1.0]])
    out = combine([z1, z2], "token-classification", "probs")
    np.testing.assert_allclose(softmax(out[0]), [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(softmax(out[1]), softmax([1.0, -1.0]), rtol=1e-6)
    gone = combine([np.zeros((1, 2)), np.zeros((1, 2))], "token-classification", "probs")
    np.testing.assert_array_equal(gone, np.zeros((1, 2)))  # every member cut it: uniform, as for one teacher


def test_weight_zero_switches_a_members_term_off_as_with_one_teacher():
    from kdexam.errors import KdexamError
    from kdexam.objectives import ModelShape
    from kdexam.objectives.members import build_ensemble_objectives

    shapes, student = {"a": ModelShape(2, 32, 2), "b": ModelShape(2, 24, 2)}, ModelShape(2, 32, 2)
    off = build_ensemble_objectives([{"name": "kl", "weight": 1}, {"name": "hidden_mse", "teacher": "a", "weight": 0}],
                                    [{"teacher_layer": 2, "student_layer": 2, "teacher": "b", "weight": 0}],
                                    "classification", shapes, student)
    assert off.names == ["kl"]
    with pytest.raises(KdexamError, match="All objective weights are 0"):
        build_ensemble_objectives([{"name": "kl", "weight": 0}, {"name": "hidden_mse", "teacher": "a", "weight": 0}], [],
                                  "classification", shapes, student)


def test_member_names_and_label_order():
    assert member_names(["runs/a", "runs/b"]) == ["a", "b"]
    assert member_names(["x/teacher", "y/teacher"]) == ["x/teacher", "y/teacher"]
    first = Task("classification", ["neg", "pos"], False, "accuracy")
    np.testing.assert_array_equal(label_order(first, Task("classification", ["pos", "neg"], False, "accuracy"), "a", "b"), [1, 0])
    assert label_order(first, first, "a", "b") is None
    with pytest.raises(KdexamError, match="'a' and 'b' have different label sets"):
        label_order(first, Task("classification", ["neg", "pos", "meh"], False, "accuracy"), "a", "b")
    with pytest.raises(KdexamError, match="'a' .* and 'b' .* different tasks"):
        label_order(first, Task("regression", None, False, "pearson"), "a", "b")


# ---- two tiny teachers with different tokenizers ---------------------------------------------------------

WORDS = sorted(set(POS_WORDS + NEG_WORDS + FILLER + ["movie", "plot", "film", "story", "actors", "the", "a"]))


def wordlevel_tokenizer():
    """A word-level tokenizer with RoBERTa-style specials: it never splits a word (unknown words are
    one <unk>), where the WordPiece tokenizer of conftest spells unknown words in letters."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"] + WORDS
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", 2), ("</s>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                   model_input_names=["input_ids", "attention_mask"])


@pytest.fixture(scope="module")
def wordlevel_bert_dir(tmp_path_factory):
    from transformers import BertConfig, BertModel

    tok = wordlevel_tokenizer()
    torch.manual_seed(1)
    d = tmp_path_factory.mktemp("wordlevel-bert")
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=48, max_position_embeddings=64, type_vocab_size=1)).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, tiny_bert_dir, wordlevel_bert_dir):
    """Two teachers fine-tuned on the same synthetic sentiment data: a WordPiece BERT and a word-level one."""
    root = tmp_path_factory.mktemp("ensemble")
    data = write_sentiment_splits(root / "data")
    for name, model in (("wordpiece", tiny_bert_dir), ("wordlevel", wordlevel_bert_dir)):
        api.finetune_teacher(data=data, model=model, out=root / name, epochs=10, learning_rate=1e-3, batch_size=16, patience=10)
    return root


@pytest.fixture(scope="module")
def tagging_teachers(tmp_path_factory, tiny_bert_dir, wordlevel_bert_dir):
    root = tmp_path_factory.mktemp("ensemble-tags")
    (root / "data").mkdir()
    sents = tagging_sentences(120, seed=5)
    write_conll(root / "data" / "train.conll", sents[:80])
    write_conll(root / "data" / "validation.conll", sents[80:100])
    write_conll(root / "data" / "test.conll", sents[100:])
    for name, model in (("wordpiece", tiny_bert_dir), ("wordlevel", wordlevel_bert_dir)):
        api.finetune_teacher(data=root / "data", model=model, out=root / name, epochs=4, learning_rate=1e-3, batch_size=16)
    return root


def _word_logits(run, words: list[str], max_length: int) -> np.ndarray:
    """A member's logits at each word's first subword, straight from HF (zeros for words cut off)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run)
    model = AutoModelForTokenClassification.from_pretrained(run).eval()
    enc = tok(words, is_split_into_words=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0].numpy()
    out, seen = np.zeros((len(words), logits.shape[-1]), dtype=np.float32), set()
    for pos, w in enumerate(enc.word_ids()):
        if w is not None and w not in seen:
            seen.add(w)
            out[w] = logits[pos]
    return out


def test_word_level_alignment_across_tokenizers_with_truncation(tagging_teachers):
    from kdexam.config import EnsembleConfig
    from kdexam.teachers.ensemble import Ensemble

    ens = Ensemble([str(tagging_teachers / "wordpiece"), str(tagging_teachers / "wordlevel")], EnsembleConfig(), max_length=9)
    wp, wl = ens.members["wordpiece"].tokenizer, ens.members["wordlevel"].tokenizer
    words = ["the", "superbly", "movie", "xyzzy", "story", "was", "good", "plot", "a"]
    # WordPiece spells unknown words in letters ("superbly", "xyzzy"); the word-level tokenizer keeps one token a word
    assert len(wp(words, is_split_into_words=True)["input_ids"]) > len(wl(words, is_split_into_words=True)["input_ids"])
    example = Example(text=words, label=["DET"] * len(words))
    out = ens.outputs([example], ["logits", "logits@wordpiece", "logits@wordlevel"], cache=False)
    z_wp, z_wl = out.example(0, "logits@wordpiece"), out.example(0, "logits@wordlevel")
    assert z_wp.shape == z_wl.shape == (len(words), len(ens.task.labels))  # one row per word, whatever the tokenizer
    for member, z in (("wordpiece", z_wp), ("wordlevel", z_wl)):
        direct = _word_logits(tagging_teachers / member, words, 9)
        order = ens.orders[member]
        np.testing.assert_allclose(z, direct if order is None else direct[:, order], atol=1e-5)
    cut_wp = ~np.any(z_wp != 0, axis=-1)
    cut_wl = ~np.any(z_wl != 0, axis=-1)
    assert cut_wp.sum() > cut_wl.sum() >= 1, "max_length 9 truncates the WordPiece member earlier"
    p = softmax(out.example(0, "logits"), -1)
    for w in range(len(words)):
        if cut_wp[w] and not cut_wl[w]:  # only the word-level member saw this word: its vote alone
            np.testing.assert_allclose(p[w], softmax(z_wl[w]), rtol=1e-5)
        elif not cut_wp[w]:  # both saw it: the mean of the two distributions
            np.testing.assert_allclose(p[w], (softmax(z_wp[w]) + softmax(z_wl[w])) / 2, rtol=1e-5)


def test_members_have_their_own_caches(teachers, tmp_path):
    r = api.distill(teacher=[teachers / "wordpiece", teachers / "wordlevel"], data=teachers / "data", student="cnn",
                    out=tmp_path / "s", epochs=1, batch_size=16)
    paths = r["teacher_cache"]["path"]
    assert set(paths) == {"wordpiece", "wordlevel"} and paths["wordpiece"] != paths["wordlevel"]
    a, b = (np.load(f"{paths[m]}/logits.npy") for m in ("wordpiece", "wordlevel"))
    assert a.shape == b.shape and not np.allclose(a, b)
    again = api.distill(teacher=[teachers / "wordpiece", teachers / "wordlevel"], data=teachers / "data", student="bilstm",
                        out=tmp_path / "t", epochs=1, batch_size=16)
    assert again["teacher_cache"]["hit"] is True and again["teacher_cache"]["teacher_forward_calls"] == 0


def test_ensemble_distillation_reports_each_member(teachers, tmp_path):
    r = api.distill(teacher=[teachers / "wordpiece", teachers / "wordlevel"], data=teachers / "data", student="bilstm",
                    out=tmp_path / "s", epochs=6, batch_size=16, weighting="validation")
    t = r["teacher"]
    assert t["name"] == "ensemble of wordpiece + wordlevel"
    members = t["ensemble"]["members"]
    assert [m["name"] for m in members] == ["wordpiece", "wordlevel"]
    own = {m: json.loads((teachers / m / "metrics.json").read_text()) for m in ("wordpiece", "wordlevel")}
    scores = [m["validation"] for m in members]
    assert [m["weight"] for m in members] == pytest.approx([s / sum(scores) for s in scores], abs=1e-6)
    for m in members:
        assert set(m["metrics"]) >= {"accuracy", "macro_f1"} and set(m["student_loyalty"]) == {"label", "probability"}
        assert m["params"] == own[m["name"]]["teacher"]["params"]
    assert t["params"] == sum(m["params"] for m in members)
    assert r["student"]["metrics"]["accuracy"] >= 0.8, (r["student"]["metrics"], members, t["metrics"])
    assert any("avram2022" in c for c in r["citations"])
    saved = __import__("yaml").safe_load((tmp_path / "s" / "config.yaml").read_text())
    assert saved["teachers"] == [str(teachers / "wordpiece"), str(teachers / "wordlevel")] and saved["teacher"] is None
    # kdexam evaluate rebuilds the ensemble (with the weights the run used) and reproduces the run's scores
    again = api.evaluate(tmp_path / "s")
    assert again["teacher"]["metrics"] == t["metrics"] and again["student"]["loyalty"] == pytest.approx(r["student"]["loyalty"])
    for m, n in zip(again["teacher"]["ensemble"]["members"], members):
        assert (m["name"], m["metrics"]) == (n["name"], n["metrics"])
        assert m["student_loyalty"] == pytest.approx(n["student_loyalty"])
    card = (tmp_path / "s" / "README.md").read_text()
    assert "wordpiece" in card and "wordlevel" in card


def test_loyalty_to_each_member_is_the_single_teacher_formula(teachers, tmp_path):
    """The student's loyalty to a member equals what compare() gives with that member's own logits."""
    from kdexam.evaluation.loyalty import classification_loyalty
    from kdexam.inference.predictor import load_student

    r = api.distill(teacher=[teachers / "wordpiece", teachers / "wordlevel"], data=teachers / "data", student="cnn",
                    out=tmp_path / "s", epochs=2, batch_size=16, combine="logits")
    test = [json.loads(line) for line in (teachers / "data" / "test.jsonl").read_text().splitlines()]
    student = load_student(tmp_path / "s")
    s_logits = np.stack(student.predict_logits([e["text"] for e in test]))
    for m in r["teacher"]["ensemble"]["members"]:
        t_logits = np.stack(api.load_student(teachers / m["name"]).predict_logits([e["text"] for e in test]))
        expect = classification_loyalty(t_logits, s_logits)
        assert m["student_loyalty"] == pytest.approx(expect, abs=1e-4)


def test_the_xtremedistil_recipe_reads_the_primary_member(teachers, tmp_path):
    """The recipe's representation stage has no place to name a member: it reads student.teacher (it
    used to fail with 'name the member it reads')."""
    r = api.distill(teacher=[teachers / "wordpiece", teachers / "wordlevel"], data=teachers / "data", student="cnn",
                    embedding_dim=8, recipe="xtremedistil", set=["student.teacher=wordlevel"], out=tmp_path / "s", epochs=1,
                    batch_size=16)
    assert [s["stage"] for s in r["stages"]] == ["representation", "logits-head", "logits-top2", "logits", "gold"]
    assert r["stages"][0]["objectives"] == ["representation@wordlevel"]


def test_a_teacher_layers_student_and_a_match_read_one_named_member(teachers, tmp_path):
    r = api.distill(teacher=[teachers / "wordpiece", teachers / "wordlevel"], data=teachers / "data",
                    student="teacher-layers:1", set=["student.teacher=wordlevel"], out=tmp_path / "s", epochs=1, batch_size=16,
                    objective=["kl:weight=1", "gold:weight=1"], match=["teacher=wordlevel,teacher_layer=2,student_layer=1"])
    assert "match:hidden_mse@wordlevel" in r["stages"][0]["objectives"]
    tok = json.loads((tmp_path / "s" / "tokenizer.json").read_text())
    assert tok["model"]["type"] == "WordLevel"  # the student took the named member's tokenizer and layers
    with pytest.raises(KdexamError, match="several teachers; name the one it reads with teacher=NAME"):
        api.distill(teacher=[teachers / "wordpiece", teachers / "wordlevel"], data=teachers / "data", student="teacher-layers:1",
                    out=tmp_path / "t", epochs=1, match=["teacher_layer=2,student_layer=1"])
    with pytest.raises(KdexamError, match="reads the teacher's hidden.2, but there are several teachers"):
        api.distill(teacher=[teachers / "wordpiece", teachers / "wordlevel"], data=teachers / "data", student="teacher-layers:1",
                    out=tmp_path / "u", epochs=1, objective=["hidden_mse:layers=[[2,1]]"])
    with pytest.raises(KdexamError, match="student.teacher 'nobody' is not a member"):
        api.distill(teacher=[teachers / "wordpiece", teachers / "wordlevel"], data=teachers / "data", student="cnn",
                    set=["student.teacher=nobody"], out=tmp_path / "v", epochs=1)


def test_members_that_disagree_on_labels_are_refused(teachers, tmp_path, tiny_bert_dir):
    other = write_sentiment_splits(tmp_path / "data3")
    rows = [dict(json.loads(line), label="meh") if i % 3 == 0 else json.loads(line)
            for i, line in enumerate((other / "train.jsonl").read_text().splitlines())]
    (other / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    api.finetune_teacher(data=other, model=tiny_bert_dir, out=tmp_path / "three", epochs=1)
    with pytest.raises(KdexamError, match=r"Teachers '.*wordpiece' and '.*three' have different label sets"):
        api.distill(teacher=[teachers / "wordpiece", tmp_path / "three"], data=teachers / "data", student="cnn",
                    out=tmp_path / "s", epochs=1)


def test_cli_repeated_teacher_and_bad_ensemble_flags(teachers, tmp_path, capsys):
    from test_cli import one_sentence_error, run_cli

    two = ["--teacher", teachers / "wordpiece", "--teacher", teachers / "wordlevel", "--data", teachers / "data"]
    code, _, err = run_cli(["distill", *two, "--student", "cnn", "--out", tmp_path / "s", "--epochs", "1",
                            "--weighting", "fixed", "--teacher-weights", "0.7,0.3"], capsys)
    assert code == 0, err
    members = json.loads((tmp_path / "s" / "metrics.json").read_text())["teacher"]["ensemble"]["members"]
    assert [m["weight"] for m in members] == pytest.approx([0.7, 0.3])
    code, _, err = run_cli(["distill", *two, "--out", tmp_path / "t", "--teacher-weights", "1,2,3", "--weighting", "fixed"], capsys)
    assert code == 2 and "ensemble.weights has 3 weights for 2 teacher(s)" in one_sentence_error(err)
    code, _, err = run_cli(["distill", *two, "--out", tmp_path / "u", "--weighting", "confident"], capsys)
    assert code == 2 and "ensemble.weighting" in one_sentence_error(err)


def test_tagging_students_learn_from_an_ensemble_of_tokenizers(tagging_teachers, tmp_path):
    r = api.distill(teacher=[tagging_teachers / "wordpiece", tagging_teachers / "wordlevel"], data=tagging_teachers / "data",
                    student="cnn", out=tmp_path / "s", epochs=3, batch_size=16, weighting="confidence")
    assert r["task"] == "token-classification" and "weight" not in r["teacher"]["ensemble"]["members"][0]
    for m in r["teacher"]["ensemble"]["members"]:
        assert set(m["student_loyalty"]) == {"label", "probability"} and "accuracy" in m["metrics"]


def test_confidence_weighting_is_refused_for_regression(tmp_path):
    from kdexam.config import EnsembleConfig
    from kdexam.teachers.ensemble import Ensemble
    from run_factory import make_teacher_run

    a, b = make_teacher_run(tmp_path / "a", "reg"), make_teacher_run(tmp_path / "b", "reg")
    with pytest.raises(KdexamError, match="regression teacher has not"):
        Ensemble([str(a), str(b)], EnsembleConfig(weighting="confidence"))


def test_online_ensemble_outputs_equal_the_cached_ones(teachers):
    from kdexam.config import DataConfig, EnsembleConfig
    from kdexam.data.splits import load_data
    from kdexam.teachers.ensemble import Ensemble

    examples = load_data(DataConfig(name=str(teachers / "data"))).train[:40]
    ens = Ensemble([str(teachers / "wordpiece"), str(teachers / "wordlevel")], EnsembleConfig(weighting="confidence"))
    names = ["logits", "logits@wordlevel", "hidden.1@wordpiece"]
    cached = ens.outputs(examples, names).gather(list(range(40)), names)
    online = ens.outputs(examples, names, cache=False).gather(list(range(40)), names)
    for n in names:
        for a, b in zip(cached[n], online[n]):
            np.testing.assert_allclose(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32), atol=2e-3)
    assert cached["hidden.1@wordpiece"][0].shape[-1] == 32  # the WordPiece member's width, not the other's (24)
    with pytest.raises(KdexamError, match="must name the member"):
        ens.outputs(examples, ["hidden.1"])


@pytest.mark.parametrize("kind,member", [("static", None), ("bert-tiny", "wordlevel")])
def test_every_student_kind_learns_from_the_ensemble(teachers, tmp_path, kind, member):
    extra = {"set": [f"student.teacher={member}"]} if member else {}
    r = api.distill(teacher=[teachers / "wordpiece", teachers / "wordlevel"], data=teachers / "data", student=kind,
                    out=tmp_path / "s", epochs=1, batch_size=16, **extra)
    assert r["student"]["name"] == kind and len(r["teacher"]["ensemble"]["members"]) == 2


def test_regression_ensemble_end_to_end(tmp_path):
    from run_factory import make_teacher_run

    a, b = make_teacher_run(tmp_path / "a", "reg"), make_teacher_run(tmp_path / "b", "reg")
    r = api.distill(teacher=[a, b], data=tmp_path / "a" / "data-reg", student="cnn", out=tmp_path / "s", epochs=1,
                    teacher_weights="3,1", set=["student.num_filters=6", "student.embedding_dim=16"])
    members = r["teacher"]["ensemble"]["members"]
    assert [m["weight"] for m in members] == pytest.approx([0.75, 0.25])
    assert set(members[0]["student_loyalty"]) == {"regression", "pearson"}


def test_settings_a_regression_teacher_cannot_use_are_refused_before_its_work(tmp_path, monkeypatch):
    """An audit (2026-12-04): --combine logits with regression teachers was accepted and ignored;
    --min-confidence with a regression teacher was refused only after the teacher had run over the
    whole transfer set; the same teacher given as a relative and an absolute path was one member."""
    from kdexam.teachers.teacher import Teacher
    from run_factory import make_teacher_run

    a, b = make_teacher_run(tmp_path / "a", "reg"), make_teacher_run(tmp_path / "b", "reg")
    (tmp_path / "u.txt").write_text("a fine film\nquite dull\n", encoding="utf-8")
    monkeypatch.setattr(Teacher, "outputs_of_segments", lambda *a, **k: pytest.fail("the teacher ran"))
    common = dict(data=tmp_path / "a" / "data-reg", student="cnn", epochs=1)
    with pytest.raises(KdexamError, match="--combine logits averages class logits; regression teachers"):
        api.distill(teacher=[a, b], combine="logits", out=tmp_path / "s", **common)
    with pytest.raises(KdexamError, match="--min-confidence filters by the teacher's class probabilities"):
        api.distill(teacher=a, unlabelled=str(tmp_path / "u.txt"), min_confidence=0.9, out=tmp_path / "t", **common)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KdexamError, match="teachers lists the same directory twice"):
        api.distill(teacher=[os.path.relpath(a, tmp_path), str(a.resolve())], out=tmp_path / "u", **common)
    assert not any((tmp_path / n).exists() for n in "stu")


def test_validation_weights_online_and_with_a_member_below_zero(teachers, monkeypatch):
    """``--online-teacher --weighting validation`` ended in a KeyError (the members' validation
    logits were read from a cache that online outputs do not fill); and a member scoring below 0
    (a negative Pearson r) made the weights 'undefined' although the other scored above 0."""
    from kdexam.config import DataConfig, EnsembleConfig
    from kdexam.data.splits import load_data
    from kdexam.teachers.ensemble import Ensemble

    validation = load_data(DataConfig(name=str(teachers / "data"))).validation[:30]
    ens = Ensemble([str(teachers / "wordpiece"), str(teachers / "wordlevel")], EnsembleConfig(weighting="validation"))
    cached, cached_weights = dict(ens.weigh_by_validation(validation)), dict(ens.weights)
    assert ens.weigh_by_validation(validation, cache=False) == cached and ens.weights == pytest.approx(cached_weights)
    scores = iter([-0.137, 0.137, -0.3, -0.4])
    monkeypatch.setattr(Task, "metrics", lambda self, gold, predicted: {self.primary_metric: next(scores)})
    ens.weigh_by_validation(validation)
    assert ens.weights == {"wordpiece": 0.0, "wordlevel": 1.0}
    with pytest.raises(KdexamError, match="No member scores above 0 accuracy"):
        ens.weigh_by_validation(validation)
