"""Distillation end to end on a tiny teacher: run directory, teacher cache, stages, errors."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import tagging_sentences, write_conll
from kdexam import api
from kdexam.errors import KdexamError


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, tiny_bert_dir):
    """A tiny BERT fine-tuned on the synthetic sentiment data (module-scoped: made once)."""
    from conftest import write_sentiment_splits

    root = tmp_path_factory.mktemp("teacher")
    data = write_sentiment_splits(root / "data")
    api.finetune_teacher(data=data, model=tiny_bert_dir, out=root / "run", epochs=10, learning_rate=1e-3, batch_size=16, patience=10)
    return root


FAST = dict(epochs=8, batch_size=16)


def test_bilstm_run_directory_and_metrics(teacher_run, tmp_path):
    r = api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="bilstm", out=tmp_path / "s", **FAST)
    assert set(r) >= {"task", "dataset", "split", "primary_metric", "teacher", "student", "retention"}
    s, t = r["student"], r["teacher"]
    assert r["split"] == "test" and r["primary_metric"] == "accuracy"
    assert s["name"] == "bilstm" and s["params"] > 0 and t["params"] > 0
    assert r["retention"] == pytest.approx(s["metrics"]["accuracy"] / t["metrics"]["accuracy"])
    # agreement is at least P(both right) >= acc_S + acc_T - 1 (inclusion-exclusion over the same examples)
    assert s["loyalty"]["label"] >= s["metrics"]["accuracy"] + t["metrics"]["accuracy"] - 1 - 1e-9
    assert s["metrics"]["accuracy"] >= 0.8, s["metrics"]
    for f in ("config.yaml", "metrics.json", "model.safetensors", "student.json", "train_log.jsonl"):
        assert (tmp_path / "s" / f).is_file(), f
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["retention"] == r["retention"]
    assert not list(tmp_path.glob("s/checkpoint*")), "a finished run leaves no checkpoint behind"
    cited = " ".join(r["citations"])
    assert "hinton2015distilling" in cited and "xu-etal-2021-beyond" in cited  # the KL objective and the loyalty figures
    assert "polyak" not in cited and "lample" not in cited  # no weight average, no CRF


def test_a_failure_while_scoring_keeps_the_trained_student(teacher_run, tmp_path, monkeypatch):
    import kdexam.training.distill as distill_module

    def fail(*args, **kwargs):
        raise RuntimeError("scoring failed")

    monkeypatch.setattr(distill_module, "evaluate_run", fail)
    with pytest.raises(RuntimeError, match="scoring failed"):
        api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="cnn", out=tmp_path / "s", **FAST)
    assert (tmp_path / "s" / "model.safetensors").is_file() and (tmp_path / "s" / "student.json").is_file()
    assert not (tmp_path / "s" / "metrics.json").exists()
    preds = api.load_student(tmp_path / "s", backend="pytorch").predict(["a fine film"])
    assert preds[0]["label"] in ("neg", "pos")


def test_method_citations_follow_what_the_run_used():
    from types import SimpleNamespace

    from kdexam.config import DistillRunConfig
    from kdexam.tasks import Task
    from kdexam.training.distill import method_citations

    plain, averaged = DistillRunConfig(teacher="t", out="o"), DistillRunConfig(teacher="t", out="o", train={"ema_decay": 0.999})
    cls, reg, tag = Task("classification", ["a", "b"]), Task("regression"), Task("token-classification", ["A", "B"])
    keys = lambda cites: [c.split("{")[1].split(",")[0] for c in cites]  # noqa: E731
    assert keys(method_citations(plain, cls, SimpleNamespace(crf=None))) == ["xu-etal-2021-beyond"]
    assert keys(method_citations(plain, reg, SimpleNamespace())) == ["avram2022distilling"]
    assert keys(method_citations(averaged, tag, SimpleNamespace(crf=object()))) == [
        "xu-etal-2021-beyond", "lample2016neural", "polyak1992acceleration"]


def test_second_student_does_not_run_the_teacher(teacher_run, tmp_path):
    first = api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="cnn", out=tmp_path / "a",
                        max_train=100, **FAST)
    second = api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="bilstm", out=tmp_path / "b",
                         max_train=100, **FAST)
    assert first["teacher_cache"]["hit"] is False and first["teacher_cache"]["teacher_forward_calls"] > 0
    assert second["teacher_cache"]["hit"] is True
    assert second["teacher_cache"]["teacher_forward_calls"] == 0, "the cached run must not call the teacher"
    assert second["teacher"]["metrics"] == first["teacher"]["metrics"]


def test_changed_input_gives_a_new_key_and_corruption_is_rebuilt(teacher_run, tmp_path):
    a = api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="cnn", out=tmp_path / "a", max_train=60, epochs=1)
    b = api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="cnn", out=tmp_path / "b", max_train=61, epochs=1)
    assert a["teacher_cache"]["path"] != b["teacher_cache"]["path"] and not b["teacher_cache"]["hit"]
    logits = json.loads((tmp_path / "a" / "metrics.json").read_text())["teacher_cache"]["path"] + "/logits.npy"
    with open(logits, "r+b") as f:  # flip bytes in the middle of the file: same size, wrong checksum
        f.seek(-8, 2)
        f.write(b"\x00\x01\x02\x03\x04\x05\x06\x07")
    c = api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="cnn", out=tmp_path / "c", max_train=60, epochs=1)
    assert c["teacher_cache"]["hit"] is False and c["teacher_cache"]["teacher_forward_calls"] > 0
    assert c["teacher"]["metrics"] == a["teacher"]["metrics"]


def test_cached_logits_equal_the_teachers(teacher_run, tmp_path):
    from kdexam.config import DataConfig
    from kdexam.data.splits import load_data
    from kdexam.teachers.teacher import Teacher

    data = load_data(DataConfig(name=str(teacher_run / "data"), max_train=20))
    teacher = Teacher(teacher_run / "run", max_length=64)
    out = teacher.outputs(data.train, ["logits"])
    enc = teacher.tokenizer([e.text for e in data.train[:3]], padding=True, return_tensors="pt")
    with torch.inference_mode():
        direct = teacher.model(**enc).logits.numpy()
    np.testing.assert_allclose(np.stack([out.example(i) for i in range(3)]), direct, atol=1e-5)


def test_stages_freeze_then_unfreeze(teacher_run, tmp_path):
    cfg = {"teacher": str(teacher_run / "run"), "data": {"name": str(teacher_run / "data"), "max_train": 64},
           "student": {"kind": "bilstm"}, "out": str(tmp_path / "s"), "train": {"epochs": 1, "batch_size": 16},
           "stages": [{"name": "head", "unfreeze": 1, "objectives": [{"name": "mse"}]},
                      {"name": "all", "data": "gold", "objectives": [{"name": "gold"}], "learning_rate": 1e-4}]}
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    r = api.distill(tmp_path / "c.yaml")
    assert [s["stage"] for s in r["stages"]] == ["head", "all"]
    from kdexam.training.stages import apply_unfreeze, layer_groups
    from kdexam.students.registry import load_student

    model = load_student(tmp_path / "s")[0]
    groups = layer_groups(model)
    trainable = apply_unfreeze(model, 1)
    assert trainable == sum(p.numel() for p in groups[-1].parameters()) < sum(p.numel() for p in model.parameters())


def test_a_transformers_groups_are_embeddings_each_layer_and_the_head(tiny_bert_dir):
    """unfreeze 1 trains the head (pooler and classifier), 2 the top layer too; a dropout is no group
    (it was: unfreeze 1 and 2 both trained the classifier alone)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from kdexam.training.stages import apply_unfreeze, layer_groups

    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                                     intermediate_size=16, max_position_embeddings=16))
    size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    groups = layer_groups(model)
    assert len(groups) == 4 and groups[0] is model.bert.embeddings and groups[2] is model.bert.encoder.layer[1]
    head = size(model.bert.pooler) + size(model.classifier)
    assert apply_unfreeze(model, 1) == head
    assert apply_unfreeze(model, 2) == head + size(model.bert.encoder.layer[1])
    assert apply_unfreeze(model, 4) == size(model) and isinstance(groups[-1], torch.nn.ModuleList)


def test_online_teacher_mode_runs_the_teacher_every_step(teacher_run, tmp_path):
    r = api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="bilstm", out=tmp_path / "s",
                    max_train=64, epochs=1, batch_size=16, cache_teacher=False)
    # 64 examples in batches of 16: 4 training steps; the test-split outputs come from the cache
    # the earlier tests filled, or cost one more pass here
    assert r["teacher_cache"]["teacher_forward_calls"] in (4, 5) and r["teacher_cache"]["path"] is None


@pytest.mark.parametrize("cache", [True, False])
def test_the_teachers_weights_are_freed_once_its_outputs_are_at_hand(cache, teacher_run, tmp_path, monkeypatch):
    """With every output cached the teacher's model is dropped before training (its memory is the
    student's); online, it is kept for the steps. A released teacher loads again when used."""
    from kdexam.teachers.teacher import Teacher

    held = []
    original = Teacher.release
    monkeypatch.setattr(Teacher, "release", lambda self: (held.append(self._model is not None), original(self))[1])
    r = api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="bilstm", out=tmp_path / "s",
                    max_train=64, epochs=1, batch_size=16, cache_teacher=cache)
    assert held == ([True] if r["teacher_cache"]["teacher_forward_calls"] else [False]) if cache else held == []
    t = Teacher(teacher_run / "run")
    params = t.params
    first = t.model(input_ids=torch.tensor([[2, 5, 3]])).logits
    t.release()
    assert t._model is None and t.params == params
    torch.testing.assert_close(t.model(input_ids=torch.tensor([[2, 5, 3]])).logits, first)


def test_wrong_task_for_the_teachers_head(teacher_run, tmp_path):
    d = tmp_path / "pos"
    d.mkdir()
    write_conll(d / "train.conll", tagging_sentences(30))
    with pytest.raises(KdexamError, match="trained for classification"):
        api.distill(teacher=teacher_run / "run", data=d, student="bilstm", out=tmp_path / "s", task="token-classification")
    with pytest.raises(KdexamError, match="no model.safetensors"):
        api.distill(teacher=tmp_path, data=d, student="bilstm", out=tmp_path / "s")


def test_student_round_trip_predictions(teacher_run, tmp_path):
    api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="cnn", out=tmp_path / "s", max_train=64, epochs=1)
    from kdexam.students.registry import load_student

    model, tok, spec, task = load_student(tmp_path / "s")
    enc = tok(["the movie was good", "awful plot"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        a = model(**enc)["logits"]
    model2 = load_student(tmp_path / "s")[0]
    with torch.inference_mode():
        b = model2(**enc)["logits"]
    assert torch.equal(a, b) and task.labels == ["neg", "pos"]


def test_distill_cli_and_report(teacher_run, tmp_path, capsys):
    from kdexam.cli import main

    with pytest.raises(SystemExit) as e:
        main(["distill", "--teacher", str(teacher_run / "run"), "--data", str(teacher_run / "data"), "--student", "bilstm",
              "--embedding-dim", "16", "--hidden-size", "8", "--epochs", "1", "--out", str(tmp_path / "s")])
    assert e.value.code == 0
    spec = json.loads((tmp_path / "s" / "student.json").read_text())
    assert "retention" in capsys.readouterr().out
    assert load_file(tmp_path / "s" / "model.safetensors")["embeddings.word.weight"].shape[1] == 16
    assert spec["spec"]["kind"] == "bilstm" and spec["spec"]["embedding_dim"] == 16 and spec["spec"]["hidden_size"] == 8
    with pytest.raises(SystemExit) as e:
        main(["report", str(teacher_run / "run"), str(tmp_path / "s"), "--out", str(tmp_path / "table.json")])
    assert e.value.code == 0
    rows = json.loads((tmp_path / "table.json").read_text())
    assert rows[0]["model"].startswith("teacher ") and rows[1]["model"] == "bilstm"
    assert rows[1]["retention"] is not None and rows[0]["retention"] is None
    with pytest.raises(SystemExit) as e:
        main(["report", str(tmp_path)])
    assert e.value.code == 2


def test_cpu_bf16_mixed_precision_trains_under_autocast_and_saves_fp32(teacher_run, tmp_path):
    """``--mixed-precision bf16`` on a CPU: the student's forward runs under bf16 autocast (its
    weights come out different from the fp32 run's, same seed), and the weights it saves stay fp32."""
    runs = {p: api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="cnn", out=tmp_path / p,
                           mixed_precision=p, **FAST) for p in ("no", "bf16")}
    weights = {p: load_file(tmp_path / p / "model.safetensors") for p in runs}
    assert all(w.dtype == torch.float32 for w in weights["bf16"].values() if w.is_floating_point())
    assert weights["no"].keys() == weights["bf16"].keys()
    differ = [k for k in weights["no"] if not torch.equal(weights["no"][k], weights["bf16"][k])]
    assert differ, "bf16 autocast changed nothing: the forward did not run in bf16"
    assert runs["bf16"]["student"]["metrics"]["accuracy"] >= 0.8, {p: r["student"]["metrics"] for p, r in runs.items()}


def test_bf16_teacher_labels_the_transfer_set_apart_and_the_teacher_is_scored_in_fp32(teacher_run, tmp_path):
    """``--teacher-precision bf16``: the transfer set's teacher outputs come from a bf16-autocast
    forward, close to the fp32 ones but not equal, cached under their own key (the fp32 cache is
    neither hit nor overwritten); the teacher's test score is the fp32 one."""
    from kdexam.config import DataConfig
    from kdexam.data.splits import load_data
    from kdexam.teachers.teacher import Teacher

    runs = {p: api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="cnn", out=tmp_path / p,
                           max_train=70, epochs=1, teacher_precision=p) for p in ("fp32", "bf16")}
    assert runs["bf16"]["teacher_cache"]["precision"] == "bf16" and runs["bf16"]["teacher_cache"]["hit"] is False
    assert runs["bf16"]["teacher_cache"]["path"] != runs["fp32"]["teacher_cache"]["path"]
    assert runs["bf16"]["teacher"]["metrics"] == runs["fp32"]["teacher"]["metrics"]

    data = load_data(DataConfig(name=str(teacher_run / "data"), max_train=20))
    teacher = Teacher(teacher_run / "run", max_length=64)
    fp32, bf16 = (teacher.outputs(data.train, ["logits"], precision=p) for p in ("fp32", "bf16"))
    a, b = (np.stack([o.example(i) for i in range(len(data.train))]) for o in (fp32, bf16))
    assert not np.array_equal(a, b), "the bf16 forward gave fp32's logits: autocast did not take effect"
    np.testing.assert_allclose(b, a, atol=0.05 * np.abs(a).max())
    with pytest.raises(KdexamError, match="precision 'fp8'"):
        teacher.outputs(data.train, ["logits"], precision="fp8")


def test_an_empty_objective_list_means_the_matches_alone():
    """``objectives: []`` with matches: the matches only (TinyBERT's intermediate stage), not the
    default KL + gold on top; nothing given: the defaults (and the matches on top)."""
    from kdexam.config import DistillRunConfig, StageConfig
    from kdexam.training.stages import stage_objectives

    match = {"teacher_layer": 2, "student_layer": 1, "feature": "hidden", "loss": "mse"}
    cfg = DistillRunConfig.model_validate({"teacher": "t", "data": {"name": "d"}, "out": "o", "objectives": [], "matches": [match]})
    specs, matches = stage_objectives(StageConfig(), cfg, ["DEFAULT"])
    assert specs == [] and len(matches) == 1
    stage = StageConfig(objectives=[])
    cfg = DistillRunConfig.model_validate({"teacher": "t", "data": {"name": "d"}, "out": "o", "matches": [match]})
    assert stage_objectives(stage, cfg, ["DEFAULT"])[0] == []
    assert stage_objectives(StageConfig(), cfg, ["DEFAULT"])[0] == ["DEFAULT"]


def test_inputs_longer_than_the_teachers_positions_are_cut_everywhere(teacher_run, tmp_path):
    """The teacher (64 positions, fine-tuned at the default max_length 128) cut its own inputs, but a
    student built from its layers was fed 128 tokens (a crash in its forward pass), and predict,
    bench and export of the teacher run read the uncut 128 from its config.yaml."""
    from conftest import sentiment_examples, write_jsonl
    from kdexam.inference.predictor import load_student

    long_text = " ".join(["the movie was really quite good and the plot was great"] * 8)
    data = tmp_path / "long"
    data.mkdir()
    for split, n, seed in (("train", 32, 1), ("validation", 8, 2), ("test", 8, 3)):
        write_jsonl(data / f"{split}.jsonl", [dict(r, text=r["text"] + " " + long_text) for r in sentiment_examples(n, seed)])
    api.distill(teacher=teacher_run / "run", data=data, student="teacher-layers:1", out=tmp_path / "s", epochs=1, batch_size=16)
    import yaml

    assert yaml.safe_load((tmp_path / "s" / "config.yaml").read_text())["data"]["max_length"] == 64
    teacher = load_student(teacher_run / "run", backend="pytorch")
    assert teacher.max_length == 64
    assert [p["label"] in ("pos", "neg") for p in teacher.predict([long_text, "good"])] == [True, True]


def test_a_crf_taggers_transitions_are_in_its_head_group():
    """A BiLSTM-CRF's children are embeddings, lstms, crf, classifier: 'unfreeze 2' (XtremeDistil's
    'logits-top2' stage) trained the classifier and the CRF's transitions alone, never the LSTM."""
    import torch
    from torch import nn

    from kdexam.training.stages import apply_unfreeze, layer_groups

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings, self.lstms = nn.Embedding(10, 4), nn.LSTM(4, 3)
            self.crf, self.dropout, self.classifier = nn.Linear(2, 2, bias=False), nn.Dropout(), nn.Linear(3, 2)

    model = Tagger()
    size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    groups = layer_groups(model)
    assert groups[:2] == [model.embeddings, model.lstms] and isinstance(groups[2], torch.nn.ModuleList) and len(groups) == 3
    assert apply_unfreeze(model, 1) == size(model.classifier) + size(model.crf)
    assert apply_unfreeze(model, 2) == size(model.classifier) + size(model.crf) + size(model.lstms)


def test_auto_precision_is_fp32_for_students_and_low_for_teachers_on_a_gpu():
    """``auto``: fp32 on a CPU; on a GPU, bf16 (fp16 without bf16) for teacher fine-tuning and fp32
    for students, whose steps bf16 slowed on an H200 (docs/benchmarks.md); a choice stays a choice."""
    from kdexam.training.trainer import resolve_precision

    assert resolve_precision("auto", True, cuda=False, bf16=False) == "no"
    assert resolve_precision("auto", True, cuda=True, bf16=True) == "bf16"
    assert resolve_precision("auto", True, cuda=True, bf16=False) == "fp16"
    assert resolve_precision("auto", False, cuda=True, bf16=True) == "no"
    assert resolve_precision("bf16", False, cuda=False, bf16=False) == "bf16"
    assert resolve_precision("no", True, cuda=True, bf16=True) == "no"


def test_attention_on_a_gpu_leaves_out_cudnn_and_restores_the_choice():
    """cuDNN's attention builds a graph per input shape (143 ms against 17 ms a bf16 bert-mini step on
    an H200); inside ``attention_kernels`` on a GPU every other kernel stays allowed, on a CPU nothing changes."""
    from kdexam.parallel import attention_kernels

    flags = (torch.backends.cuda.cudnn_sdp_enabled, torch.backends.cuda.flash_sdp_enabled,
             torch.backends.cuda.mem_efficient_sdp_enabled, torch.backends.cuda.math_sdp_enabled)
    before = [f() for f in flags]
    assert before[0], "cuDNN attention is allowed outside"
    with attention_kernels(torch.device("cpu")):
        assert [f() for f in flags] == before
    with attention_kernels(torch.device("cuda")):
        assert [f() for f in flags] == [False, True, True, True]
    assert [f() for f in flags] == before
    torch.backends.cuda.enable_flash_sdp(False)  # a kernel the user turned off stays off
    try:
        with attention_kernels(torch.device("cuda")):
            assert [f() for f in flags] == [False, False, True, True]
    finally:
        torch.backends.cuda.enable_flash_sdp(before[1])


def test_under_auto_student_runs_ask_fp32_and_teacher_runs_low_precision(teacher_run, tiny_bert_dir, tmp_path, monkeypatch):
    """What each kind of run asks of ``mixed_precision: auto`` (on a GPU it decides; here the CPU runs fp32 either way)."""
    from kdexam.training import trainer

    asked, real = [], trainer.resolve_precision

    def spy(choice, low_precision_on_gpu, cuda, bf16):
        asked.append((choice, low_precision_on_gpu))
        return real(choice, low_precision_on_gpu, cuda, bf16)

    monkeypatch.setattr(trainer, "resolve_precision", spy)
    api.distill(teacher=teacher_run / "run", data=teacher_run / "data", student="cnn", out=tmp_path / "s", epochs=1, batch_size=16)
    api.finetune_teacher(data=teacher_run / "data", model=tiny_bert_dir, out=tmp_path / "t", epochs=1, batch_size=16)
    assert asked == [("auto", False), ("auto", True)]
