"""Predictor round trips (classification, pairs, tagging, regression) in PyTorch and ONNX Runtime,
input forms, `kdexam predict` file formats, `kdexam.load_student`, and errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kdexam.errors import KdexamError
from kdexam.export.onnx import export_onnx
from kdexam.inference.inputs import read_inputs
from kdexam.inference.predictor import Predictor, load_student
from run_factory import runs  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

INPUTS = {
    "cls": ["the movie was good", "awful plot and dull actors", "the film was really quite lovely and the story was great"],
    "pair": [("good film", "bad plot"), {"text": "the story", "text_pair": "the actors were fine"}, ["a", "b c"]],
    "tag": [["the", "film", "was", "good"], "the story was dull", {"tokens": ["a", "movie"]}],
    "reg": ["good", "dull film", "the plot was great and the actors were lovely"],
}


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """Copies of BiLSTM student runs, exported to ONNX (fp32 + int8) in RUN/onnx."""
    root = tmp_path_factory.mktemp("exported")
    out = {}
    for task_name in INPUTS:
        run = shutil.copytree(runs.student("bilstm", task_name), root / task_name)
        export_onnx(run, quantize="int8")
        out[task_name] = run
    return out


def _direct_logits(run, task_name, items):
    """Logits of the registry's PyTorch student on one padded batch, encoded as in training."""
    from kdexam.data.encode import Collator, encode
    from kdexam.inference.predictor import to_example
    from kdexam.students.registry import load_student as registry_load

    model, tok, _, task = registry_load(run)
    rows = encode([to_example(i, task) for i in items], tok, task, 64).rows
    batch = Collator(tok, task)([dict(r, index=i) for i, r in enumerate(rows)])
    with torch.inference_mode():
        logits = model(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")})["logits"]
    return [logits[i, : len(r["input_ids"])].numpy() if task.kind == "token-classification" else logits[i].numpy()
            for i, r in enumerate(rows)]


@pytest.mark.parametrize("task_name", list(INPUTS))
def test_round_trip_pytorch_and_onnx(task_name, exported):
    run, items = exported[task_name], INPUTS[task_name]
    pt = load_student(run, backend="pytorch")
    ox = load_student(run, backend="onnx")
    q8 = load_student(run, quantized=True)
    auto = load_student(run)
    assert isinstance(pt, Predictor) and (pt.backend, ox.backend, q8.backend, auto.backend) == ("pytorch", "onnx", "onnx", "onnx")
    assert q8.quantized and not ox.quantized and pt.task == ox.task

    direct = _direct_logits(run, task_name, items)
    for p in (pt, ox):
        for a, b in zip(p.predict_logits(items, batch_size=2), direct):
            assert a.shape == b.shape and np.abs(a - b).max() < 1e-4

    a, b, c = pt.predict(items), ox.predict(items, batch_size=1), q8.predict(items)
    assert len(a) == len(b) == len(c) == len(items)
    task = pt.task
    for x, y, z in zip(a, b, c):
        if task_name == "reg":
            assert set(x) == {"value"} and isinstance(x["value"], float)
            assert x["value"] == pytest.approx(y["value"], abs=1e-5) and np.isfinite(z["value"])
        elif task_name == "tag":
            assert set(x) == {"tokens", "tags"} and x == y and len(z["tags"]) == len(z["tokens"])
            assert all(t in task.labels for t in x["tags"]) and len(x["tags"]) == len(x["tokens"])
        else:
            assert set(x) == {"label", "scores"} and x["label"] == y["label"]
            assert list(x["scores"]) == task.labels and sum(x["scores"].values()) == pytest.approx(1.0, abs=1e-6)
            assert x["label"] == max(x["scores"], key=x["scores"].get)
            assert all(x["scores"][k] == pytest.approx(y["scores"][k], abs=1e-5) for k in task.labels)
    if task_name == "tag":
        assert a[0]["tokens"] == ["the", "film", "was", "good"] and a[1]["tokens"] == ["the", "story", "was", "dull"]


def test_teacher_run_and_export_folder_predict(runs, tmp_path):
    teacher = runs.teacher("pair")
    p = load_student(teacher)
    assert p.backend == "pytorch" and p.task.text_pair
    export_onnx(teacher, tmp_path / "deploy")
    q = load_student(tmp_path / "deploy")  # the folder alone: no run directory needed
    shutil.copytree(tmp_path / "deploy", tmp_path / "moved")
    r = load_student(tmp_path / "moved" / "model.onnx")
    items = INPUTS["pair"]
    assert [x["label"] for x in p.predict(items)] == [x["label"] for x in q.predict(items)] == [x["label"] for x in r.predict(items)]
    with pytest.raises(KdexamError, match="export folder"):
        load_student(tmp_path / "deploy", backend="pytorch")


def test_single_inputs_and_truncation(runs):
    cls = load_student(runs.student("cnn", "cls"))
    assert len(cls.predict("the movie was good")) == 1
    pair = load_student(runs.student("cnn", "pair"))
    assert len(pair.predict(("good", "bad"))) == 1
    tagger = load_student(runs.student("cnn", "tag"))
    long = ["the", "movie"] * 40  # 80 words > max_length 64 subwords
    out = tagger.predict([long, ["a", "film"]])
    assert out[0]["truncated"] is True and len(out[0]["tags"]) == 80 and "truncated" not in out[1]


def test_stale_export_is_not_used(exported, tmp_path):
    run = shutil.copytree(exported["cls"], tmp_path / "run")
    record = json.loads((run / "onnx" / "export.json").read_text())
    record["source"]["weights_sha256"] = "0" * 64  # as if the student were retrained after the export
    (run / "onnx" / "export.json").write_text(json.dumps(record))
    assert load_student(run).backend == "pytorch"
    with pytest.raises(KdexamError, match="older than the model"):
        load_student(run, backend="onnx")


def test_input_errors(runs, tmp_path):
    pair = load_student(runs.student("cnn", "pair"))
    cls = load_student(runs.student("cnn", "cls"))
    tagger = load_student(runs.student("cnn", "tag"))
    cases = [
        (lambda: pair.predict(["only one text"]), "reads text pairs"),
        (lambda: cls.predict([("a", "b")]), "reads single texts"),
        (lambda: cls.predict(["fine", "  "]), "Input 1 has an empty text"),
        (lambda: cls.predict([{"txt": "a"}]), "no 'text' field"),
        (lambda: cls.predict([3]), "is not text"),
        (lambda: tagger.predict([[]]), "has no words"),
        (lambda: tagger.predict([[1, 2]]), "not a list of words"),
        (lambda: load_student(tmp_path), "holds no model"),
        (lambda: load_student(tmp_path / "nope"), "does not exist"),
        (lambda: load_student(runs.student("cnn", "cls"), backend="tf"), "Unknown backend"),
        (lambda: load_student(runs.student("cnn", "cls"), backend="onnx"), "has no ONNX export"),
        (lambda: load_student(runs.student("cnn", "cls"), quantized=True), "--quantize int8"),
    ]
    for call, message in cases:
        with pytest.raises(KdexamError, match=message):
            call()
    with pytest.raises(ValueError, match="has an empty text"):  # as documented, and as the standalone script raises
        cls.predict([""])


# ---- files and the command line ------------------------------------------------------------------


def _run_cli(argv, capsys):
    from kdexam.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    captured = capsys.readouterr()
    return e.value.code, captured.out, captured.err


def test_predict_command_formats(exported, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("the movie was good\n\nawful plot\n", encoding="utf-8")
    code, out, _ = _run_cli(["predict", str(exported["cls"]), "--input", str(tmp_path / "in.txt")], capsys)
    rows = [json.loads(l) for l in out.splitlines()]
    assert code == 0 and [r["text"] for r in rows] == ["the movie was good", "awful plot"] and "scores" in rows[0]
    code, dashed, _ = _run_cli(["predict", str(exported["cls"]), "--input", str(tmp_path / "in.txt"), "--output", "-"], capsys)
    assert code == 0 and dashed == out and not Path("-").exists()  # "-" is standard output, not a file named "-"

    (tmp_path / "pairs.tsv").write_text("good film\tbad plot\nthe story\tfine\n", encoding="utf-8")
    code, _, err = _run_cli(["predict", str(exported["pair"]), "--input", str(tmp_path / "pairs.tsv"),
                             "--output", str(tmp_path / "p.jsonl"), "--backend", "pytorch", "--batch-size", "1"], capsys)
    rows = [json.loads(l) for l in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert code == 0 and "2 predictions" in err and rows[1]["text_pair"] == "fine" and "label" in rows[1]

    (tmp_path / "words.conll").write_text("# sent 1\nthe\tX\nfilm\tX\n\n-DOCSTART-\n\na\nstory\n", encoding="utf-8")
    code, out, _ = _run_cli(["predict", str(exported["tag"]), "--input", str(tmp_path / "words.conll"), "--quantized"], capsys)
    rows = [json.loads(l) for l in out.splitlines()]
    assert code == 0 and [r["tokens"] for r in rows] == [["the", "film"], ["a", "story"]] and len(rows[0]["tags"]) == 2

    (tmp_path / "in.jsonl").write_text('{"text": "good", "id": 7}\n{"text": "the plot was dull"}\n', encoding="utf-8")
    code, out, _ = _run_cli(["predict", str(exported["reg"]), "--input", str(tmp_path / "in.jsonl")], capsys)
    rows = [json.loads(l) for l in out.splitlines()]
    assert code == 0 and len(rows) == 2 and set(rows[0]) == {"text", "value"}


def test_read_inputs_formats(tmp_path):
    from kdexam.tasks import Task

    tag, pair = Task("token-classification", ["A", "B"]), Task("classification", ["x", "y"], text_pair=True)
    (tmp_path / "a.jsonl").write_text('{"tokens": ["a", "b"]}\n{"text": "c d e"}\n', encoding="utf-8")
    assert read_inputs(tmp_path / "a.jsonl", tag) == [{"tokens": ["a", "b"]}, {"tokens": ["c", "d", "e"]}]
    (tmp_path / "a.txt").write_text("one two\n three \n", encoding="utf-8")
    assert read_inputs(tmp_path / "a.txt", tag) == [{"tokens": ["one", "two"]}, {"tokens": ["three"]}]
    (tmp_path / "b.json").write_text('[{"text": "a", "text_pair": "b"}]', encoding="utf-8")
    assert read_inputs(tmp_path / "b.json", pair) == [{"text": "a", "text_pair": "b"}]
    (tmp_path / "noext").write_text('{"text": "a", "text_pair": "b"}\n', encoding="utf-8")
    assert read_inputs(tmp_path / "noext", pair) == [{"text": "a", "text_pair": "b"}]
    (tmp_path / "t.tsv").write_text("w1\tA\nw2\tB\n\nw3\tA\n", encoding="utf-8")
    assert read_inputs(tmp_path / "t.tsv", tag) == [{"tokens": ["w1", "w2"]}, {"tokens": ["w3"]}]


def test_a_table_row_with_a_field_too_many_is_refused_and_quoted_tsv_fields_are_kept(tmp_path):
    """predict's table reader dropped a row's fields beyond the header: 'great, really great,positive'
    under 'text,label' predicted on 'great' alone. A TSV whose quoted fields held a tab and a line
    break (valid quoting) was read again without quoting, and its two rows became three texts."""
    from kdexam.tasks import Task

    cls = Task("classification", ["negative", "positive"])
    (tmp_path / "more.csv").write_text("text,label\ngreat, really great,positive\n", encoding="utf-8")
    with pytest.raises(KdexamError, match="line 2 has more fields than the header; quote fields that contain a comma"):
        read_inputs(tmp_path / "more.csv", cls)
    (tmp_path / "quoted.tsv").write_text('text\tlabel\n"quoted\ttab"\tpositive\n"multi\nline"\tnegative\n', encoding="utf-8")
    assert read_inputs(tmp_path / "quoted.tsv", cls) == [{"text": "quoted\ttab"}, {"text": "multi\nline"}]
    # a stray quote (its match rows later) is still read line by line, the quote kept as text
    (tmp_path / "stray.tsv").write_text('text\n"Wow she said\nfine film\nbad" ending\n', encoding="utf-8")
    assert read_inputs(tmp_path / "stray.tsv", cls) == [{"text": '"Wow she said'}, {"text": "fine film"}, {"text": 'bad" ending'}]


def test_predict_file_errors(exported, tmp_path, capsys):
    cls, tag, pair = str(exported["cls"]), str(exported["tag"]), str(exported["pair"])
    (tmp_path / "a.csv").write_text("body\nfine\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\nnot json\n', encoding="utf-8")
    (tmp_path / "notext.jsonl").write_text('{"body": "a"}\n', encoding="utf-8")
    (tmp_path / "one.txt").write_text("no tab here\n", encoding="utf-8")
    (tmp_path / "w.conll").write_text("a\tX\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "a.xlsx").write_bytes(b"x")
    (tmp_path / "half.jsonl").write_text('{"text": "bad \\ud83d film"}\n', encoding="utf-8")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    cases = [
        ([cls, "--input", str(tmp_path / "missing.txt")], "does not exist"),
        ([cls, "--input", str(tmp_path / "a.csv")], "has no column 'text' in its header row (it has: body)"),
        ([cls, "--input", str(tmp_path / "a.xlsx")], "unknown extension"),
        ([cls, "--input", str(tmp_path / "empty.txt")], "holds no inputs"),
        ([cls, "--input", str(tmp_path / "bad.jsonl")], "line 2 is not valid JSON"),
        ([cls, "--input", str(tmp_path / "notext.jsonl")], "line 1 has no 'text' field"),
        ([pair, "--input", str(tmp_path / "one.txt")], "line 1 is not 'text<TAB>text_pair'"),
        ([cls, "--input", str(tmp_path / "w.conll")], "is CoNLL but the model does classification"),
        ([cls, "--input", str(tmp_path / "latin1.txt")], "not valid UTF-8"),
        ([str(tmp_path), "--input", str(tmp_path / "a.csv")], "holds no model"),
        ([tag, "--input", str(tmp_path / "one.txt"), "--backend", "gpu"], "Unknown backend"),
        ([cls, "--input", str(tmp_path / "half.jsonl")], "line 1 is not valid Unicode (a lone surrogate"),
        ([cls, "--input", str(tmp_path / "one.txt"), "--output", str(tmp_path / "file" / "out.jsonl")], "Cannot write"),
        ([cls, "--input", str(tmp_path / "one.txt"), "--backend", "pytorch", "--quantized"], "int8 model is an ONNX export"),
        # a label column read into the pair, a header read as a pair, a row without its text dropped (outputs misaligned)
        ([pair, "--input", str(tmp_path / "three.txt")], "line 1 is not 'text<TAB>text_pair' (one tab)"),
        ([pair, "--input", str(tmp_path / "glue.tsv")], "has the header row sentence1, sentence2; name its input columns"),
        ([pair, "--input", str(tmp_path / "labelled.tsv")], "line 1 is not 'text<TAB>text_pair' (one tab)"),
        ([cls, "--input", str(tmp_path / "gap.csv")], "line 3"),
    ]
    (tmp_path / "three.txt").write_text("good film\tbad plot\tdiff\n", encoding="utf-8")
    from kdexam.tasks import Task

    pairs = Task("classification", ["a", "b"], text_pair=True)  # still read: an empty trailing column, a first text 'Query'
    (tmp_path / "trailing.tsv").write_text("Query\tthe passage\t\nb\tc\n", encoding="utf-8")
    assert read_inputs(tmp_path / "trailing.tsv", pairs) == [{"text": "Query", "text_pair": "the passage"},
                                                             {"text": "b", "text_pair": "c"}]
    (tmp_path / "glue.tsv").write_text("sentence1\tsentence2\ngood film\tbad plot\n", encoding="utf-8")
    (tmp_path / "labelled.tsv").write_text("good film\tbad plot\tdiff\n", encoding="utf-8")
    (tmp_path / "gap.csv").write_text("text,label\ngood film,pos\n,neg\n\nbad film,neg\n", encoding="utf-8")
    for argv, message in cases:
        code, _, err = _run_cli(["predict", *argv], capsys)
        assert code == 2 and message in " ".join(err.split()), (argv, err)


def test_import_kdexam_is_light_and_load_student_is_exported(exported):
    code = "import sys, kdexam; assert 'torch' not in sys.modules and 'transformers' not in sys.modules; print(kdexam.__all__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "load_student" in done.stdout
    import kdexam
    from kdexam import api

    from kdexam.inference.serving import ServingPredictor

    assert isinstance(kdexam.load_student(exported["cls"]), ServingPredictor)  # a current export: torch-free
    assert isinstance(api.load_student(exported["cls"], backend="pytorch"), Predictor)


@pytest.mark.parametrize("task_name", ["cls", "reg", "tag"])
def test_fine_tuned_hf_directory_without_task_json(task_name, runs, tmp_path):
    """A fine-tuned Hugging Face model directory (no kdexam files) predicts from its config's head."""
    d = shutil.copytree(runs.teacher(task_name), tmp_path / "hf")
    for f in ("task.json", "config.yaml", "metrics.json"):
        (d / f).unlink()
    p = load_student(d)
    assert p.task.kind == load_student(runs.teacher(task_name)).task.kind and p.max_length == 128
    assert p.task.labels == load_student(runs.teacher(task_name)).task.labels
    assert len(p.predict(INPUTS[task_name][:2])) == 2


def test_predict_reads_tables_conllu_and_unicode_line_ends(exported, tmp_path, capsys):
    """A labelled table predicts from its text column only (the label never joins the text), CoNLL-U
    from its FORM column, and a U+2028 inside a line does not split it."""
    cls, tag = str(exported["cls"]), str(exported["tag"])
    (tmp_path / "gold.tsv").write_text("text\tlabel\nthe plot was thin\tnegative\nlovely film\tpositive\n", encoding="utf-8")
    (tmp_path / "gold.csv").write_text('id,text\n1,"the plot, and\nthe film"\n', encoding="utf-8")
    (tmp_path / "u.txt").write_text("first review\u2028continues\nsecond\x0creview\nthird\n", encoding="utf-8")
    code, out, _ = _run_cli(["predict", cls, "--input", str(tmp_path / "gold.tsv")], capsys)
    rows = [json.loads(l) for l in out.splitlines()]
    assert code == 0 and [r["text"] for r in rows] == ["the plot was thin", "lovely film"]
    want = load_student(exported["cls"], backend="pytorch").predict(["the plot was thin", "lovely film"])
    assert [r["scores"]["pos"] for r in rows] == pytest.approx([w["scores"]["pos"] for w in want], abs=1e-5)
    code, out, _ = _run_cli(["predict", cls, "--input", str(tmp_path / "gold.csv")], capsys)
    assert code == 0 and [json.loads(l)["text"] for l in out.splitlines()] == ["the plot, and\nthe film"]
    code, out, _ = _run_cli(["predict", cls, "--input", str(tmp_path / "u.txt")], capsys)
    assert code == 0 and [json.loads(l)["text"] for l in out.strip().split("\n")] == [  # (JSON keeps U+2028 raw)
        "first review\u2028continues", "second\x0creview", "third"]
    (tmp_path / "s.conllu").write_text("# text = the films\n1-2\tthe films\t_\n1\tthe\tthe\tDET\n2\tfilms\tfilm\tNOUN\n"
                                       "2.1\tgood\tgood\tADJ\n\n1\tok\tok\tADJ\n", encoding="utf-8")
    assert read_inputs(tmp_path / "s.conllu", load_student(tag).task) == [{"tokens": ["the", "films"]}, {"tokens": ["ok"]}]
    (tmp_path / "noext").write_text("[Spoiler] good film\n", encoding="utf-8")
    assert read_inputs(tmp_path / "noext", load_student(cls).task) == [{"text": "[Spoiler] good film"}]


def test_truncated_means_cut_at_max_length_on_both_backends(exported):
    """A word that tokenizes to nothing (U+200B) is not truncation; a sentence longer than the run's
    ``max_length`` is, and both backends say the same."""
    pt = load_student(exported["tag"], backend="pytorch")
    ox = load_student(exported["tag"], backend="onnx")
    items = [["film", "\u200b", "good"], ["film", "good", "\u200b"], ["w"] * 200]
    got = [p.predict(items) for p in (pt, ox)]
    assert [[r.get("truncated", False) for r in g] for g in got] == [[False, False, True]] * 2


def test_auto_backend_skips_an_export_whose_parity_failed(exported, tmp_path):
    from kdexam.inference.serving import ServingPredictor

    run = shutil.copytree(exported["cls"], tmp_path / "run")
    assert isinstance(load_student(run), ServingPredictor)
    record = json.loads((run / "onnx" / "export.json").read_text())
    (run / "onnx" / "export.json").write_text(json.dumps(dict(record, parity_ok=False)))
    assert isinstance(load_student(run), Predictor)
    assert isinstance(load_student(run, backend="onnx"), ServingPredictor)  # asked for by name: still served


@pytest.mark.parametrize("missing", ["tokenizer.json", "tokenizer_config.json"])
def test_a_student_run_without_its_tokenizer_files_is_a_sentence(missing, runs, tmp_path, capsys):
    """transformers builds an empty tokenizer ([UNK] for every word) from a folder without tokenizer.json,
    and one without a pad token from a folder without tokenizer_config.json: both predicted garbage with
    exit 0 before; now the run is refused by name."""
    d = shutil.copytree(runs.student("cnn", "cls"), tmp_path / "run")
    (d / missing).unlink()
    (tmp_path / "in.txt").write_text("a fine film\n", encoding="utf-8")
    code, out, err = _run_cli(["predict", str(d), "--input", str(tmp_path / "in.txt")], capsys)
    assert code == 2 and out == ""
    assert f"lacks {missing}" in err and "not saved completely" in err and "Traceback" not in err


def test_a_teacher_run_that_lost_its_config_json_is_said_so(runs, tmp_path, capsys):
    """It said "holds no model (no student.json, task.json or export.json)" beside its task.json."""
    d = shutil.copytree(runs.teacher("cls"), tmp_path / "teacher")
    (d / "config.json").unlink()
    (tmp_path / "in.txt").write_text("a fine film\n", encoding="utf-8")
    code, out, err = _run_cli(["predict", str(d), "--input", str(tmp_path / "in.txt")], capsys)
    assert code == 2 and "looks like a teacher run without its config.json" in " ".join(err.split()), err
