"""ONNX export: parity with PyTorch for every student kind and task kind (padded batches of mixed
lengths, dynamic batch and sequence axes), int8 quantization, the export folder, CLI and errors."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from kdexam.errors import KdexamError
from kdexam.export.onnx import PARITY_ATOL, agreement, export_onnx
from run_factory import STUDENT_KINDS, TASK_NAMES, runs  # noqa: F401  (fixture)
from conftest import write_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")

KINDS = ("teacher",) + STUDENT_KINDS
LONG_WORDS = "the movie was really quite good and the plot was great".split()


@pytest.mark.parametrize("task_name", TASK_NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_onnx_parity(kind, task_name, runs, tmp_path):
    run = runs.get(kind, task_name)
    quantize = "int8" if task_name == "cls" or kind == "bilstm" else None
    # batches of 5 over 13 examples: several batch sizes and padded lengths, none the traced shape
    r = export_onnx(run, tmp_path / "onnx", quantize=quantize, batch_size=5)
    assert r["max_abs_logit_diff"] < PARITY_ATOL, r["parity"]
    assert r["prediction_agreement"] == 1.0 and r["parity_ok"] is True
    # equal labels give equal metrics; a Pearson r of an untrained regressor (near-constant outputs) moves a little
    assert r["metrics"]["onnx"] == pytest.approx(r["metrics"]["pytorch"], abs=0 if task_name != "reg" else 1e-3)
    assert r["validation"]["examples"] == (13 if task_name == "tag" else 12) and r["opset"] >= 17

    files = {p.name for p in (tmp_path / "onnx").iterdir()}
    assert {"model.onnx", "export.json", "tokenizer.json"} <= files
    assert ("model.int8.onnx" in files) == (quantize == "int8")
    assert json.loads((tmp_path / "onnx" / "export.json").read_text()) == json.loads(json.dumps(r))

    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    dims = {i.name: [d.dim_param for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert all(d == ["batch", "sequence"] for d in dims.values()), dims
    assert [o.name for o in graph.output] == ["logits"]
    reads_types = kind in ("teacher", "bert-tiny", "teacher-layers:1") or task_name == "pair"
    assert ("token_type_ids" in dims) == reads_types, dims
    if quantize:
        assert set(r["metrics"]) == {"pytorch", "onnx", "onnx-int8"}
        assert r["primary_metric"] in r["metrics"]["onnx-int8"]
        int8 = r["parity"]["onnx-int8"]["prediction_agreement"]
        # the torch-free predictor decodes the same int8 model: it agrees with PyTorch exactly as often
        assert r["serving"]["onnx-int8"]["prediction_agreement"] == pytest.approx(int8)
        if task_name != "reg":  # accuracy can differ from PyTorch's by at most the share of changed predictions
            m = r["metrics"]
            assert abs(m["onnx-int8"]["accuracy"] - m["pytorch"]["accuracy"]) <= 1 - int8 + 1e-9


def test_padding_and_shapes_match_pytorch_batch_by_batch(runs, tmp_path):
    """One example alone and the same example in a long padded batch give the ONNX logits PyTorch
    gives it alone (the packed BiLSTM never reads padding)."""
    from kdexam.inference.predictor import load_student

    run = shutil.copytree(runs.student("bilstm", "tag"), tmp_path / "run")
    export_onnx(run)
    pt, ox = load_student(run, backend="pytorch"), load_student(run, backend="onnx")
    words = [["good"], "the movie was really quite good and the plot was great".split(), ["a", "film"]]
    alone = [pt.predict_logits([w])[0] for w in words]
    for batch_size in (1, 3):
        got = ox.predict_logits(words, batch_size=batch_size)
        for a, b in zip(alone, got):
            assert a.shape == b.shape and np.abs(a - b).max() < PARITY_ATOL


def test_int8_is_smaller_for_a_transformer_and_reports_its_metric(runs, tmp_path):
    r = export_onnx(runs.student("bert-tiny", "cls"), tmp_path / "o", quantize="int8")
    assert r["files"]["model.int8.onnx"] < r["files"]["model.onnx"] / 2
    pm = r["primary_metric"]
    assert set(r["metrics"]["onnx-int8"]) == set(r["metrics"]["onnx"])
    # accuracy can move only on the examples whose prediction int8 changed
    changed = 1 - r["parity"]["onnx-int8"]["prediction_agreement"]
    assert abs(r["metrics"]["onnx-int8"][pm] - r["metrics"]["pytorch"][pm]) <= changed + 1e-9
    assert r["parity"]["onnx-int8"]["max_abs_logit_diff"] > 0  # it is quantized
    # the quantized graph holds int8 weights
    m = onnx.load(str(tmp_path / "o" / "model.int8.onnx"))
    assert any(i.data_type == onnx.TensorProto.INT8 for i in m.graph.initializer)


def test_reexport_without_int8_removes_the_stale_int8_model(runs, tmp_path):
    run = runs.student("cnn", "reg")
    export_onnx(run, tmp_path / "o", quantize="int8")
    assert (tmp_path / "o" / "model.int8.onnx").is_file()
    r = export_onnx(run, tmp_path / "o")
    assert not (tmp_path / "o" / "model.int8.onnx").exists() and "onnx-int8" not in r["metrics"]


def test_default_folder_max_examples_and_data_override(runs, tmp_path):
    run = shutil.copytree(runs.student("cnn", "cls"), tmp_path / "run")
    r = export_onnx(run, max_examples=4)
    assert (run / "onnx" / "model.onnx").is_file() and r["validation"]["examples"] == 4
    r = export_onnx(run, tmp_path / "o", data=str(runs.root / "data-cls"))
    assert r["validation"]["examples"] == 12


def test_agreement_definitions():
    from kdexam.tasks import Task

    assert agreement(Task("classification", ["a", "b"]), ["a", "b", "a"], ["a", "a", "a"]) == pytest.approx(2 / 3)
    assert agreement(Task("token-classification", ["X", "Y"]), [["X", "Y"], ["X"]], [["X", "X"], ["X"]]) == pytest.approx(2 / 3)
    reg = Task("regression")
    assert agreement(reg, [0.0, 1.0, 2.0], [0.01, 1.0, 2.05]) == pytest.approx(2 / 3)  # tolerance 1 % of the range 2


def test_export_cli_and_errors(runs, tmp_path, capsys):
    from kdexam.cli import main

    run = runs.student("bilstm", "pair")
    runs.teacher("tag"), runs.teacher("cls")  # their data folders are used below
    with pytest.raises(SystemExit) as e:
        main(["export", str(run), "--format", "onnx", "--quantize", "int8", "--out", str(tmp_path / "o")])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "onnx-int8" in text and "agreement" in text
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "model.onnx").write_text("a user's own model")  # never overwritten by an export
    cases = [
        (["export", str(tmp_path), "--format", "onnx"], "holds no model"),
        (["export", str(tmp_path / "missing"), "--format", "onnx"], "does not exist"),
        (["export", str(run), "--format", "tflite"], "Unknown export format"),
        (["export", str(run), "--quantize", "int4", "--out", str(tmp_path / "q")], "Unknown quantization"),
        (["export", str(tmp_path / "o"), "--format", "onnx"], "ONNX export folder"),
        (["export", str(run), "--out", str(run)], "is the run directory itself"),
        (["export", str(run), "--out", str(tmp_path / "mine")], "is not a kdexam export folder"),
        (["export", str(run), "--data", str(runs.root / "data-tag"), "--out", str(tmp_path / "t")], "token-classification"),
        (["export", str(run), "--data", str(runs.root / "data-cls"), "--out", str(tmp_path / "t")], "of text pairs"),
    ]
    other = write_jsonl(tmp_path / "other.jsonl", [{"text": f"a {i}", "text_pair": "b", "label": ["yes", "never"][i % 2]}
                                                   for i in range(12)])
    cases += [  # refused before the export that works is touched (its export.json was deleted first)
        (["export", str(run), "--quantize", "int4", "--out", str(tmp_path / "o")], "Unknown quantization"),
        (["export", str(run), "--data", str(other), "--out", str(tmp_path / "o")],  # (a KeyError traceback)
         "Labels ['never'] of dataset"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, argv
        assert message in capsys.readouterr().err, argv
    assert (tmp_path / "o" / "export.json").is_file()  # the earlier export still serves
    assert [f.name for f in (tmp_path / "mine").iterdir()] == ["model.onnx"]
    assert (tmp_path / "mine" / "model.onnx").read_text() == "a user's own model"


def test_failed_parity_exits_with_code_1(runs, tmp_path, capsys, monkeypatch):
    import kdexam.export.onnx as onnx_export
    from kdexam.cli import main

    monkeypatch.setattr(onnx_export, "PARITY_ATOL", -1.0)  # nothing can pass
    with pytest.raises(SystemExit) as e:
        main(["export", str(runs.student("cnn", "cls")), "--out", str(tmp_path / "o")])
    assert e.value.code == 1 and "parity check failed" in capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "export.json").read_text())["parity_ok"] is False


def test_run_without_config_needs_data(runs, tmp_path):
    run = shutil.copytree(runs.student("cnn", "cls"), tmp_path / "run")
    (run / "config.yaml").unlink()
    with pytest.raises(KdexamError, match="pass --data"):
        export_onnx(run, tmp_path / "o")
    assert export_onnx(run, tmp_path / "o", data=str(runs.root / "data-cls"))["parity_ok"]


# ---- CRF taggers and siamese pairs ---------------------------------------------------------------


def test_crf_tagger_exports_emissions_and_decodes_with_viterbi(runs, tmp_path):
    from kdexam.inference.predictor import load_student

    run = shutil.copytree(runs.student("bilstm", "tag", crf=True), tmp_path / "run")
    r = export_onnx(run, batch_size=5)
    assert r["crf"] is True and (run / "onnx" / "crf.safetensors").is_file() and r["parity_ok"]
    words = ["the film was good".split(), ["a", "story"], LONG_WORDS]
    onnx_tags = load_student(run, backend="onnx").predict(words)
    assert onnx_tags == load_student(run, backend="pytorch").predict(words)
    # Viterbi, not the per-word argmax, decides: with strong transitions the two differ
    from safetensors.numpy import load_file, save_file

    crf = load_file(str(run / "onnx" / "crf.safetensors"))
    crf["transitions"] = np.full_like(crf["transitions"], -50.0)
    np.fill_diagonal(crf["transitions"], 50.0)  # only "same tag again" is allowed
    save_file(crf, str(run / "onnx" / "crf.safetensors"))
    for item in load_student(run, backend="onnx").predict(words):
        assert len(set(item["tags"])) == 1


@pytest.mark.parametrize("kind", ["bilstm", "cnn"])
def test_siamese_pair_students_export(kind, runs, tmp_path):
    run = runs.student(kind, "pair", pair_mode="siamese")
    r = export_onnx(run, tmp_path / "o", batch_size=5)
    assert r["parity_ok"], r["parity"]
    assert "token_type_ids" in r["inputs"]  # the graph splits the pair by token types


def test_onnx_runtime_session_runs_without_kdexam(runs, tmp_path):
    """The exported file is plain ONNX: a bare session with the tokenizer's arrays gives the logits."""
    from transformers import AutoTokenizer

    run = runs.teacher("cls")
    export_onnx(run, tmp_path / "o")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "o"))
    enc = tok(["the movie was good", "bad"], padding=True, return_tensors="np")
    sess = ort.InferenceSession(str(tmp_path / "o" / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()}
    from transformers import AutoModelForSequenceClassification

    with torch.inference_mode():
        ref = AutoModelForSequenceClassification.from_pretrained(run)(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits
    assert np.abs(sess.run(["logits"], feed)[0] - ref.numpy()).max() < PARITY_ATOL


def test_int8_quantizes_a_weight_the_graph_uses_twice(tmp_path):
    """A siamese BiLSTM runs one LSTM on each text: the exporter writes its weights once plus
    ``Identity`` copies, and ``quantize_dynamic`` left the operator reading the copies in fp32 (one
    of its two LSTMs, 9.79 → 9.25 MB). Here two MatMuls share a weight the same way."""
    from onnx import TensorProto, helper, numpy_helper

    from kdexam.export.onnx import quantize_int8

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["w_copy"]), helper.make_node("MatMul", ["a", "w"], ["ya"]),
         helper.make_node("MatMul", ["b", "w_copy"], ["yb"])], "shared",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 64]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 64]) for n in ("ya", "yb")], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "m.onnx")
    quantize_int8(tmp_path / "m.onnx", tmp_path / "m.int8.onnx")
    q = onnx.load(tmp_path / "m.int8.onnx")
    assert [n.op_type for n in q.graph.node].count("MatMul") == 0 and "Identity" not in {n.op_type for n in q.graph.node}
    x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
    ya, yb = ort.InferenceSession(str(tmp_path / "m.int8.onnx")).run(None, {"a": x, "b": x})
    assert np.allclose(ya, yb) and np.allclose(ya, x @ numpy_helper.to_array(w), atol=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx", "m.onnx"]  # no temporary file left

    class Siamese(torch.nn.Module):  # one LSTM on both texts: ONNX Runtime's LSTM quantizer transposes in place,
        def __init__(self):  # so two LSTMs reading one weight scrambled it (max error 0.72 on outputs of 0.34)
            super().__init__()
            self.lstm = torch.nn.LSTM(16, 8, batch_first=True, bidirectional=True)

        def forward(self, a, b):
            return self.lstm(a)[0].max(1).values - 0.5 * self.lstm(b)[0].max(1).values

    torch.manual_seed(0)
    siamese, a, b = Siamese().eval(), torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    with warnings.catch_warnings():  # (the TorchScript exporter's deprecation and tracer notes, as write_onnx silences them)
        warnings.simplefilter("ignore")
        torch.onnx.export(siamese, (a, b), str(tmp_path / "s.onnx"), input_names=["a", "b"], output_names=["y"],
                          opset_version=17, dynamo=False, dynamic_axes={"a": {0: "n", 1: "t"}, "b": {0: "n", 1: "u"}})
    quantize_int8(tmp_path / "s.onnx", tmp_path / "s.int8.onnx")
    assert [n.op_type for n in onnx.load(tmp_path / "s.int8.onnx").graph.node].count("DynamicQuantizeLSTM") == 2
    y = ort.InferenceSession(str(tmp_path / "s.int8.onnx")).run(None, {"a": a.numpy(), "b": b.numpy()})[0]
    assert np.abs(y - siamese(a, b).detach().numpy()).max() < 0.02
