"""Transformer students with a word-embedding table trimmed to the transfer set's tokens
(``trim_vocab``, :class:`kdexam.students.transformer.TrimmedEmbedding`): the same logits as the
untrimmed table with the same rows, save/load, ONNX export, torch-free serving, token-level
matching, and the switch that keeps the full table. build_student trims the bert-* presets;
teacher-layers students keep their table, and are trimmed here by the function itself."""

from __future__ import annotations

import json

import pytest
import torch

from kdexam.students import StudentSpec, build_student, count_parameters, load_student, save_student
from kdexam.students.transformer import TRIM_KEY, TrimmedEmbedding, trim_word_embeddings
from run_factory import runs  # noqa: F401  (fixture)
from test_serving import _in_subprocess, _same
from test_students import EXAMPLES, SMALL, TASKS, batch_of, logits_of, save_teacher
from kdexam.data.readers import Example

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher_dir(tiny_bert_dir, tmp_path_factory):
    return save_teacher(tiny_bert_dir, tmp_path_factory.mktemp("teacher"))

TEXTS = {"cls": ["the movie was good", "awful plot and the actors", "a dull film"],
         "tag": [["the", "movie", "was", "good"], ["a", "dull", "film"]]}
UNSEEN = {"cls": [Example("the superb movie was good"), Example("superb")],  # 'superb' is in no training text
          "tag": [Example(["the", "superb", "movie"]), Example(["superb"])]}
KINDS = ["bert-tiny", "teacher-layers:1"]


def build(kind, task_name, teacher, trim=True):
    """As distill builds it (seed 0); teacher-layers students, which build_student leaves untrimmed,
    trimmed by the function itself."""
    teacher_layers = kind.startswith("teacher-layers")
    torch.manual_seed(0)
    spec = StudentSpec(kind=kind, **SMALL.get(kind, {}), **({} if teacher_layers else {"trim_vocab": trim}))
    model, tok = build_student(spec, TASKS[task_name], teacher, train_texts=TEXTS[task_name])
    if teacher_layers and trim:
        model.kdexam_info["embeddings"] = trim_word_embeddings(model, tok, TEXTS[task_name])
    return model, tok


def used_ids(tok, texts) -> set[int]:
    strings = [t if isinstance(t, str) else " ".join(t) for t in texts]
    return set(tok.all_special_ids) | {i for s in strings for i in tok(s, add_special_tokens=False)["input_ids"]}


@pytest.mark.parametrize("task_name", ["cls", "tag"])
@pytest.mark.parametrize("kind", KINDS)
def test_trimmed_logits_equal_the_untrimmed_table_with_the_same_rows(kind, task_name, teacher_dir):
    trimmed, tok = build(kind, task_name, teacher_dir)
    full, _ = build(kind, task_name, teacher_dir, trim=False)
    emb, full_emb = trimmed.get_input_embeddings(), full.get_input_embeddings()
    assert isinstance(emb, TrimmedEmbedding) and not isinstance(full_emb, TrimmedEmbedding)
    kept = sorted(used_ids(tok, TEXTS[task_name]))
    assert emb.num_embeddings == len(kept) < full_emb.num_embeddings == len(emb.id_map)
    # the rows kept are the untrimmed student's own (same seed: random for a preset, the teacher's for its layers)
    assert torch.equal(emb.weight, full_emb.weight[kept])
    assert emb.padding_idx == int(emb.id_map[tok.pad_token_id])
    superb = tok.convert_tokens_to_ids("superb")
    assert superb not in kept and emb.id_map[superb] == emb.id_map[tok.unk_token_id]
    assert count_parameters(trimmed) == count_parameters(full) - (full_emb.num_embeddings - len(kept)) * emb.embedding_dim

    with torch.no_grad():  # the untrimmed table with the trimmed rows: every id reads the row its id map names
        full_emb.weight.copy_(emb.weight[emb.id_map])
    trimmed.eval(), full.eval()
    for examples in (EXAMPLES[task_name], UNSEEN[task_name]):
        batch = batch_of(tok, TASKS[task_name], examples)
        assert torch.allclose(logits_of(trimmed, batch), logits_of(full, batch), atol=1e-6)


def test_a_training_step_is_the_untrimmed_one(teacher_dir):
    """No training text reads an unused row, so AdamW moves the kept rows and every other weight alike."""
    trimmed, tok = build("bert-tiny", "cls", teacher_dir)
    full, _ = build("bert-tiny", "cls", teacher_dir, trim=False)
    batch = batch_of(tok, TASKS["cls"], [Example(t) for t in TEXTS["cls"]])
    labels = torch.tensor([1, 0, 0])
    for model in (trimmed, full):
        model.train()
        torch.manual_seed(5)  # the same dropout masks
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        torch.nn.functional.cross_entropy(model(**batch)["logits"], labels).backward()
        opt.step()
    trimmed.eval(), full.eval()
    assert torch.allclose(logits_of(trimmed, batch), logits_of(full, batch), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_gives_identical_predictions(kind, teacher_dir, tmp_path):
    model, tok = build(kind, "cls", teacher_dir)
    spec = StudentSpec(kind=kind)
    save_student(model, tok, spec, TASKS["cls"], tmp_path / "s")
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    rows = model.get_input_embeddings().num_embeddings
    assert config[TRIM_KEY]["rows"] == rows and config["vocab_size"] == len(model.get_input_embeddings().id_map)
    record = json.loads((tmp_path / "s" / "student.json").read_text())
    assert record["parameters"]["total"] == count_parameters(model)
    assert record["info"]["embeddings"] == {"trimmed_vocab": rows, "source_vocab": config["vocab_size"]}
    loaded = load_student(tmp_path / "s")[0]
    assert isinstance(loaded.get_input_embeddings(), TrimmedEmbedding)
    assert torch.equal(loaded.get_input_embeddings().id_map, model.get_input_embeddings().id_map)
    model.eval()
    for examples in (EXAMPLES["cls"], UNSEEN["cls"]):
        batch = batch_of(tok, TASKS["cls"], examples)
        assert torch.equal(logits_of(model, batch), logits_of(loaded, batch))


def test_switch_off_keeps_the_full_table(teacher_dir, tmp_path):
    model, tok = build("bert-tiny", "cls", teacher_dir, trim=False)
    emb = model.get_input_embeddings()
    assert type(emb) is torch.nn.Embedding and emb.num_embeddings == len(tok)
    assert TRIM_KEY not in model.config.to_dict() and "embeddings" not in model.kdexam_info
    save_student(model, tok, StudentSpec(kind="bert-tiny", trim_vocab=False), TASKS["cls"], tmp_path / "s")
    assert type(load_student(tmp_path / "s")[0].get_input_embeddings()) is torch.nn.Embedding
    # without training texts there is nothing to trim to
    torch.manual_seed(0)
    untrained, _ = build_student(StudentSpec(kind="bert-tiny", trim_vocab=True), TASKS["cls"], teacher_dir)
    assert type(untrained.get_input_embeddings()) is torch.nn.Embedding


def test_presets_keep_the_full_table_by_default_and_embedding_students_trim(teacher_dir):
    """Trimming is opt-in for bert-* presets (it cost bert-mini accuracy, docs/benchmarks.md) and the
    default for the embedding students."""
    texts = [e.text for e in EXAMPLES["cls"]]
    torch.manual_seed(0)
    preset, tok = build_student(StudentSpec(kind="bert-tiny"), TASKS["cls"], teacher_dir, train_texts=texts)
    assert type(preset.get_input_embeddings()) is torch.nn.Embedding and preset.get_input_embeddings().num_embeddings == len(tok)
    bilstm, tok = build_student(StudentSpec(kind="bilstm", hidden_size=8), TASKS["cls"], teacher_dir, train_texts=texts)
    assert bilstm.get_input_embeddings().weight.shape[0] < len(tok)


def test_general_encoder_keeps_the_full_table(teacher_dir):
    from kdexam.students.encoder import build_general_student

    model, tok, _ = build_general_student("bert-tiny", None, teacher_dir)
    assert type(model.get_input_embeddings()) is torch.nn.Embedding and model.get_input_embeddings().num_embeddings >= len(tok)


def test_onnx_export_and_torch_free_serving_of_a_trimmed_preset(runs, tmp_path):  # noqa: F811
    from kdexam.export.onnx import PARITY_ATOL, export_onnx
    from kdexam.inference.predictor import load_student as load_predictor

    from kdexam import api

    run = tmp_path / "run"
    api.distill(teacher=runs.teacher("cls"), student="bert-tiny", out=run, epochs=1, batch_size=16, set=["student.trim_vocab=true"])
    info = json.loads((run / "student.json").read_text())["info"]
    assert info["embeddings"]["trimmed_vocab"] < info["embeddings"]["source_vocab"]
    r = export_onnx(run, quantize="int8")
    assert r["parity_ok"] and r["max_abs_logit_diff"] < PARITY_ATOL and r["prediction_agreement"] == 1.0
    assert r["serving"]["onnx"]["prediction_agreement"] == 1.0
    inputs = ["the movie was good", "superb", "the film was really quite lovely and the story was great", "good " * 200]
    want = load_predictor(run, backend="pytorch").predict(inputs, batch_size=2)
    code = (f"import json, kdexam\np = kdexam.load_student({str(run)!r})\n"
            "assert type(p).__name__ == 'ServingPredictor', p\n"
            f"out = p.predict({inputs!r}, batch_size=2)\n"
            "assert not {'torch', 'transformers'} & set(sys.modules)\nprint(json.dumps(out))")
    _same("cls", _in_subprocess(code, ("torch", "transformers")), want)


def test_hidden_state_matching_runs_with_a_trimmed_preset(runs, tmp_path):  # noqa: F811
    """Token-level matching checks that student and teacher tokenize alike: a trimmed student still does."""
    from kdexam import api

    teacher = runs.teacher("cls")
    out = tmp_path / "s"
    r = api.distill(teacher=teacher, student="bert-tiny", out=out, epochs=1, batch_size=16,
                    objective=["kl:weight=1"], match=["teacher_layer=2,student_layer=1,feature=hidden,loss=mse"],
                    set=["student.trim_vocab=true"])
    assert "match:hidden_mse" in r["stages"][0]["objectives"]
    model = load_student(out)[0]
    emb = model.get_input_embeddings()
    assert isinstance(emb, TrimmedEmbedding) and emb.num_embeddings < len(emb.id_map)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["student"]["params"] == count_parameters(model)
    off = api.distill(teacher=teacher, student="bert-tiny", out=tmp_path / "full", epochs=1, batch_size=16,
                      set=["student.trim_vocab=false"], objective=["kl:weight=1"])
    assert off["student"]["params"] > metrics["student"]["params"]
    assert type(load_student(tmp_path / "full")[0].get_input_embeddings()) is torch.nn.Embedding


def test_teacher_layers_keep_the_teachers_full_table(teacher_dir):
    """Their rows are the teacher's trained vectors: build_student does not trim them, and says so."""
    from kdexam.errors import KdexamError

    torch.manual_seed(0)
    model, tok = build_student(StudentSpec(kind="teacher-layers:1"), TASKS["cls"], teacher_dir, train_texts=TEXTS["cls"])
    assert type(model.get_input_embeddings()) is torch.nn.Embedding and model.get_input_embeddings().num_embeddings == len(tok)
    with pytest.raises(KdexamError, match="trim_vocab"):
        build_student(StudentSpec(kind="teacher-layers:1", trim_vocab=False), TASKS["cls"], teacher_dir)
