"""Bad input ends a command with exit code 2 and one sentence, no traceback."""

import json
import os
import subprocess
import sys

import pytest

from conftest import write_jsonl
from kdexam.cli import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err


def one_sentence_error(err: str) -> str:
    """The error sentence at the end of stderr (progress lines may come before it)."""
    assert "Traceback" not in err, err
    assert err.count("error:") == 1, err
    text = " ".join(err[err.index("error:"):].split())
    assert text[-1] in ".?)", text  # one sentence, ended
    return text


@pytest.fixture()
def files(tmp_path, sentiment_dir):
    (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9,pos\nbad,neg\n".encode("latin-1"))
    (tmp_path / "cols.csv").write_text("sentence,label\ngood,pos\nbad,neg\n")
    (tmp_path / "empty.csv").write_text("text,label\ngood,pos\n,neg\n")
    (tmp_path / "typo.yaml").write_text("train:\n  epoch: 2\n")
    unseen = tmp_path / "unseen"
    unseen.mkdir()
    write_jsonl(unseen / "train.jsonl", [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}] * 10)
    write_jsonl(unseen / "test.jsonl", [{"text": "meh", "label": "neutral"}])
    return tmp_path


CASES = {
    "missing file": (["--data", "{d}/nope.csv"], "does not exist"),
    "unknown column": (["--data", "{d}/cols.csv"], "no column 'text'"),
    "empty text": (["--data", "{d}/empty.csv"], "empty text"),
    "bad encoding": (["--data", "{d}/latin.csv"], "not valid UTF-8"),
    "label mismatch": (["--data", "{d}/unseen"], "never in train"),
    "config typo": (["--data", "{d}/cols.csv", "--config", "{d}/typo.yaml"], "did you mean 'train.epochs'"),
    "wrong task": (["--data", "{d}/sentiment", "--task", "token-classification"], "not in CoNLL form"),
    "bad task name": (["--data", "{d}/sentiment", "--task", "tagging"], "data.task"),
    "unknown dataset": (["--data", "movie-sentimnt"], "did you mean 'movie-sentiment'"),
    "missing model dir": (["--data", "{d}/sentiment", "--model", "{d}/no-model"], "no-model"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_a_sentence(case, files, capsys):
    args, match = CASES[case]
    args = [a.format(d=files) for a in args]
    code, _, err = run_cli(["teacher", *args, "--out", files / "run"], capsys)
    assert code == 2, err
    assert match in one_sentence_error(err)


def test_brackets_in_an_error_are_printed(files, capsys):
    """The sentence went through Rich markup: '[draft]' in a path, or the '[teacher_layer,
    student_layer]' of a fix, vanished as an unknown tag."""
    code, _, err = run_cli(["teacher", "--data", files / "[draft]" / "nope.csv", "--out", files / "run"], capsys)
    assert code == 2 and "[draft]/nope.csv" in one_sentence_error(err)


def test_missing_out(files, capsys):
    code, _, err = run_cli(["teacher", "--data", files / "sentiment"], capsys)
    assert code == 2 and "--out" in one_sentence_error(err)


def test_unknown_builtin_names(capsys):
    code, _, err = run_cli(["data", "prepare", "trec7"], capsys)
    assert code == 2 and "trec6" in one_sentence_error(err)
    code, _, err = run_cli(["models", "prepare", "minilm"], capsys)
    assert code == 2 and "minilm-l6" in one_sentence_error(err)


def test_unknown_flag_is_a_usage_error(capsys):
    code, _, err = run_cli(["teacher", "--epoch", "3"], capsys)
    assert code == 2 and "No such option" in err


def test_debug_shows_the_traceback(files):
    env = dict(os.environ, KDEXAM_HOME=str(files / "home"))
    cmd = [sys.executable, "-m", "kdexam", "teacher", "--data", str(files / "nope.csv"), "--out", str(files / "r")]
    plain = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and "does not exist" in plain.stderr
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "KdexamError" in debug.stderr


def test_nothing_written_on_bad_input(files, capsys):
    code, _, err = run_cli(["teacher", "--data", files / "cols.csv", "--out", files / "run"], capsys)
    assert code == 2 and one_sentence_error(err)
    assert not (files / "run").exists()


def test_teacher_cli_runs(tiny_bert_dir, sentiment_dir, tmp_path, capsys):
    code, out, _ = run_cli(["teacher", "--data", sentiment_dir, "--model", tiny_bert_dir, "--out", tmp_path / "run",
                            "--epochs", "1", "--max-train", "32", "--seed", "7"], capsys)
    assert code == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    accuracy = m["teacher"]["metrics"]["accuracy"]
    assert f"{accuracy:.4f}" in out  # the printed table shows the stored score
    from kdexam import api

    assert api.evaluate(tmp_path / "run")["teacher"]["metrics"]["accuracy"] == pytest.approx(accuracy)  # scored again from disk
    assert "seed: 7" in (tmp_path / "run" / "config.yaml").read_text()


def test_a_regression_runs_loyalty_columns_are_named_as_regression_loyalty():
    """The console table put regression loyalty under "label loyalty" and left Pearson's r out."""
    from rich.console import Console

    from kdexam.cli import _scores_table

    def shown(loyalty):
        console = Console(record=True, width=200)
        console.print(_scores_table([("student", {"params": 10, "metrics": {"pearson": 0.5}, "loyalty": loyalty})],
                                    ["pearson"], "t"))
        return console.export_text()

    text = shown({"regression": 0.91, "pearson": 0.87})
    assert "label loyalty" not in text and "loyalty r" in text and "0.9100" in text and "0.8700" in text
    text = shown({"label": 0.93, "probability": 0.95})
    assert "label loyalty" in text and "prob. loyalty" in text and "0.9300" in text and "0.9500" in text


def test_a_folder_given_as_input_or_a_general_encoder_given_as_model_is_said_as_such(tmp_path):
    from kdexam.errors import KdexamError
    from kdexam.inference.inputs import read_inputs
    from kdexam.inference.predictor import model_role
    from kdexam.tasks import Task

    with pytest.raises(KdexamError, match="is a directory; pass one file of texts to --input"):
        read_inputs(tmp_path, Task("classification", ["a", "b"], False, "accuracy", ""))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "encoder.json").write_text("{}")
    with pytest.raises(KdexamError, match=r"is a general encoder .* with --init-from"):
        model_role(tmp_path)


def _metrics_dir(path, student: dict, task="regression", metric="pearson"):
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({"task": task, "split": "test", "primary_metric": metric,
                                                   "teacher": {"name": "t", "params": 100, "metrics": {metric: 0.9}},
                                                   "student": {"name": "s", "params": 10, **student}, "retention": 0.9}))
    return path


def test_report_shows_regression_loyalty_under_its_own_name_and_refuses_figures_of_the_wrong_type(tmp_path, capsys):
    """An audit (2026-12-04): `kdexam report` put a regression run's loyalty under "label loyalty"
    and left its r out; a metrics.json with a null parameter count or a metric as a string was a
    traceback (exit 1) instead of the sentence."""
    from kdexam import api

    reg = _metrics_dir(tmp_path / "reg", {"metrics": {"pearson": 0.81}, "loyalty": {"regression": 0.827, "pearson": 0.453}})
    row = api.compare_runs([reg])[0]
    assert (row["label_loyalty"], row["regression_loyalty"], row["loyalty_pearson"]) == (None, 0.827, 0.453)
    with pytest.raises(SystemExit) as e:
        main(["report", str(reg)])
    text = capsys.readouterr().out
    assert e.value.code == 0
    assert "label loyalty" not in text and "loyalty r" in text and "0.827" in text and "0.453" in text
    for name, student in (("params", {"params": None, "metrics": {"pearson": 0.8}}), ("string", {"metrics": {"pearson": "0.5"}}),
                          ("loyalty", {"metrics": {"pearson": 0.8}, "loyalty": {"regression": [1]}})):
        bad = _metrics_dir(tmp_path / name, student)
        with pytest.raises(SystemExit) as e:
            main(["report", str(bad)])
        assert e.value.code == 2 and "is not a valid kdexam metrics file" in capsys.readouterr().err
