"""Fine-tuning a tiny random BERT end to end, for each task kind."""

import json
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from conftest import tagging_sentences, write_conll, write_jsonl
from kdexam import api

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
