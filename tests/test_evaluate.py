"""``kdexam evaluate``: a saved run scored on another split, dataset or held-out file, through
the same scoring ``distill`` (and so every exam cell) uses; and the model card of every run."""

import json
import shutil

import pytest
import yaml

from conftest import sentiment_examples, write_jsonl, write_sentiment_splits
from kdexam import api
from kdexam.cli import main
from kdexam.errors import KdexamError
from kdexam.evaluation.results import ModelResult, RunResult, read_result, retention, retention_note
from run_factory import runs  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, tiny_bert_dir):
    """A tiny teacher fine-tuned on the synthetic sentiment data and a CNN distilled from it."""
    root = tmp_path_factory.mktemp("evaluate")
    data = write_sentiment_splits(root / "data")
    api.finetune_teacher(data=data, model=tiny_bert_dir, out=root / "teacher", epochs=6, learning_rate=1e-3, batch_size=16,
                         patience=10)
    api.distill(teacher=root / "teacher", student="cnn", out=root / "cnn", epochs=3, batch_size=16)
    return root


def test_evaluate_reproduces_the_runs_own_scores(distilled):
    """Scoring the saved student on its test split gives exactly what distill wrote: same code, same numbers."""
    stored = json.loads((distilled / "cnn" / "metrics.json").read_text())
    r = api.evaluate(distilled / "cnn")
    assert (r["dataset"], r["split"], r["evaluated"]["examples"]) == ("data", "test", 40)
    assert r["student"]["metrics"] == pytest.approx(stored["student"]["metrics"])
    assert r["student"]["loyalty"] == pytest.approx(stored["student"]["loyalty"])
    assert r["teacher"]["metrics"] == pytest.approx(stored["teacher"]["metrics"])
    assert r["retention"] == pytest.approx(stored["retention"])
    assert r["compression"] == pytest.approx(stored["compression"])
    teacher = api.evaluate(distilled / "teacher")
    assert "student" not in teacher and "retention" not in teacher
    assert teacher["teacher"]["metrics"] == pytest.approx(json.loads((distilled / "teacher" / "metrics.json").read_text())["teacher"]["metrics"])


def test_another_split_and_a_held_out_file(distilled, tmp_path):
    val = api.evaluate(distilled / "cnn", split="validation", max_eval=25)
    assert (val["split"], val["evaluated"]["examples"]) == ("validation", 25)
    rows = sentiment_examples(30, seed=9)
    rows[0]["label"] = "neg" if rows[0]["label"] == "pos" else "pos"  # one wrong label: accuracy is not 1 by construction
    held = write_jsonl(tmp_path / "held-out.jsonl", rows)
    r = api.evaluate(distilled / "cnn", data=str(held), out=tmp_path / "eval.json")
    assert (r["dataset"], r["split"], r["evaluated"]["examples"]) == ("held-out", "held-out.jsonl", 30)
    preds = api.load_student(distilled / "cnn", backend="pytorch").predict([x["text"] for x in rows])
    expected = sum(p["label"] == x["label"] for p, x in zip(preds, rows)) / len(rows)
    assert r["student"]["metrics"]["accuracy"] == pytest.approx(expected)
    teacher_preds = api.load_student(distilled / "teacher", backend="pytorch").predict([x["text"] for x in rows])
    agree = sum(p["label"] == t["label"] for p, t in zip(preds, teacher_preds)) / len(rows)
    assert r["student"]["loyalty"]["label"] == pytest.approx(agree)
    assert json.loads((tmp_path / "eval.json").read_text())["student"]["metrics"] == r["student"]["metrics"]


def test_teacher_not_at_hand_and_given(distilled, tmp_path):
    run = tmp_path / "cnn"
    shutil.copytree(distilled / "cnn", run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["teacher"] = str(tmp_path / "gone")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = api.evaluate(run, data=str(distilled / "data"))
    assert "loyalty" not in r["student"] and "retention" not in r
    assert any("not at hand" in n for n in r["notes"])
    with_teacher = api.evaluate(run, data=str(distilled / "data"), teacher=distilled / "teacher")
    assert with_teacher["student"]["metrics"] == r["student"]["metrics"]
    assert with_teacher["retention"] == pytest.approx(json.loads((distilled / "cnn" / "metrics.json").read_text())["retention"])


@pytest.mark.parametrize("task_name", ["tag", "reg", "pair"])
def test_every_task_kind_scores_with_loyalty(runs, task_name):  # noqa: F811
    kind = "cnn" if task_name != "pair" else "bilstm"
    r = api.evaluate(runs.student(kind, task_name), split="validation")
    pm = r["primary_metric"]
    assert pm in r["student"]["metrics"] and pm in r["teacher"]["metrics"]
    assert set(r["student"]["loyalty"]) >= ({"pearson"} if task_name == "reg" else {"label", "probability"})
    assert r["evaluated"]["examples"] == 12 + (task_name == "tag")


def test_undefined_retention_is_none_with_a_note(runs, tmp_path):  # noqa: F811
    """One example has a constant gold score: both Pearson r are undefined (NaN; they were reported
    as 0.0), so no retention, and notes say why. A constant teacher (Pearson r 0) leaves the ratio
    undefined too: no retention, a note, no ZeroDivisionError."""
    import math

    r = api.evaluate(runs.student("cnn", "reg"), split="validation", max_eval=1, out=tmp_path / "one" / "metrics.json")
    assert math.isnan(r["teacher"]["metrics"]["pearson"]) and math.isnan(r["student"]["metrics"]["pearson"])

    def strict(constant):
        raise AssertionError(f"{constant} is not JSON")

    written = json.loads((tmp_path / "one" / "metrics.json").read_text(encoding="utf-8"), parse_constant=strict)  # was a bare NaN
    assert written["teacher"]["metrics"]["pearson"] is None and written["student"]["metrics"]["spearman"] is None
    assert read_result(tmp_path / "one").score is None  # (null reads back as no score)
    assert "retention" not in r
    assert any(n.startswith("no retention: the ratio of the student's pearson") for n in r["notes"])
    assert any("undefined (NaN)" in n for n in r["notes"])
    assert api.evaluate(runs.student("cnn", "reg"), split="train", max_eval=1)["evaluated"]["examples"] == 1
    r = RunResult(ModelResult("t", 1, {"pearson": 0.0}), ModelResult("s", 1, {"pearson": 0.3}), primary_metric="pearson")
    r.retention = retention(0.3, 0.0)
    assert r.retention is None
    assert retention_note(r) == ["no retention: the ratio of the student's pearson (0.3) to the teacher's (0) is undefined"]


def test_retention_is_the_ratio_or_none_where_it_means_nothing():
    assert retention(0.8, 0.9) == pytest.approx(0.8 / 0.9)
    assert retention(0.5, 0.25, greater_is_better=False) == pytest.approx(0.5)  # mse: teacher / student
    assert retention(0.5, 0.0) is None and retention(0.5, -0.2) is None
    assert retention(0.0, 0.25, greater_is_better=False) is None
    assert retention(float("nan"), 0.9) is None


def test_a_held_out_file_is_scored_by_the_runs_own_metric(distilled, tmp_path):
    """An audit (2026-12-04): a held-out file was scored by the task's default metric (accuracy for a
    run whose primary metric is macro-F1), and a primary metric of another task was a KeyError."""
    run = shutil.copytree(distilled / "cnn", tmp_path / "cnn")
    spec = json.loads((run / "student.json").read_text())
    spec["task"]["primary_metric"] = "macro_f1"  # as a run trained with data.primary_metric=macro_f1 records it
    (run / "student.json").write_text(json.dumps(spec))
    held = write_jsonl(tmp_path / "held-out.jsonl", sentiment_examples(30, seed=9))
    r = api.evaluate(run, data=str(held))
    assert r["primary_metric"] == "macro_f1"
    assert r["retention"] == pytest.approx(r["student"]["metrics"]["macro_f1"] / r["teacher"]["metrics"]["macro_f1"])
    assert api.evaluate(run, data=str(held), primary_metric="accuracy")["primary_metric"] == "accuracy"  # given: it wins
    for metric in ("span_f1", "mse", "bogus"):
        with pytest.raises(KdexamError, match=f"Primary metric '{metric}' does not exist for classification; choose one of"):
            api.evaluate(run, data=str(held), primary_metric=metric)


def test_bad_input_is_a_sentence(distilled, tmp_path, capsys):
    with pytest.raises(KdexamError, match="Split 'dev'"):
        api.evaluate(distilled / "cnn", split="dev")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a fine film", "label": "neutral"}, {"text": "dull", "label": "neg"}])
    with pytest.raises(KdexamError, match=r"Labels \['neutral'\].*unknown"):
        api.evaluate(distilled / "cnn", data=str(bad))
    unlabelled = write_jsonl(tmp_path / "u.jsonl", [{"text": "a fine film"}])
    with pytest.raises(KdexamError, match="no labels"):
        api.evaluate(distilled / "cnn", data=str(unlabelled))
    with pytest.raises(KdexamError, match="is a file of the run or model folder"):
        api.evaluate(distilled / "cnn", out=distilled / "cnn" / "metrics.json")
    (tmp_path / "texts.txt").write_text("terrible acting\na fine film\n", encoding="utf-8")  # read as CoNLL: said so
    with pytest.raises(KdexamError, match=r"line 2 has 3 columns where line 1 has 2; .* A .txt file is read as CoNLL"):
        api.evaluate(distilled / "cnn", data=str(tmp_path / "texts.txt"))
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(tmp_path / "nothing")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_evaluate_cli_prints_the_table(distilled, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(distilled / "cnn"), "--split", "validation", "--out", str(tmp_path / "e.json")])
    assert e.value.code == 0
    printed = capsys.readouterr().out
    stored = json.loads((tmp_path / "e.json").read_text())
    assert "teacher" in printed and "student cnn" in printed and "retention" in printed
    assert f"{stored['student']['metrics']['accuracy']:.4f}" in printed


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_every_run_gets_a_model_card(distilled):
    """distill and teacher write README.md (Hugging Face card: front matter + sections) from their results."""
    stored = json.loads((distilled / "cnn" / "metrics.json").read_text())
    card = (distilled / "cnn" / "README.md").read_text()
    front = _front_matter(card)
    assert front["library_name"] == "kdexam" and front["pipeline_tag"] == "text-classification"
    result = front["model-index"][0]["results"][0]
    assert result["dataset"]["split"] == "test"
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values["accuracy"] == pytest.approx(stored["student"]["metrics"]["accuracy"], abs=5e-5)
    assert f"retention {stored['retention']:.3f}" in card
    assert str(distilled / "teacher") in card and "## Recipe" in card and "## Usage" in card
    for citation in stored["citations"]:
        assert citation.strip() in card
    assert "not measured yet" in card, "no bench has run: the card says so instead of showing a cost"
    teacher_card = (distilled / "teacher" / "README.md").read_text()
    assert _front_matter(teacher_card)["tags"][1] == "teacher" and "## Results" in teacher_card


def test_card_gains_the_cost_once_measured_and_leaves_foreign_cards_alone(distilled, tmp_path):
    from kdexam.evaluation.card import write_card
    from kdexam.evaluation.efficiency import save_efficiency

    run = tmp_path / "cnn"
    shutil.copytree(distilled / "cnn", run)
    e2e = {"p50": 1.25, "p95": 2.5, "mean": 1.3, "std": 0.1}
    row = {"backend": "onnx", "device": "cpu", "batch_size": 1, "e2e_ms": e2e, "e2e_throughput": 800.0, "speedup": 12.5}
    save_efficiency({"settings": {"threads": 2, "cpu": "Test CPU"}, "models": [{
        "run": str(run), "name": "cnn", "role": "student", "latency": [row],
        "disk_bytes": {"safetensors": 2_000_000, "onnx": 1_500_000}, "peak_rss_mb": {"onnx": {"peak_mb": 90.0}}}]})
    card = (run / "README.md").read_text()
    assert "| onnx | cpu | 1 | 1.25 | 2.50 | 800 | 12.5x |" in card
    assert "safetensors 2.0 MB, onnx 1.5 MB" in card and "onnx 90 MB" in card and "not measured yet" not in card
    foreign = "---\nlicense: mit\n---\n# My model\n"
    (run / "README.md").write_text(foreign)
    assert write_card(run) is None and (run / "README.md").read_text() == foreign


def test_card_of_a_pair_model_and_of_a_lower_is_better_metric(runs, tmp_path):  # noqa: F811
    """A pair student's card says so and its usage example runs; with MSE as the primary metric the
    retention is named teacher / student, not '50% of the teacher's'."""
    from kdexam.evaluation.card import render_card

    pair = runs.student("bilstm", "pair")
    card = render_card(pair)
    assert "- Task: classification (text pairs)" in card
    call = next(line for line in card.splitlines() if line.startswith("model.predict("))
    model = api.load_student(pair)
    assert len(eval(call, {"model": model})) == 1  # the card's own example, as written
    d = tmp_path / "mse"
    shutil.copytree(runs.student("bilstm", "reg"), d)
    m = json.loads((d / "metrics.json").read_text())
    m["primary_metric"] = "mse"
    m["teacher"]["metrics"], m["student"]["metrics"] = {"mse": 0.5, "pearson": 0.9}, {"mse": 1.0, "pearson": 0.7}
    m["retention"] = retention(1.0, 0.5, greater_is_better=False)
    (d / "metrics.json").write_text(json.dumps(m))
    card = render_card(d)
    assert "50.0% of the teacher's" not in card and "Retention (teacher / student mse, as lower is better; above 1: better than the teacher): 0.500." in card
    assert "retention 0.500 against the teacher's 0.5000 (teacher / student, as lower mse is better" in card
