"""The exam: grid, store, kill-and-rerun, leaderboard, KD gain and warnings, Pareto, plots,
report (opened in headless Chromium), recommendation and export of the best student."""

import csv
import json
import re
import io
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import write_sentiment_splits
from kdexam import api
from kdexam.config.exam import ExamConfig
from kdexam.errors import KdexamError
from kdexam.exam import leaderboard, load_exam_config
from kdexam.exam.grid import cells, check_cells, teacher_cells
from kdexam.exam.recommend import recommend, within

TEACHER = dict(epochs=8, learning_rate=1e-3, batch_size=16, patience=10, num_threads=1)
CNN = {"kind": "cnn", "embedding_dim": 16, "epochs": 3, "batch_size": 16}
STATIC = {"kind": "static", "embedding_dim": 16, "epochs": 3, "batch_size": 16}


@pytest.fixture(scope="module")
def exam_data(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("exam-data")
    return {"data": write_sentiment_splits(root / "sentiment"), "model": tiny_bert_dir}


def write_exam(path: Path, exam_data, students, **extra) -> Path:
    cfg = {"name": "tiny", "datasets": [{"name": str(exam_data["data"])}],
           "teachers": [{"model": str(exam_data["model"]), "name": "tiny-bert", **TEACHER}],
           "students": students, "train": {"num_threads": 1}, **extra}
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


# --- the grid ------------------------------------------------------------------------------------


def test_grid_filters_controls_and_stable_ids():
    cfg = ExamConfig.model_validate({
        "datasets": ["a", {"name": "b", "max_train": 10}], "students": ["cnn", {"kind": "teacher-layers:2", "name": "tl2"}],
        "recipes": [{"name": "kd"}, {"name": "hidden", "students": ["tl2"], "objective": ["hidden_mse"]}],
        "transfer": [{"name": "none"}, {"name": "unl", "datasets": ["a"], "students": ["cnn"], "unlabelled": "x.txt"}],
        "seeds": [1, 2]})
    ts = teacher_cells(cfg)
    grid = cells(cfg, ts)
    assert [t.dataset for t in ts] == ["a", "b"] and ts[1].flags["max_train"] == 10
    students = [(c.dataset, c.student, c.recipe, c.transfer, c.seed) for c in grid if c.role == "student"]
    # dataset a: cnn kd none/unl, tl2 kd and hidden; dataset b: no unl; each for 2 seeds
    assert len(students) == 2 * (4 + 3)
    assert ("a", "cnn", "kd", "unl", 1) in students and ("b", "cnn", "kd", "unl", 1) not in students
    assert ("a", "tl2", "hidden", "none", 2) in students and ("a", "cnn", "hidden", "none", 2) not in students
    controls = [c for c in grid if c.role == "control"]
    assert len(controls) == 2 * 2 * 2 and all(c.flags["objective"] == ["gold"] for c in controls)
    assert all("unlabelled" not in c.flags for c in controls)
    # ids are stable and depend on content, not position: adding a student adds only its cells
    more = cfg.model_copy(update={"students": [*cfg.students, *ExamConfig.model_validate(
        {"datasets": ["a"], "students": ["bilstm"]}).students]})
    ids = {c.id for c in grid}
    new = {c.id for c in cells(more, teacher_cells(more))}
    assert ids < new and all("bilstm" in i for i in new - ids)


def test_a_datasets_data_settings_reach_its_teacher():
    """A dataset's ``set: {data.primary_metric: macro_f1}`` scores its teacher the same way as its students."""
    cfg = ExamConfig.model_validate({"datasets": [{"name": "a", "set": {"data.primary_metric": "macro_f1", "train.epochs": 1}}],
                                     "students": ["cnn"]})
    ts = teacher_cells(cfg)
    assert ts[0].flags["set"] == {"data.primary_metric": "macro_f1"}
    assert api.teacher_config(out="T", **ts[0].flags).data.primary_metric == "macro_f1"
    assert all(c.flags["set"]["data.primary_metric"] == "macro_f1" for c in cells(cfg, ts))


def test_only_an_unknown_keyword_is_reported_as_an_unknown_key():
    """The exam read the unknown key out of any TypeError's message, so a TypeError of a bug in a
    config build became "an unknown key '...'" with a made-up name. It now takes the names the API's
    UnknownArguments carries, and any other TypeError keeps its traceback."""
    from kdexam.errors import UnknownArguments
    from kdexam.exam.grid import _build

    with pytest.raises(UnknownArguments) as raised:
        api.distill_config(teacher="T", out="O", lr=1e-3, foo=1)
    assert raised.value.names == ["foo", "lr"] and isinstance(raised.value, TypeError)
    with pytest.raises(KdexamError, match=r"^The exam's cell x has an unknown key 'foo'; "):
        _build(lambda: api.distill_config(teacher="T", out="O", foo=1), "cell x")

    def bug():
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
    with pytest.raises(TypeError, match="unsupported operand"):
        _build(bug, "cell x")


def test_an_entry_cannot_set_what_the_exam_gives_each_cell():
    """Entry keys replaced what a cell is without a word: 'student: cnn' in a bilstm entry trained a
    CNN the leaderboard called bilstm, 'data: trec6' in a recipe trained on trec6 a cell reported as
    movie-sentiment, a dataset's teacher 'model' was dropped, 'seed' in an entry was replaced."""
    import pydantic

    base = {"datasets": ["movie-sentiment"], "students": ["bilstm"]}
    for extra, said in [({"students": [{"kind": "bilstm", "student": "cnn"}]}, "students entry 'bilstm' sets 'student'"),
                        ({"recipes": [{"name": "r", "data": "trec6"}]}, "recipes entry 'r' sets 'data'"),
                        ({"teachers": [{"model": "minilm-l6", "data": "trec6"}]}, "teachers entry 'minilm-l6' sets 'data'"),
                        ({"datasets": [{"name": "movie-sentiment", "teacher": {"model": "mpnet-base"}}]},
                         "datasets entry 'movie-sentiment's teacher' sets 'model'"),
                        ({"train": {"seed": 7}}, "train sets 'seed', which the exam gives each cell its seed")]:
        with pytest.raises(pydantic.ValidationError, match=re.escape(said)):
            ExamConfig.model_validate({**base, **extra})
    cfg = ExamConfig.model_validate({**base, "datasets": [{"name": "ms", "data": "movie-sentiment"}]})  # a dataset's path
    assert teacher_cells(cfg)[0].flags["data"] == "movie-sentiment"


def test_a_control_cell_drops_objectives_given_through_set():
    """A student entry's set: {stages: [{objectives: [kl]}]} reached its control cell, which then
    distilled with KL instead of training on gold labels alone."""
    cfg = ExamConfig.model_validate({"datasets": ["a"], "students": [
        {"kind": "cnn", "set": {"stages": [{"objectives": [{"name": "kl"}]}], "objectives": [{"name": "kl"}], "train.epochs": 2}}]})
    student, control = cells(cfg, teacher_cells(cfg))
    assert set(student.flags["set"]) == {"stages", "objectives", "train.epochs"}
    assert control.flags["set"] == {"train.epochs": 2} and control.flags["objective"] == ["gold"]


def test_set_lists_and_mappings_merge_key_by_key():
    """train: {set: [..]} with a student's set: {..} was a TypeError traceback; the other way round
    dropped the train entries."""
    for train_set, student_set in ((["train.warmup_ratio=0.2"], {"train.weight_decay": 0.0}),
                                   ({"train.warmup_ratio": 0.2}, ["train.weight_decay=0.0"])):
        cfg = ExamConfig.model_validate({"datasets": ["a"], "train": {"set": train_set},
                                         "students": [{"kind": "cnn", "set": student_set}]})
        flags = cells(cfg, teacher_cells(cfg))[0].flags
        assert flags["set"] == {"train.warmup_ratio": 0.2, "train.weight_decay": 0.0}


def test_grid_errors_are_one_sentence():
    cfg = ExamConfig.model_validate({"datasets": ["a"], "students": [{"kind": "cnn", "embeding_dim": 8}]})
    with pytest.raises(KdexamError, match=r"unknown key 'embeding_dim'; did you mean 'embedding_dim'"):
        check_cells(teacher_cells(cfg), cells(cfg, teacher_cells(cfg)))
    cfg = ExamConfig.model_validate({"datasets": ["a"], "students": [{"kind": "cnn", "lr": 1e-3}]})  # the option's spelling
    with pytest.raises(KdexamError, match=r"unknown key 'lr'; --lr is learning_rate here \(keys are the flags' names"):
        check_cells(teacher_cells(cfg), cells(cfg, teacher_cells(cfg)))
    cfg = ExamConfig.model_validate({"datasets": ["a"], "students": [{"kind": "cnn", "batch_size": "many"}]})
    with pytest.raises(KdexamError, match="cell a / cnn / kd / none / seed 42"):
        check_cells(teacher_cells(cfg), cells(cfg, teacher_cells(cfg)))
    # what only a run used to find, after every teacher had trained: kinds, objectives, matches, augmenters
    for student, extra, message in [
        ("lstmx", {}, "Unknown student kind 'lstmx'; did you mean 'bilstm'"),
        ("cnn", {"recipes": [{"name": "kd", "objective": ["kl:temperatur=2"]}]}, "has no parameter 'temperatur'; did you mean 'temperature'"),
        ("cnn", {"recipes": [{"name": "kd", "objective": ["kld"]}]}, "kld"),
        ("cnn", {"recipes": [{"name": "m", "match": ["teacher_layer=2,student_layer=1,feature=hidden,loss=kl"]}]}, "Match 1 compares 'hidden'"),
        ("cnn", {"transfer": [{"name": "x", "augment": ["maks"]}]}, "Unknown augmenter 'maks' \\(did you mean 'mask'"),
    ]:
        cfg = ExamConfig.model_validate({"datasets": ["a"], "students": [student], **extra})
        with pytest.raises(KdexamError, match=message):
            check_cells(teacher_cells(cfg), cells(cfg, teacher_cells(cfg)))
    # a missing data file or a misspelled built-in (data or unlabelled) is found before any teacher trains
    for datasets, extra, message in [
        (["movie-sentimnet"], {}, "The exam's datasets: Dataset 'movie-sentimnet' is not a built-in dataset; did you mean 'movie-sentiment'"),
        (["./no/such/train.csv"], {}, "Data file './no/such/train.csv' does not exist"),
        (["a"], {"transfer": [{"name": "x", "unlabelled": ["movie-dailog"]}]}, "Unlabelled text 'movie-dailog' .*did you mean 'movie-dialog'"),
    ]:
        cfg = ExamConfig.model_validate({"datasets": datasets, "students": ["cnn"], **extra})
        with pytest.raises(KdexamError, match=message):
            check_cells(teacher_cells(cfg), cells(cfg, teacher_cells(cfg)))
    # a name in a recipe's or transfer setting's list that matches nothing would drop its cells silently
    with pytest.raises(ValueError, match="recipes entry 'hidden' lists student 'tl3', which the exam does not have; did you mean 'tl2'"):
        ExamConfig.model_validate({"datasets": ["a"], "students": [{"kind": "teacher-layers:2", "name": "tl2"}],
                                   "recipes": [{"name": "hidden", "students": ["tl3"]}]})
    with pytest.raises(ValueError, match="transfer entry 'dlg' lists dataset 'movie-sentimnt'.*did you mean 'movie-sentiment'"):
        ExamConfig.model_validate({"datasets": ["movie-sentiment"], "students": ["cnn"],
                                   "transfer": [{"name": "dlg", "datasets": ["movie-sentimnt"]}]})
    with pytest.raises(ValueError, match="names 'cnn' twice"):
        ExamConfig.model_validate({"datasets": ["a"], "students": ["cnn", "cnn"]})
    with pytest.raises(ValueError, match="exactly one of 'model'"):
        ExamConfig.model_validate({"datasets": ["a"], "students": ["cnn"], "teachers": [{"name": "t"}]})
    with pytest.raises(KdexamError, match="neither a YAML file nor a built-in exam"):
        load_exam_config("no-such-exam")
    with pytest.raises(KdexamError, match="nor an exam directory"):  # a mistyped exam directory, no --out: not "pass --out"
        api.exam("exams/no-such-exam")
    with pytest.raises(KdexamError, match=r"bench.batch_sizes must be positive and include 1"):
        load_exam_config("quick", {"bench.batch_sizes": [32]})


def test_builtin_exams_are_valid():
    for name in ("default", "quick", "full"):
        cfg = load_exam_config(name)
        ts = teacher_cells(cfg)
        check_cells(ts, cells(cfg, ts))
    default = load_exam_config("default")
    assert [d.name for d in default.datasets] == ["movie-sentiment", "trec6", "id-pos"]
    assert {s.kind for s in default.students} == {"bilstm", "cnn", "static", "bert-mini", "teacher-layers:2"}


# --- leaderboard, warnings, Pareto, recommendation on known rows ----------------------------------


def _row(role, student, seed, score, cost=None, recipe="kd", transfer="none", status="done", dataset="d", teacher_score=0.9):
    result = {"model": student, "primary_metric": "accuracy", "greater_is_better": True, "score": score,
              "teacher_score": teacher_score, "retention": score / teacher_score, "loyalty": {"label": score}, "params": 1000,
              "train_seconds": 60, "citations": [], "objectives": ["gold"] if role == "control" else ["gold", "kl"]}
    if cost:
        result["cost"] = {"backend": "onnx", "e2e_ms_b1": cost[0], "size_mb": cost[1], "speedup": 10 / cost[0],
                          "e2e_ms_per_text": cost[0] / 2, "peak_mb": 50}
    return {"id": f"{student}-{role}-{seed}", "role": role, "dataset": dataset, "teacher": "t", "student": student,
            "kind": student, "recipe": recipe if role == "student" else "gold", "transfer": transfer, "seed": seed,
            "run_dir": f"runs/{student}-{seed}", "status": status, "result": result, "error": None}


def _teacher(score=0.9):
    r = _row("teacher", "t", 42, score, cost=(10.0, 90.0), teacher_score=score)
    r["student"] = None
    return r


def _taught(rows, teacher_score):
    """``rows`` as the students of a teacher that scores ``teacher_score`` on their split."""
    return [{**r, "result": {**r["result"], "teacher_score": teacher_score, "retention": r["result"]["score"] / teacher_score}}
            if r["result"] else r for r in rows]


ROWS = [
    _teacher(),
    _row("student", "fast", 1, 0.80, (0.1, 2.0)), _row("student", "fast", 2, 0.82, (0.1, 2.0)),
    _row("control", "fast", 1, 0.76), _row("control", "fast", 2, 0.78),
    _row("student", "slow", 1, 0.86, (1.0, 10.0)), _row("student", "slow", 2, 0.86, (1.0, 10.0)),
    _row("control", "slow", 1, 0.88), _row("control", "slow", 2, 0.88),
    _row("student", "bad", 1, 0.70, (0.5, 1.0)),  # dominated in latency by fast, but smallest file
    {**_row("student", "broken", 1, 0.0), "status": "failed", "result": None, "error": "it broke"},
]


def test_summary_means_gain_pareto_and_warnings():
    s = leaderboard.summarise(ROWS)
    ds = s["datasets"]["d"]
    by = {e["student"]: e for e in ds["students"]}
    assert by["fast"]["score"] == pytest.approx(0.81) and by["fast"]["score_std"] == pytest.approx(0.0141421, rel=1e-4)
    assert by["fast"]["kd_gain"] == pytest.approx(0.81 - 0.77)
    assert by["slow"]["kd_gain"] == pytest.approx(0.86 - 0.88)
    assert by["fast"]["pareto"] and by["slow"]["pareto"] and not by["bad"]["pareto"]
    assert by["bad"]["pareto_size"] and by["fast"]["pareto_size"] and by["slow"]["pareto_size"]
    assert any(w.startswith("Distillation hurt slow") for w in ds["warnings"])
    assert not any("hurt fast" in w for w in ds["warnings"])
    assert not any(w.startswith("The teacher") for w in ds["warnings"])  # 0.90 vs best control 0.88: 2 points
    assert s["failed"] and s["failed"][0]["error"] == "it broke"
    one_seed = leaderboard.summarise([_teacher(), _row("student", "x", 1, 0.800, (0.1, 2.0)), _row("control", "x", 1, 0.806),
                                      _row("student", "y", 1, 0.780, (0.1, 2.0)), _row("control", "y", 1, 0.806)])
    assert [w.split(" (")[0] for w in one_seed["datasets"]["d"]["warnings"]] == ["Distillation hurt y"]  # -0.6 points: noise
    weak = leaderboard.summarise([_teacher(0.885)] + _taught(ROWS[1:], 0.885))
    assert any("is only 0.5 points above slow trained on labels alone" in w for w in weak["datasets"]["d"]["warnings"])
    md = leaderboard.markdown(s)
    assert "| fast * s | kd | none | 0.8100 ± 0.0141 |" in md and "slow (labels only)" in md and "it broke" in md
    rows = list(csv.DictReader(io.StringIO(leaderboard.csv_text(s))))
    assert [r["role"] for r in rows].count("control") == 2 and rows[0]["role"] == "teacher"
    assert {r["dataset"] for r in rows} == {"d", "overall"}


def test_recommendation_within_budget():
    s = leaderboard.summarise(ROWS)
    rec = recommend(s, {"max_latency_ms": 0.5})["d"]
    assert rec["choice"]["student"] == "fast"
    assert "choose **fast**" in rec["text"] and "Outside the budget, slow would score 0.8600" in rec["text"]
    assert "gives up 9.0 points of accuracy" in rec["text"] and "gained 4.0 points of accuracy" in rec["text"]
    assert recommend(s, {})["d"]["choice"]["student"] == "slow"
    assert "next best within the budget, fast" in recommend(s, {})["d"]["text"]
    assert "But distillation cost it 2.0 points of accuracy: the same student trained on labels alone scores 0.8800" in recommend(s, {})["d"]["text"]
    weak = recommend(leaderboard.summarise([_teacher(0.84)] + _taught(ROWS[1:], 0.84)), {})["d"]["text"]
    assert "It beats the teacher t (0.8400) by 2.0 points of accuracy" in weak
    none = recommend(s, {"max_latency_ms": 0.01})["d"]
    assert none["choice"] is None and "no student meets the budget (latency ≤ 0.01 ms)" in none["text"]
    assert not within({"score": 1, "retention": None}, {"min_retention": 0.9})
    undefined = [{**r, "result": {**r["result"], "retention": None}} if r["result"] else r for r in ROWS]
    for budget in ({}, {"max_latency_ms": 0.01}):  # a retention that is undefined (None) is left out of the sentence
        text = recommend(leaderboard.summarise(undefined), budget)["d"]["text"]
        assert "slow" in text and "retention" not in text


def test_a_given_teacher_runs_row_is_its_score_on_its_students_split():
    """A ``{run: DIR}`` teacher scored itself on its whole test file (0.8566) while the exam's
    ``max_eval`` scored its students, and it beside them, on 32 examples (0.8125): the row, the
    recommendation's gap and the retention must all use the teacher on the students' split."""
    own = _teacher(0.8566)
    rows = [own, *_taught([_row("student", "cnn", 1, 0.4844, (0.1, 2.0)), _row("student", "cnn", 2, 0.5000, (0.1, 2.0))], 0.8125)]
    s = leaderboard.summarise(rows)
    t = s["datasets"]["d"]["teachers"][0]
    assert (t["score"], t["own_score"]) == (pytest.approx(0.8125), 0.8566)
    assert "| teacher t | | | 0.8125 |" in leaderboard.markdown(s).replace("  ", " ")
    assert any(w.startswith("The teacher t on d scored 0.8566 in its own run") for w in s["datasets"]["d"]["warnings"])
    assert "gives up 32.0 points of accuracy to the teacher t (0.8125)" in recommend(s, {})["d"]["text"]
    same = leaderboard.summarise([_teacher(0.8125), *rows[1:]])["datasets"]["d"]  # a teacher the exam trained: no note
    assert "own_score" not in same["teachers"][0] and not any("its own run" in w for w in same["warnings"])
    mixed = [_teacher(0.5), *_taught([_row("student", "cnn", 1, 0.5, (0.1, 2.0))], 0.5),  # a student's own max_eval:
             *_taught([_row("student", "cnn16", 1, 0.4, (0.1, 2.0))], 0.375)]  # no one split, the teacher's own score
    t = leaderboard.summarise(mixed)["datasets"]["d"]["teachers"][0]
    assert t["score"] == 0.5 and "own_score" not in t


def test_a_given_teacher_run_of_other_data_gives_no_score_where_no_student_finished(tmp_path):
    """A ``{run: DIR}`` teacher of movie-sentiment, examined on a dataset where every cell failed: its
    row showed its movie-sentiment score (retention 1.000) under that dataset."""
    own = _teacher(0.846)
    own["result"]["data"] = "movie-sentiment"  # (its config.yaml's data.name; the exam's dataset is "d")
    failed = {**_row("student", "cnn", 1, 0.5), "status": "failed", "result": None, "error": "labels unknown"}
    s = leaderboard.summarise([own, failed])
    ds = s["datasets"]["d"]
    assert (ds["teachers"][0]["score"], ds["teachers"][0]["own_score"]) == (None, 0.846)
    assert any("own data (movie-sentiment); no student finished on d" in w for w in ds["warnings"])
    assert "0.8460" not in leaderboard.markdown(s).split("## Failed")[0].split("| teacher t |")[-1].split("\n")[0]
    assert recommend(s, {})["d"]["text"] == "On d, no student finished; the failed cells below say why."
    row = next(r for r in csv.DictReader(io.StringIO(leaderboard.csv_text(s))) if r["role"] == "teacher")
    assert row["score"] == "" and row["retention"] == "", "no score, so no retention of 1.0 either"
    same = leaderboard.summarise([_teacher(0.846), failed])["datasets"]["d"]["teachers"][0]  # its own data: kept
    assert same["score"] == 0.846 and "own_score" not in same
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n")
    assert leaderboard.same_dataset(str(data), os.path.relpath(data))  # the config's absolute path, the exam's relative one
    assert not leaderboard.same_dataset(str(data), "movie-sentiment") and leaderboard.same_dataset(None, "d")


def test_several_teachers_each_student_is_compared_with_its_own():
    """Two teachers on one dataset: rows say which teacher, the recommendation and the teacher
    warnings compare each with its own teacher and controls, and the overall table counts datasets."""
    def of(row, teacher):
        return {**row, "teacher": teacher, "id": f"{row['id']}-{teacher}"}

    big, small = of(_teacher(0.95), "big"), of(_teacher(0.70), "small")
    rows = [big, small, *_taught([of(_row("student", "cnn", 1, 0.80, (0.1, 2.0)), "big"), of(_row("control", "cnn", 1, 0.79), "big")], 0.95),
            *_taught([of(_row("student", "cnn", 1, 0.85, (0.1, 2.0)), "small"), of(_row("control", "cnn", 1, 0.695), "small")], 0.70)]
    s = leaderboard.summarise(rows)
    header, table = leaderboard.dataset_tables(s["datasets"]["d"])
    assert header[:2] == ["student", "teacher"]
    assert [r[:2] for r in table] == [["teacher big", "big"], ["teacher small", "small"], ["cnn * s", "small"], ["cnn", "big"],
                                      ["cnn (labels only)", "big"], ["cnn (labels only)", "small"]]
    text = recommend(s, {})["d"]["text"]
    assert "choose **cnn**" in text and "beats the teacher small (0.7000) by 15.0 points" in text  # not 'gives up 10 to big'
    warned = s["datasets"]["d"]["warnings"]  # small (0.70) is half a point above its own control (0.695); big is far above its own
    assert len(warned) == 1 and warned[0].startswith("The teacher small on d (0.7000) is only 0.5 points above cnn")
    assert [r["datasets"] for r in s["overall"]] == [1]


def test_kd_gain_is_paired_by_seed():
    """The control of seed 2 exists, the student's seed 2 failed: the gain compares seed 1 with seed 1."""
    rows = [_teacher(), _row("student", "x", 1, 0.80, (0.1, 2.0)), {**_row("student", "x", 2, 0.0), "status": "failed", "result": None},
            _row("control", "x", 1, 0.82), _row("control", "x", 2, 0.70)]
    e = leaderboard.summarise(rows)["datasets"]["d"]["students"][0]
    assert e["kd_gain"] == pytest.approx(-0.02) and e["control_n"] == 1


def test_datasets_of_the_same_file_name_get_their_own_plots_and_exports():
    from kdexam.exam.grid import dataset_slugs

    slugs = dataset_slugs(["corpora/news/data", "corpora/tweets/data", "movie-sentiment"])
    assert slugs["movie-sentiment"] == "movie-sentiment"
    assert slugs["corpora/news/data"].startswith("data-") and slugs["corpora/tweets/data"].startswith("data-")
    assert len(set(slugs.values())) == 3


def test_export_best_in_place_keeps_the_exams_trust_remote_code(tmp_path, monkeypatch):
    import kdexam.exam.recommend as rec_module
    import kdexam.exam.report as report_module
    from kdexam.exam.store import Store

    with Store(tmp_path / "results.sqlite") as store:
        store.put("config", {"name": "x", "trust_remote_code": True})
    monkeypatch.setattr(report_module, "render", lambda exam_dir, store, budget: {"recommendations": {}})
    seen = []
    monkeypatch.setattr(rec_module, "export_best", lambda recs, out, trust_remote_code=False: seen.append(trust_remote_code) or [])
    api.exam(str(tmp_path), export_best=True)
    assert seen == [True]


def test_the_batch_column_names_the_measured_batch():
    row = _row("student", "x", 1, 0.80, (0.1, 2.0))
    row["result"]["cost"]["batch"] = 8
    header, _ = leaderboard.dataset_tables(leaderboard.summarise([_teacher(), row])["datasets"]["d"])
    assert "ms/text b8" in header and "ms/text b32" not in header


# --- whole exams on a tiny teacher ----------------------------------------------------------------


def _csv_without_times(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "train_minutes"} for r in csv.DictReader(path.open(encoding="utf-8"))]


def test_killed_exam_reruns_only_what_is_left_and_matches_an_uninterrupted_one(exam_data, tmp_path):
    slow = {"kind": "bilstm", "embedding_dim": 16, "hidden_size": 8, "epochs": 40, "batch_size": 8,
            "set": {"train.checkpoint_every": 10}}
    cfg = write_exam(tmp_path / "exam.yaml", exam_data, [CNN, slow], bench={"enabled": False})
    killed = tmp_path / "killed"
    code = "import sys; from kdexam import api; api.exam(sys.argv[1], out=sys.argv[2])"
    proc = subprocess.Popen([sys.executable, "-c", code, str(cfg), str(killed)], env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = killed / "results.sqlite"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:  # kill once the bilstm cell has written a checkpoint
            rows = []
            if db.is_file():
                try:
                    with sqlite3.connect(db) as con:
                        rows = con.execute("SELECT run_dir FROM cells WHERE kind = 'bilstm' AND role = 'student' "
                                           "AND status = 'running'").fetchall()
                except sqlite3.OperationalError:  # the exam has created the file but not yet its tables
                    rows = []
            if rows and list(Path(rows[0][0]).glob("checkpoint-stage1/*")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the exam finished before it could be killed mid-cell"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(db) as con:
        before = dict(con.execute("SELECT id, status || ' ' || coalesce(finished, '') FROM cells").fetchall())
    assert sorted(v.split()[0] for v in before.values()) == ["done", "done", "done", "running"]  # teacher, cnn, cnn control
    assert api.exam(str(killed))["unfinished"] == {"done": 3, "cells": 5}  # reported as it is: said to be unfinished
    api.exam(str(cfg), out=killed)
    assert "unfinished" not in api.exam(str(killed))
    with sqlite3.connect(db) as con:
        after = dict(con.execute("SELECT id, status || ' ' || coalesce(finished, '') FROM cells").fetchall())
    assert all(after[i] == v for i, v in before.items() if v.startswith("done"))  # finished cells were not run again
    assert len(after) == 5 and all(v.startswith("done") for v in after.values())
    whole = tmp_path / "whole"
    api.exam(str(cfg), out=whole)
    assert _csv_without_times(killed / "leaderboard.csv") == _csv_without_times(whole / "leaderboard.csv")


@pytest.fixture(scope="module")
def measured_exam(exam_data, tmp_path_factory):
    """One exam with costs measured (ONNX, no peak-memory processes): cnn and static, with controls,
    and a student that fails (a teacher-layers student with more layers than the tiny teacher)."""
    root = tmp_path_factory.mktemp("measured-exam")
    cfg = write_exam(root / "exam.yaml", exam_data, [CNN, STATIC, {"kind": "teacher-layers:5", "name": "tl5", "epochs": 1}],
                     bench={"n_texts": 8, "repeats": 3, "warmup": 1, "rss": False})
    return root / "exam", api.exam(str(cfg), out=root / "exam")


def test_measured_exam_outputs(measured_exam):
    out, result = measured_exam
    assert result["run"]["failed"] == 2 and result["run"]["done"] == 5  # tl5 and its control fail; the exam went on
    ds = next(iter(result["summary"]["datasets"].values()))
    students = {e["student"]: e for e in ds["students"]}
    assert set(students) == {"cnn", "static"}
    for e in students.values():
        assert e["e2e_ms_b1"] > 0 and e["speedup"] > 1 and e["size_mb"] > 0 and e["backend"] in ("onnx", "onnx-int8", "pytorch")
        assert e["kd_gain"] is not None
    assert any("teacher-layers" in f["error"] or "layers" in f["error"] for f in result["summary"]["failed"])
    md = (out / "leaderboard.md").read_text(encoding="utf-8")
    assert "## Failed cells" in md and "teacher tiny-bert" in md
    assert (out / "plots").is_dir() and list((out / "plots").glob("*.png"))
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("<table>") >= 2 and "data:image/png;base64," in page and "Exam config" in page
    assert "torch" in page and "Recommendation" in page
    # every run directory is a normal run, with a model card that carries the cost the exam measured
    for e in students.values():
        run = Path(e["run_dirs"][0])
        card = (run / "README.md").read_text(encoding="utf-8")
        assert (run / "metrics.json").is_file() and "library_name: kdexam" in card
        assert "End-to-end latency" in card and "not measured yet" not in card


def test_changed_bench_settings_measure_again_without_training(measured_exam, tmp_path):
    """Rerun with other bench settings: nothing trains again, every measured cell (teacher first) is
    measured with the new settings, and its stored settings say so; the same settings again measure nothing."""
    from kdexam.exam.store import Store

    out, _ = measured_exam
    copy = tmp_path / "exam"
    shutil.copytree(out, copy)
    again = api.exam(str(out.parent / "exam.yaml"), out=copy, set=["bench.n_texts=6"])
    assert again["run"]["done"] == 5 and again["run"]["failed"] == 2
    with Store(copy / "results.sqlite") as store:
        measured = [r for r in store.rows() if r["status"] == "done" and (r["result"] or {}).get("cost")]
        assert len(measured) == 3 and all(r["result"]["bench_settings"]["n_texts"] == 6 for r in measured)
        assert all(r["result"]["bench"]["latency"][0]["repeats"] == 3 for r in measured)
        before = {r["id"]: r["result"]["bench"] for r in measured}
    api.exam(str(out.parent / "exam.yaml"), out=copy, set=["bench.n_texts=6"])
    with Store(copy / "results.sqlite") as store:
        assert {r["id"]: r["result"]["bench"] for r in store.rows() if r["id"] in before} == before


def test_cells_finished_unmeasured_are_measured_once_bench_is_on(measured_exam, tmp_path, monkeypatch):
    """Cells finished by an invocation with ``bench.enabled: false`` were never measured when the
    exam ran again with it on (no cost, no speedup, no size budget); and a measuring that fails marks
    its cell failed instead of stopping the exam, and is tried again by the next invocation."""
    from kdexam.exam import runner
    from kdexam.exam.store import Store

    out, _ = measured_exam
    copy = tmp_path / "exam"
    shutil.copytree(out, copy)
    cfg = ExamConfig.model_validate(yaml.safe_load((out.parent / "exam.yaml").read_text()))
    with Store(copy / "results.sqlite") as store:  # what run_cell stores with the bench off
        measured = [r for r in store.rows() if r["status"] == "done" and (r["result"] or {}).get("cost")]
        for r in measured:
            store.finish(r["id"], {**runner.cell_row(Path(r["run_dir"]), None), "bench_settings": runner.bench_settings(cfg)},
                         r["seconds"])
        assert not any((r["result"] or {}).get("cost") for r in store.rows())

    def broken(*args, **kwargs):
        raise RuntimeError("no memory for the ONNX session")

    monkeypatch.setattr(runner, "measure", broken)
    again = api.exam(str(out.parent / "exam.yaml"), out=copy)
    # the teacher's measuring fails first; its students wait for its figures (no speedup against stale ones)
    assert again["run"]["failed"] == 3 and (copy / "leaderboard.md").is_file()
    with Store(copy / "results.sqlite") as store:
        rows = {r["id"]: r for r in store.rows()}
        teacher = next(m["id"] for m in measured if m["role"] == "teacher")
        assert "measuring with the exam's bench settings failed: RuntimeError" in rows[teacher]["error"]
        assert all(rows[m["id"]]["status"] == "done" for m in measured if m["id"] != teacher)
    monkeypatch.undo()
    api.exam(str(out.parent / "exam.yaml"), out=copy)
    with Store(copy / "results.sqlite") as store:
        rows = {r["id"]: r for r in store.rows()}
        assert all(rows[m["id"]]["status"] == "done" and rows[m["id"]]["result"]["cost"] for m in measured)


def test_report_opens_in_headless_chromium(measured_exam, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        # CI must run this test: .ci/run installs chromium and sets KDEXAM_REQUIRE_CHROMIUM, so only a
        # developer machine without a browser skips it
        if os.environ.get("KDEXAM_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required here (KDEXAM_REQUIRE_CHROMIUM) but is not installed")
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium package)")
    out, _ = measured_exam
    shot = out / "report.png"
    url = (out / "report.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-500:]
    assert dom.stdout.count("<table>") >= 2 and dom.stdout.count('<img alt="') >= 1 and "kdexam exam: tiny" in dom.stdout
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1400,2200", url], capture_output=True, timeout=120)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_budget_rerender_and_export_best(measured_exam, capsys):
    from kdexam.cli import main

    out, result = measured_exam
    fastest = min(next(iter(result["summary"]["datasets"].values()))["students"], key=lambda e: e["e2e_ms_b1"])
    limit = fastest["e2e_ms_b1"] * 1.0001
    with pytest.raises(SystemExit) as e:
        main(["exam", str(out), "--max-latency-ms", str(limit), "--export-best"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert f"choose {fastest['student']}" in " ".join(text.split())
    rec = (out / "recommendation.md").read_text(encoding="utf-8")
    assert f"choose **{fastest['student']}**" in rec
    exported = next((out / "best").iterdir())
    (out / "texts.txt").write_text("a great fun film\na dull boring mess\n", encoding="utf-8")
    preds = api.predict(exported, out / "texts.txt")
    assert len(preds) == 2 and all("label" in p for p in preds)
    # limits given on a report apply on top of the exam config's own, not of the last report's (an
    # audit, 2026-12-04: --max-latency-ms stuck to every later report and could not be removed)
    api.exam(str(out), max_size_mb=1000)
    said = " ".join((out / "recommendation.md").read_text(encoding="utf-8").split())
    assert "size ≤ 1000 MB" in said and "latency ≤" not in said
    api.exam(str(out))  # no limits given: the last report's budget
    assert "size ≤ 1000 MB" in " ".join((out / "recommendation.md").read_text(encoding="utf-8").split())
    with pytest.raises(KdexamError, match="positive"):
        api.exam(str(out), max_latency_ms=-1)
    with pytest.raises(KdexamError, match="--set has no effect there"):
        api.exam(str(out), set=["seeds=[1,2]"])


def test_cli_exam_bad_input_is_exit_2(tmp_path, capsys):
    from kdexam.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [a]\nstudents: [cnn]\nseedz: [1]\n", encoding="utf-8")
    for argv in (["exam", str(bad), "--out", str(tmp_path / "x")], ["exam", "quick"], ["exam", str(tmp_path)]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "seedz" in err and "pass --out DIR" in err and "without results.sqlite" in err
    assert "Traceback" not in err
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "results.sqlite").write_bytes(b"not a database, but some bytes " * 64)
    with pytest.raises(SystemExit) as e:
        main(["exam", str(tmp_path / "damaged")])
    assert e.value.code == 2 and "is not a readable exam database" in capsys.readouterr().err


def test_readme_section_is_generated_between_markers(measured_exam, tmp_path):
    from kdexam.exam.readme import END, START, update

    out, _ = measured_exam
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{START}\nold results\n{END}\n\nafter\n", encoding="utf-8")
    update(out, readme)
    text = readme.read_text(encoding="utf-8")
    assert "old results" not in text and text.startswith("# Title") and text.rstrip().endswith("after")
    inside = text.split(START)[1].split(END)[0]
    assert "| teacher tiny-bert |" in inside and "| cnn" in inside and "> On " in inside and "one invocation ran all" in inside
    (tmp_path / "plain.md").write_text("no markers\n", encoding="utf-8")
    with pytest.raises(KdexamError, match="markers"):
        update(out, tmp_path / "plain.md")


def test_an_exam_that_would_train_no_student_or_drop_keys_is_refused():
    """Empty grids ran nothing and reported success (exit 0); a given teacher run's flags, and the
    datasets' teacher flags when every teacher is a run, were dropped without a word; keys the exam
    sets itself were reported as an unknown key '' or 'resume' (did you mean 'recipe'?)."""
    base = {"datasets": ["a"], "students": ["cnn"]}
    for key in ("teachers", "recipes", "transfer", "students", "datasets"):
        with pytest.raises(ValueError, match=f"{key}\n.*must name at least one entry"):
            ExamConfig.model_validate({**base, key: []})
    with pytest.raises(ValueError, match=r"teacher 'ms' is a given run \(run: runs/ms\), used as it is: its keys epocs, "
                                         r"learning_rate would have no effect"):
        ExamConfig.model_validate({**base, "teachers": [{"run": "runs/ms", "epocs": 3, "learning_rate": "banana"}]})
    with pytest.raises(ValueError, match=r"datasets entry 'a' has teacher flags \(epochs\), but every teacher is a given run"):
        ExamConfig.model_validate({**base, "datasets": [{"name": "a", "teacher": {"epochs": 3}}], "teachers": [{"run": "runs/ms"}]})
    ExamConfig.model_validate({**base, "datasets": [{"name": "a", "teacher": {"epochs": 3}}],  # (they reach the model teacher)
                               "teachers": [{"run": "runs/ms"}, {"model": "minilm-l6"}]})
    for entry, message in [({"students": [{"kind": "cnn", "teacher": "x"}]}, "students entry 'cnn' sets 'teacher', which the exam gives"),
                           ({"students": [{"kind": "cnn", "out": "/tmp/x"}]}, "students entry 'cnn' sets 'out', which the exam names"),
                           ({"train": {"resume": False}}, "train sets 'resume', which the exam resumes its runs itself")]:
        with pytest.raises(ValueError, match=message):
            ExamConfig.model_validate({**base, **entry})
    cfg = ExamConfig.model_validate({**base, "train": {"embedding_dim": 64}})  # a distill flag reaches the teacher too
    with pytest.raises(KdexamError, match="teacher 'minilm-l6' for 'a' has an unknown key 'embedding_dim'; it is a 'kdexam "
                                          "distill' flag, which 'kdexam teacher' does not take; the exam's train flags"):
        check_cells(teacher_cells(cfg), cells(cfg, teacher_cells(cfg)))
    cfg = ExamConfig.model_validate({"datasets": ["a", "b"], "students": ["cnn"], "control": False,
                                     "transfer": [{"name": "x", "datasets": ["a"]}]})
    with pytest.raises(KdexamError, match="no student cell for dataset 'b'"):
        check_cells(teacher_cells(cfg), cells(cfg, teacher_cells(cfg)))


def test_a_given_teacher_run_retrained_in_place_gets_new_cells(tmp_path):
    """``teachers: [{run: DIR}]`` named its cells by the folder's path alone: a teacher re-trained in
    the same folder kept every student cell 'done', reported against the old teacher's outputs."""
    run = tmp_path / "teacher"
    run.mkdir()
    (run / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    (run / "model.safetensors").write_bytes(b"old weights")
    cfg = ExamConfig.model_validate({"datasets": ["a"], "teachers": [{"run": str(run), "name": "mine"}], "students": ["cnn"]})
    before_teacher = teacher_cells(cfg)
    before = {c.id for c in cells(cfg, before_teacher)}
    assert [t.id for t in teacher_cells(cfg)] == [t.id for t in before_teacher]  # stable while nothing changes
    (run / "eval-test.json").write_text("{}", encoding="utf-8")  # a file beside the model (kdexam evaluate --out)
    assert [t.id for t in teacher_cells(cfg)] == [t.id for t in before_teacher]
    (run / "model.safetensors").write_bytes(b"new weights")
    after_teacher = teacher_cells(cfg)
    assert after_teacher[0].id != before_teacher[0].id
    assert not before & {c.id for c in cells(cfg, after_teacher)}


def test_a_relative_teacher_run_is_recorded_absolute(tmp_path, monkeypatch):
    """``{run: runs/teacher}`` was kept relative: the exam's student runs recorded ``teacher:
    runs/teacher`` and lost their teacher (no loyalty, no retention) in 'kdexam evaluate' run from
    any other folder."""
    from kdexam.exam.runner import Progress, run_teacher
    from kdexam.exam.store import Store
    from kdexam.evaluation.results import ModelResult, RunResult

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "teacher").mkdir(parents=True)
    RunResult(ModelResult("t", 10, {"accuracy": 0.9}), task="classification", primary_metric="accuracy").write("runs/teacher")
    for name in ("config.json", "model.safetensors"):  # (what makes a folder a teacher's)
        (tmp_path / "runs" / "teacher" / name).write_text("{}", encoding="utf-8")
    cfg = ExamConfig.model_validate({"datasets": ["a"], "teachers": [{"run": "runs/teacher"}], "students": ["cnn"],
                                     "bench": {"enabled": False}})
    t = teacher_cells(cfg)[0]
    store = Store(tmp_path / "exam" / "results.sqlite")
    got = run_teacher(t, cfg, tmp_path / "exam", store, Progress(store, [t], []))
    assert got == tmp_path / "runs" / "teacher" and got.is_absolute()
    assert store.rows([t.id])[0]["run_dir"] == str(tmp_path / "runs" / "teacher")
    assert run_teacher(t, cfg, tmp_path / "exam", store, Progress(store, [t], [])) == got  # (done: the same path)


def test_an_error_metrics_gaps_are_not_points():
    """For mse (lower is better) the recommendation said 'by 0.2 points of mse' (× 100 of an
    unbounded error) and the header called the KD gain 'score minus' the control's."""
    def mse(rows):
        return [{**r, "result": {**r["result"], "primary_metric": "mse", "greater_is_better": False}} for r in rows]

    rows = mse([_teacher(0.50), *_taught([_row("student", "cnn", 1, 0.62, (0.1, 2.0)), _row("control", "cnn", 1, 0.70)], 0.50)])
    s = leaderboard.summarise(rows)
    assert s["datasets"]["d"]["students"][0]["kd_gain"] == pytest.approx(0.08)
    text = recommend(s, {})["d"]["text"]
    assert "gives up 0.12 of mse to the teacher t (0.5000)" in text and "Distillation gained 0.08 of mse" in text
    assert "points" not in text and "its score minus score where lower is better" in leaderboard.markdown(s)


def _as_mse(row, score):
    """``row`` scored by mse (lower is better); ``score`` None is a seed whose NaN was written as null."""
    result = {**row["result"], "primary_metric": "mse", "greater_is_better": False, "score": score, "teacher_score": 0.5,
              "retention": None if score is None else 0.5 / score}
    return {**row, "result": result}


def test_an_entry_without_a_score_ranks_last_whichever_way_its_metric_points(tmp_path):
    """An audit (2026-12-04): a diverged student (its mse NaN, written as null) topped the mse table,
    a null Pearson ranked above a negative one, and --export-best picked the diverged seed."""
    from kdexam.exam.recommend import best_run

    teacher = _teacher(0.5)
    teacher["result"] = {**teacher["result"], "primary_metric": "mse", "greater_is_better": False}
    rows = [teacher, _as_mse(_row("student", "good", 1, 0.6, (1.0, 5.0)), 0.6),
            _as_mse(_row("student", "diverged", 1, 0.0, (1.0, 5.0)), None),
            _as_mse(_row("student", "worse", 1, 0.9, (0.5, 5.0)), 0.9)]
    ds = leaderboard.summarise(rows)["datasets"]["d"]
    _, table = leaderboard.dataset_tables(ds)
    assert [r[0].split()[0] for r in table[1:]] == ["good", "worse", "diverged"]  # (after the teacher; "* s": Pareto marks)
    assert [e["student"] for e in sorted(ds["students"], key=leaderboard.rank_key)] == ["good", "worse", "diverged"]
    scores = [-0.2, None, 0.3]
    ranked = sorted(({"score": s, "greater_is_better": True} for s in scores), key=leaderboard.rank_key)
    assert [e["score"] for e in ranked] == [0.3, -0.2, None]
    overall = leaderboard.overall({"d": {"students": [{**e, "retention": r} for e, r in zip(ds["students"], (-0.5, None, 0.8))]}})
    assert [r["retention"] for r in overall] == [0.8, -0.5, None]
    for name, score in (("a", None), ("b", 0.3), ("c", 0.9)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({
            "task": "regression", "primary_metric": "mse", "teacher": {"name": "t", "params": 1, "metrics": {"mse": 0.5}},
            "student": {"name": "s", "params": 1, "metrics": {"mse": score}}}))
    assert best_run({"run_dirs": [tmp_path / n for n in "abc"], "greater_is_better": False}) == tmp_path / "b"


def test_the_labels_only_score_is_the_controls_own_when_seeds_differ():
    """An audit (2026-12-04): with student seeds 1-3 and controls of seeds 1-2, the recommendation
    rebuilt the control's score from the all-seed mean and the paired gain (0.87, not 0.85)."""
    rows = [_teacher(0.9), _row("student", "x", 1, 0.80, (1, 5)), _row("student", "x", 2, 0.80, (1, 5)),
            _row("student", "x", 3, 0.86, (1, 5)), _row("control", "x", 1, 0.85), _row("control", "x", 2, 0.85)]
    summary = leaderboard.summarise(rows)
    e = summary["datasets"]["d"]["students"][0]
    assert e["kd_gain"] == pytest.approx(0.80 - 0.85) and e["paired_score"] == pytest.approx(0.80)
    text = recommend(summary, {})["d"]["text"]
    assert "trained on labels alone scores 0.8500 on the 2 seeds both ran" in text
    warning = " ".join(summary["datasets"]["d"]["warnings"])
    assert "0.8000 against 0.8500 for the same student trained on labels alone on the 2 seeds both ran (-0.0500)" in warning


def test_exam_audit_cases(tmp_path, monkeypatch):
    """An audit of the exam (2026-12-04, late):
    - a dataset entry's ``set`` given as a list of key=value strings was an AttributeError;
    - a given teacher run trained on other data was timed on that data's texts, its students on the
      exam's (a speedup of 3.6x where the same texts gave 9.3x): it now carries the exam dataset's settings;
    - ``batch_sizes: [32, 1]`` measured every cell again against ``[1, 32]``;
    - a group's backend was picked from a set (its order varied between runs) on a tie, and
      --export-best quantized a seed whose own fastest backend was fp32;
    - the same run given twice to bench (r2, ./r2) was measured twice."""
    from kdexam.config.exam import ExamBench
    from kdexam.evaluation.efficiency import resolve_models
    from kdexam.exam import recommend as rec

    cfg = ExamConfig.model_validate({"datasets": [{"name": "a.csv", "text_column": "review", "set": ["data.validation_fraction=0.2"]}],
                                     "teachers": [{"run": str(tmp_path / "t"), "name": "given"}], "students": ["cnn"]})
    (t,) = teacher_cells(cfg)
    assert t.data == {"name": "a.csv", "text_column": "review", "validation_fraction": 0.2}
    assert ExamBench(batch_sizes=[32, 1, 1]).batch_sizes == [1, 32]
    members = [{**_row("student", "s", seed, 0.8, (1.0, 5.0)), "run_dir": str(tmp_path / f"s{seed}")} for seed in (2, 1)]
    members[0]["result"]["cost"]["backend"], members[1]["result"]["cost"]["backend"] = "onnx", "onnx-int8"
    entry = leaderboard._entry({"student": "s"}, members)
    assert entry["backend"] == "onnx-int8" and entry["run_backends"] == ["onnx-int8", "onnx"]  # (seed 1 first)
    for seed, score in ((1, 0.7), (2, 0.9)):  # seed 2, the better, is exported: its own fastest backend is fp32
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "metrics.json").write_text(json.dumps({
            "task": "classification", "primary_metric": "accuracy", "teacher": {"name": "t", "params": 1, "metrics": {"accuracy": 0.9}},
            "student": {"name": "s", "params": 1, "metrics": {"accuracy": score}}}))
    asked = []
    monkeypatch.setattr(api, "export", lambda run, quantize=None, **kw: asked.append((run, quantize)) or {"parity_ok": True})
    done = rec.export_best({"d": {"choice": entry}}, tmp_path)
    assert asked == [(str(tmp_path / "s2"), None)] and "--quantized" not in done[0]["command"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r2").mkdir()
    monkeypatch.setattr("kdexam.inference.predictor.model_role", lambda p: "teacher")
    assert resolve_models(["r2", "./r2", str(tmp_path / "r2")])[0] == [Path("r2")]


def test_a_student_run_given_as_a_teacher_fails_its_teacher_cell_with_the_sentence(exam_data, tmp_path):
    """An audit (2026-12-04, late): a student run given as ``teachers: [{run: DIR}]`` was accepted
    and measured as a teacher; only its cells failed, each with "is a student run"."""
    student = tmp_path / "student"
    student.mkdir()
    for name in ("student.json", "metrics.json"):
        (student / name).write_text("{}", encoding="utf-8")
    (student / "model.safetensors").write_bytes(b"weights")
    cfg = tmp_path / "exam.yaml"
    cfg.write_text(yaml.safe_dump({"name": "t", "datasets": [{"name": str(exam_data["data"])}], "teachers": [{"run": str(student)}],
                                   "students": [CNN], "bench": {"enabled": False}}), encoding="utf-8")
    result = api.exam(str(cfg), out=tmp_path / "exam")
    errors = [f["error"] for f in result["summary"]["failed"]]
    assert sum("is a student run (student.json), not a teacher" in " ".join(e.split()) for e in errors) == 1  # the teacher's row
    assert sum("see that teacher's row" in e for e in errors) == 2  # its cell and the control
