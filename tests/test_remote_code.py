"""Models that bring their own Python code (``auto_map`` in config.json) run it only when asked:
``--trust-remote-code`` (issue 15). Without it, one sentence that names the flag."""

import json

import pytest

from conftest import build_tokenizer, write_sentiment_splits
from kdexam import api
from kdexam.errors import KdexamError

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG_CODE = '''from transformers import BertConfig


class ToyConfig(BertConfig):
    model_type = "toybert"
'''
MODEL_CODE = '''from transformers import BertForSequenceClassification, BertModel

from .configuration_toy import ToyConfig


class ToyModel(BertModel):
    config_class = ToyConfig


class ToyForSequenceClassification(BertForSequenceClassification):
    config_class = ToyConfig
'''


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory):
    """A tiny BERT whose config names its own configuration and model classes (as hub repos with custom code do)."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    d = tmp_path_factory.mktemp("toy-custom-code")
    (d / "configuration_toy.py").write_text(CONFIG_CODE)
    (d / "modeling_toy.py").write_text(MODEL_CODE)
    tok = build_tokenizer()
    tok.save_pretrained(d)
    shape = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64)
    auto = {"AutoConfig": "configuration_toy.ToyConfig", "AutoModel": "modeling_toy.ToyModel",
            "AutoModelForSequenceClassification": "modeling_toy.ToyForSequenceClassification"}
    config = get_class_from_dynamic_module("configuration_toy.ToyConfig", str(d))(**shape)
    get_class_from_dynamic_module("modeling_toy.ToyModel", str(d))(config).save_pretrained(d)
    (d / "config.json").write_text(json.dumps({**json.loads((d / "config.json").read_text()), "auto_map": auto}))
    return d


def test_custom_code_is_refused_unless_trusted(custom_model, tmp_path):
    data = write_sentiment_splits(tmp_path / "data")
    with pytest.raises(KdexamError, match="come with their own Python code.*--trust-remote-code"):
        api.finetune_teacher(data=data, model=custom_model, out=tmp_path / "refused", epochs=1)
    # reviewed: the trusted code is the two files this test wrote itself, in its own temporary folder
    r = api.finetune_teacher(data=data, model=custom_model, out=tmp_path / "t", epochs=1, trust_remote_code=True)  # reviewed
    assert r["teacher"]["params"] > 0
    assert (tmp_path / "t" / "modeling_toy.py").is_file(), "the run keeps the model's code beside its weights"
    with pytest.raises(KdexamError, match="--trust-remote-code"):
        api.distill(teacher=tmp_path / "t", data=data, student="cnn", out=tmp_path / "s0", epochs=1)
    s = api.distill(teacher=tmp_path / "t", data=data, student="cnn", out=tmp_path / "s", epochs=1, trust_remote_code=True)  # reviewed
    assert s["student"]["params"] > 0


def test_cli_flag_and_refusal_sentence(custom_model, tmp_path, capsys):
    from test_cli import one_sentence_error, run_cli

    data = write_sentiment_splits(tmp_path / "data")
    code, _, err = run_cli(["teacher", "--data", data, "--model", custom_model, "--out", tmp_path / "t", "--epochs", "1"], capsys)
    assert code == 2 and "pass --trust-remote-code" in one_sentence_error(err)
    code, _, err = run_cli(["teacher", "--data", data, "--model", custom_model, "--out", tmp_path / "t", "--epochs", "1",
                            "--trust-remote-code"], capsys)
    assert code == 0, err
    assert "trust_remote_code: true" in (tmp_path / "t" / "config.yaml").read_text()


def test_serving_commands_take_the_flag_too(custom_model, tmp_path, capsys):
    """evaluate, predict, export and bench load the run's model as distill does: refused with one
    sentence unless trusted; trusted, they run (bench's fresh peak-memory process too)."""
    from test_cli import one_sentence_error, run_cli

    data = write_sentiment_splits(tmp_path / "data", 60, 20, 20)
    t = tmp_path / "t"
    api.finetune_teacher(data=data, model=custom_model, out=t, epochs=1, trust_remote_code=True)  # reviewed: the test's own code
    with pytest.raises(KdexamError, match="--trust-remote-code"):
        api.evaluate(t)
    assert api.evaluate(t, trust_remote_code=True)["teacher"]["metrics"]["accuracy"] > 0  # reviewed
    texts = tmp_path / "in.txt"
    texts.write_text("a good film\na dull film\n", encoding="utf-8")
    with pytest.raises(KdexamError, match="--trust-remote-code"):
        api.predict(t, texts, backend="pytorch")
    records = api.predict(t, texts, backend="pytorch", trust_remote_code=True)  # reviewed
    assert [r["label"] for r in records] == [r["label"] for r in api.load_student(t, backend="pytorch", trust_remote_code=True)  # reviewed
                                             .predict(["a good film", "a dull film"])]
    code, _, err = run_cli(["export", t, "--max-examples", "8"], capsys)
    assert code == 2 and "pass --trust-remote-code" in one_sentence_error(err)
    code, _, err = run_cli(["export", t, "--max-examples", "8", "--trust-remote-code"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["bench", t, "--n-texts", "4", "--batch-sizes", "1", "--repeats", "2", "--warmup", "0", "--no-onnx",
                            "--no-save", "--out", tmp_path / "bench.json", "--trust-remote-code"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["models"][0]["peak_rss_mb"]["pytorch"]["peak_mb"] > 0, "the fresh process loaded the trusted model"


def test_exam_takes_the_flag_for_every_teacher_cell_and_measurement(custom_model, tmp_path, capsys):
    """An exam whose teacher brings its own code: every cell fails with the sentence unless trusted;
    ``kdexam exam --trust-remote-code`` (or ``trust_remote_code: true`` in the exam) runs the teacher's
    fine-tuning, the cells and the cost measurements, a given teacher run (``run:``) included."""
    import yaml

    from test_cli import run_cli

    data = write_sentiment_splits(tmp_path / "data", 60, 20, 20)
    student = {"kind": "cnn", "embedding_dim": 8, "epochs": 1}
    bench = {"n_texts": 4, "batch_sizes": [1], "repeats": 2, "warmup": 0, "onnx": False, "rss": False}

    def exam(name, teacher, **extra):
        cfg = {"name": name, "datasets": [{"name": str(data)}], "teachers": [teacher], "students": [student],
               "control": False, "train": {"num_threads": 1}, "bench": bench, **extra}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
        return tmp_path / f"{name}.yaml"

    fine_tuned = exam("fine-tuned", {"model": str(custom_model), "name": "toy", "epochs": 1})
    r = api.exam(str(fine_tuned), out=tmp_path / "refused")
    assert r["run"] == {**r["run"], "done": 0, "failed": 2}
    teacher_error, cell_error = sorted((f["error"] for f in r["summary"]["failed"]), key=lambda e: e.startswith("its"))
    assert "pass --trust-remote-code" in teacher_error and cell_error.startswith("its teacher toy"), (teacher_error, cell_error)

    code, _, err = run_cli(["exam", fine_tuned, "--out", tmp_path / "trusted", "--trust-remote-code"], capsys)  # reviewed: the test's own code
    assert code == 0, err
    teacher_run = next((tmp_path / "trusted" / "teachers").iterdir())
    assert (teacher_run / "modeling_toy.py").is_file()

    given = {"run": str(teacher_run), "name": "toy-run"}
    r = api.exam(str(exam("given", given)), out=tmp_path / "given-refused")
    assert r["run"]["failed"] == 2 and any("pass --trust-remote-code" in f["error"] for f in r["summary"]["failed"])
    r = api.exam(str(exam("given-trusted", given, trust_remote_code=True)), out=tmp_path / "given")  # reviewed
    assert r["run"] == {**r["run"], "done": 2, "failed": 0}
    assert r["summary"]["datasets"], "the student was scored and measured against its custom-code teacher"
