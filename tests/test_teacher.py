"""Fine-tuning a tiny random BERT end to end, for each task kind."""

import json
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from conftest import tagging_sentences, write_conll, write_jsonl
from kdexam import api
from kdexam.errors import KdexamError

FAST = dict(epochs=12, learning_rate=1e-3, batch_size=16, patience=12)


def test_classification_beats_chance(tiny_bert_dir, sentiment_dir, tmp_path):
    out = tmp_path / "run"
    r = api.finetune_teacher(data=sentiment_dir, model=tiny_bert_dir, out=out, **FAST)
    acc = r["teacher"]["metrics"]["accuracy"]
    assert acc >= 0.8, f"a tiny BERT should learn the synthetic sentiment task, got {acc}"
    assert r["split"] == "test" and r["primary_metric"] == "accuracy" and r["task"] == "classification"
    # the run directory contract
    for f in ("config.yaml", "metrics.json", "task.json", "model.safetensors", "config.json", "tokenizer.json", "train_log.jsonl"):
        assert (out / f).is_file(), f
    assert json.loads((out / "metrics.json").read_text())["teacher"]["metrics"]["accuracy"] == acc
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["epochs"] == 12
    assert any(k.startswith("classifier") for k in load_file(out / "model.safetensors"))
    assert r["teacher"]["params"] > 0 and r["teacher"]["train_seconds"] > 0


def test_seeded_runs_are_identical(tiny_bert_dir, sentiment_dir, tmp_path):
    a = api.finetune_teacher(data=sentiment_dir, model=tiny_bert_dir, out=tmp_path / "a", epochs=2, max_train=64)
    b = api.finetune_teacher(data=sentiment_dir, model=tiny_bert_dir, out=tmp_path / "b", epochs=2, max_train=64)
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert a["teacher"]["metrics"] == b["teacher"]["metrics"]


def test_token_classification(tiny_bert_dir, tmp_path):
    d = tmp_path / "pos"
    d.mkdir()
    write_conll(d / "train.conll", tagging_sentences(200, seed=1))
    write_conll(d / "test.conll", tagging_sentences(40, seed=2))
    r = api.finetune_teacher(data=d, model=tiny_bert_dir, out=tmp_path / "run", **FAST)
    assert r["task"] == "token-classification"
    assert r["teacher"]["metrics"]["accuracy"] >= 0.6, r["teacher"]["metrics"]  # chance is ~1/3


def test_regression(tiny_bert_dir, tmp_path):
    from conftest import sentiment_examples

    rows = [{"text": r["text"], "label": (1.0 if r["label"] == "pos" else -1.0) + 0.01 * i % 0.1} for i, r in enumerate(sentiment_examples(200))]
    p = write_jsonl(tmp_path / "train.jsonl", rows)
    r = api.finetune_teacher(data=p, model=tiny_bert_dir, out=tmp_path / "run", **FAST)
    assert r["task"] == "regression" and r["split"] == "validation"
    assert r["teacher"]["metrics"]["pearson"] >= 0.6, r["teacher"]["metrics"]


def test_text_pairs(tiny_bert_dir, tmp_path):
    from conftest import sentiment_examples

    ex = sentiment_examples(240)
    pairs = [(a, ex[(i + 2) % len(ex)] if i % 4 < 2 else ex[(i + 1) % len(ex)]) for i, a in enumerate(ex)]
    rows = [{"text": a["text"], "text_pair": b["text"], "label": int(a["label"] == b["label"])} for a, b in pairs]
    p = write_jsonl(tmp_path / "train.jsonl", rows)
    r = api.finetune_teacher(data=p, model=tiny_bert_dir, out=tmp_path / "run", epochs=2, max_train=80)
    assert r["task"] == "classification"
    assert json.loads((tmp_path / "run" / "task.json").read_text())["text_pair"] is True


def test_unknown_api_argument():
    with pytest.raises(TypeError, match="epoch"):
        api.finetune_teacher(epoch=3)


def test_the_cache_key_follows_every_weight_format_and_ignores_run_records(tmp_path):
    """Retrained weights change the teacher's key whatever their format; its metrics and logs do not."""
    from kdexam.teachers.cache import model_fingerprint

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"old weights")
    key = model_fingerprint(tmp_path)
    (tmp_path / "metrics.json").write_text('{"accuracy": 1}')
    (tmp_path / "train_log.jsonl").write_text("{}\n")
    assert model_fingerprint(tmp_path) == key
    (tmp_path / "pytorch_model.bin").write_bytes(b"new weights")
    assert model_fingerprint(tmp_path) != key


def test_a_hub_teachers_key_is_the_commit_of_its_local_copy(tmp_path, monkeypatch):
    """A hub id is keyed ``id@commit`` through the hub cache's refs/main, so a model updated on the hub
    and downloaded again gets a new key; an id with no local copy keeps its bare name."""
    import huggingface_hub.constants

    from kdexam.teachers.cache import hub_model_key
    from kdexam.teachers.teacher import Teacher

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--org--tiny"

    def download(commit, files=("config.json",)):
        (repo / "snapshots" / commit).mkdir(parents=True)
        for name in files:
            (repo / "snapshots" / commit / name).write_text("{}")
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)

    def stub():  # the key alone: no tokenizer or weights to load from a hub here
        teacher = object.__new__(Teacher)
        teacher.name, teacher.dir, teacher._key = "org/tiny", Path("org/tiny"), None
        return teacher

    assert hub_model_key("org/tiny") == "org/tiny"
    loads = []
    monkeypatch.setattr(Teacher, "model", property(lambda self: loads.append(1) or download("a" * 40)))
    assert stub().key == "org/tiny@" + "a" * 40 and loads == [1]  # no local copy: loaded (downloaded) first
    assert stub().key == "org/tiny@" + "a" * 40 and loads == [1]  # a local copy: not loaded for the key
    download("b" * 40, files=("tokenizer.json",))  # a new revision, its tokenizer fetched first
    assert hub_model_key("org/tiny") == "org/tiny@" + "b" * 40
    assert hub_model_key("not a repo id!") == "not a repo id!"


def test_tokenizers_pad_on_the_right_whatever_the_models_default(tmp_path):
    from conftest import build_tokenizer
    from kdexam.teachers.loader import load_tokenizer

    tok = build_tokenizer()
    tok.padding_side = "left"
    tok.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.padding_side == "right"
    batch = loaded(["a fine film", "dull"], padding=True)
    assert batch["attention_mask"][1][0] == 1 and batch["attention_mask"][1][-1] == 0


# --- what a review found in the teacher side (2026-12-03) -------------------------------------------


def test_a_model_folder_without_tokenizer_files_is_refused(tiny_bert_dir, sentiment_dir, tmp_path):
    """transformers builds an empty tokenizer (special tokens only) from such a folder: every word
    was [UNK] and the teacher trained to chance without a word."""
    import shutil

    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert_dir / f, bare / f)
    with pytest.raises(KdexamError, match="has no tokenizer vocabulary"):
        api.finetune_teacher(data=sentiment_dir, model=bare, out=tmp_path / "t", epochs=1)


def test_a_model_whose_tokenizer_has_no_pad_token_is_refused(tiny_bert_dir, sentiment_dir, tmp_path):
    """An audit (2026-12-04, late): a decoder-only model (GPT-2's tokenizer has no pad token) loaded,
    then its first batch was a traceback ("Cannot handle batch sizes > 1 if no padding token")."""
    import shutil

    no_pad = shutil.copytree(tiny_bert_dir, tmp_path / "no-pad")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        f = no_pad / name
        if f.is_file():
            data = json.loads(f.read_text(encoding="utf-8"))
            if name == "tokenizer.json":
                data["padding"] = None
            else:
                data.pop("pad_token", None)
            f.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(KdexamError, match="has no padding token, as decoder-only models"):
        api.finetune_teacher(data=sentiment_dir, model=no_pad, out=tmp_path / "t", epochs=1)
    assert not (tmp_path / "t").exists()


def test_teacher_resume_with_another_config_is_refused_and_a_kill_while_scoring_costs_no_training(
        tiny_bert_dir, sentiment_dir, tmp_path, monkeypatch):
    import kdexam.teachers.finetune as finetune

    out = tmp_path / "t"
    real_evaluate, real_fit = finetune.evaluate, finetune.fit
    calls = {"evaluate": 0, "fit": 0}

    def crash_on_the_test_split(model, features, examples, *a, **k):
        calls["evaluate"] += 1
        if len(examples) == 60:  # sentiment_dir's test split: training is over
            raise RuntimeError("killed while scoring")
        return real_evaluate(model, features, examples, *a, **k)

    def counted_fit(*a, **k):
        calls["fit"] += 1
        return real_fit(*a, **k)

    monkeypatch.setattr(finetune, "evaluate", crash_on_the_test_split)
    monkeypatch.setattr(finetune, "fit", counted_fit)
    with pytest.raises(RuntimeError, match="killed while scoring"):
        api.finetune_teacher(data=sentiment_dir, model=tiny_bert_dir, out=out, epochs=1, batch_size=16)
    assert (out / "config.yaml").is_file() and (out / "stage1-done").is_dir() and not (out / "metrics.json").exists()
    with pytest.raises(KdexamError, match="started with another config"):  # config.yaml is written before training
        api.finetune_teacher(data=sentiment_dir, model=tiny_bert_dir, out=out, epochs=1, batch_size=16, learning_rate=1e-3,
                             resume=True)
    monkeypatch.setattr(finetune, "evaluate", real_evaluate)
    r = api.finetune_teacher(data=sentiment_dir, model=tiny_bert_dir, out=out, epochs=1, batch_size=16, resume=True)
    assert calls["fit"] == 1, "the resumed run scored the trained weights without training again"
    assert r["teacher"]["metrics"]["accuracy"] > 0 and not (out / "stage1-done").exists()


def test_a_teachers_inputs_are_cut_at_its_positions(tmp_path):
    """The tiny teacher has 128 positions: a max_length of 256 would crash its forward on a long text."""
    from kdexam.data.readers import Example
    from kdexam.teachers.teacher import Teacher
    from run_factory import make_teacher_run

    teacher = Teacher(make_teacher_run(tmp_path, "cls"), max_length=256)
    assert teacher.max_length == 128
    out = teacher.outputs([Example(" ".join(["good movie"] * 100))], ["logits"], cache=False)
    assert len(out.gather([0], ["logits"])["logits"][0]) == len(teacher.task.labels)


def test_evaluate_reads_a_teachers_logits_in_the_students_label_order(tmp_path):
    """A teacher with the same function but its labels in another order gives the same loyalty (it
    read the columns in the student's order: loyalty 1.0 became 0.0); another label set is refused."""
    import shutil

    from safetensors.torch import save_file

    from run_factory import make_student_run, make_teacher_run

    teacher = make_teacher_run(tmp_path, "cls")
    student = make_student_run(teacher, "bilstm")
    flipped = tmp_path / "teacher-flipped"
    shutil.copytree(teacher, flipped)
    w = load_file(flipped / "model.safetensors")
    w["classifier.weight"], w["classifier.bias"] = w["classifier.weight"].flip(0).contiguous(), w["classifier.bias"].flip(0).contiguous()
    save_file(w, flipped / "model.safetensors", metadata={"format": "pt"})
    task = json.loads((flipped / "task.json").read_text())
    labels = task["labels"][::-1]
    (flipped / "task.json").write_text(json.dumps({**task, "labels": labels}))
    config = json.loads((flipped / "config.json").read_text())
    config.update(id2label={str(i): x for i, x in enumerate(labels)}, label2id={x: i for i, x in enumerate(labels)})
    (flipped / "config.json").write_text(json.dumps(config))
    a = api.evaluate(student, split="validation", teacher=str(teacher))["student"]["loyalty"]
    b = api.evaluate(student, split="validation", teacher=str(flipped))["student"]["loyalty"]
    assert a["label"] == pytest.approx(b["label"]) and a["probability"] == pytest.approx(b["probability"], abs=1e-5)
    (flipped / "task.json").write_text(json.dumps({**task, "labels": [*labels[:-1], "other"]}))
    with pytest.raises(KdexamError, match="pass the student's own teacher"):
        api.evaluate(student, split="validation", teacher=str(flipped))


@pytest.mark.parametrize("kind", ["classification", "token-classification"])
def test_a_teachers_scored_logits_are_in_the_cache_for_its_students(kind, tiny_bert_dir, sentiment_dir, tmp_path):
    """The teacher run computed its logits on the split it is scored on, then every student run ran
    the teacher on that split again (for loyalty and retention): ~4.5 s of a 60 s BiLSTM run."""
    import numpy as np

    from kdexam.config import DataConfig
    from kdexam.data.splits import load_data
    from kdexam.teachers.teacher import Teacher

    data = sentiment_dir
    if kind == "token-classification":
        data = tmp_path / "pos"
        data.mkdir()
        write_conll(data / "train.conll", tagging_sentences(60, seed=1))
        write_conll(data / "test.conll", tagging_sentences(20, seed=2))
    r = api.finetune_teacher(data=data, model=tiny_bert_dir, out=tmp_path / "run", epochs=1, max_train=64)
    examples = load_data(DataConfig(name=str(data))).split(r["split"])
    teacher = Teacher(tmp_path / "run")
    stored = teacher.outputs(list(reversed(examples)), ["logits"])  # (keyed by content, whatever the order)
    assert stored.from_cache and teacher.forward_calls == 0
    fresh = teacher.compute(list(reversed(examples)), ["logits"])["logits"]
    for i in range(len(examples)):
        assert np.allclose(stored.example(i), fresh[i], atol=1e-5)


def test_a_cache_that_cannot_take_the_scored_logits_never_fails_the_teacher_run(tiny_bert_dir, sentiment_dir, tmp_path, monkeypatch):
    import kdexam.teachers.finetune as finetune

    def refuse(*args, **kwargs):
        raise KdexamError("KDEXAM_HOME '/x' is a file")  # what kdexam_home() says of a home that is a file

    monkeypatch.setattr(finetune, "store_scored_logits", refuse)
    r = api.finetune_teacher(data=sentiment_dir, model=tiny_bert_dir, out=tmp_path / "run", epochs=1, max_train=32)
    assert (tmp_path / "run" / "metrics.json").is_file() and r["teacher"]["metrics"]["accuracy"] > 0
