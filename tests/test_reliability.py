"""Nothing already written is lost, nothing loads silently wrong, bad numbers are refused before any work."""

import json
import os
import shutil

import pytest
import yaml
from safetensors.torch import load_file, save_file

from conftest import write_sentiment_splits
from run_factory import runs  # noqa: F401  (fixture)
from kdexam import api
from kdexam.cli import main
from kdexam.errors import KdexamError
from kdexam.paths import sha256_file

FAST = dict(epochs=1, max_train=64, batch_size=16)
FAST_ARGS = ["--epochs", "1", "--max-train", "64", "--batch-size", "16"]  # FAST on the command line


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("reliability")
    data = write_sentiment_splits(root / "data", 100, 20, 0)
    api.finetune_teacher(data=data, model=tiny_bert_dir, out=root / "teacher", **FAST)
    return root


def _exit(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr().err


def test_out_is_never_an_input_of_the_run(teacher, tiny_bert_dir, capsys):
    weights = teacher / "teacher" / "model.safetensors"
    before = sha256_file(weights)
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "cnn", "--out", str(teacher / "teacher"),
                       "--epochs", "1"], capsys)
    assert code == 2 and "is the teacher of this run" in err
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "cnn", "--out", str(teacher), "--epochs", "1"],
                      capsys)
    assert code == 2 and "holds the teacher" in err
    code, err = _exit(["teacher", "--data", str(teacher / "data"), "--model", str(tiny_bert_dir), "--out", str(tiny_bert_dir)], capsys)
    assert code == 2 and "is the model of this run" in err
    assert sha256_file(weights) == before, "the teacher's weights were touched"


def test_a_different_run_in_out_is_refused_unless_overwrite(teacher, tmp_path, capsys):
    out = tmp_path / "s"
    api.distill(teacher=teacher / "teacher", student="cnn", out=out, **FAST)
    first = sha256_file(out / "model.safetensors")
    (out / "metrics.json").write_text(json.dumps({**json.loads((out / "metrics.json").read_text()), "mine": 1}))
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "cnn", "--out", str(out),
                       *FAST_ARGS], capsys)  # the same run again, finished: nothing it holds is dropped silently
    assert code == 2 and "already holds this run, finished" in " ".join(err.split()), err
    assert json.loads((out / "metrics.json").read_text())["mine"] == 1
    (out / "checkpoint-stage1").mkdir()  # a finished run that kept its checkpoint (train.keep_checkpoint) is still finished
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "cnn", "--out", str(out), *FAST_ARGS], capsys)
    assert code == 2 and "already holds this run, finished" in " ".join(err.split()), err
    (out / "checkpoint-stage1").rmdir()
    api.distill(teacher=teacher / "teacher", student="cnn", out=out, overwrite=True, **FAST)  # trained again
    assert sha256_file(out / "model.safetensors") == first and "mine" not in json.loads((out / "metrics.json").read_text())
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "bilstm", "--out", str(out),
                       "--epochs", "1", "--max-train", "64"], capsys)
    assert code == 2 and "already holds a different run" in err and "student.kind" in err
    assert sha256_file(out / "model.safetensors") == first, "a refused run must leave the old one intact"
    (out / "notes.txt").write_text("mine")  # a user's file in a run folder: --overwrite would delete it with the run
    (out / "sub").mkdir()
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "bilstm", "--out", str(out),
                       "--overwrite", *FAST_ARGS], capsys)
    assert code == 2 and "holds files no run writes ('notes.txt', 'sub')" in " ".join(err.split()), err
    assert (out / "notes.txt").read_text() == "mine" and sha256_file(out / "model.safetensors") == first
    (out / "notes.txt").unlink()
    (out / "sub").rmdir()
    (out / "onnx").mkdir()  # what a run writes (an export here) goes with it
    r = api.distill(teacher=teacher / "teacher", student="bilstm", out=out, overwrite=True, **FAST)
    assert r["student"]["name"] == "bilstm" and not (out / "onnx").exists(), "--overwrite replaces the run as a whole"
    with pytest.raises(KdexamError, match=r"--resume: the run in .* another config \(train\.epochs differ"):
        api.distill(teacher=teacher / "teacher", student="bilstm", out=out, resume=True, **{**FAST, "epochs": 2})


def test_the_same_command_again_never_drops_an_interrupted_runs_checkpoint(teacher, tmp_path, capsys, monkeypatch):
    """A plain rerun into a killed run used to start at step 1 and throw its checkpoint away."""
    from kdexam.training import trainer

    save = trainer.save_checkpoint

    def save_then_die(*args, **kw):
        save(*args, **kw)
        raise KeyboardInterrupt  # stands in for the kill, once the first checkpoint is written

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    out, every = tmp_path / "s", ["train.checkpoint_every=3"]
    with pytest.raises(KeyboardInterrupt):
        api.distill(teacher=teacher / "teacher", student="cnn", out=out, set=every, **{**FAST, "epochs": 2})
    monkeypatch.setattr(trainer, "save_checkpoint", save)
    checkpoint = sorted(out.glob("checkpoint*"))
    assert checkpoint and not (out / "metrics.json").exists()
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "cnn", "--out", str(out),
                       *FAST_ARGS[2:], "--epochs", "2", "--set", every[0]], capsys)
    assert code == 2 and "holds an interrupted run of this config" in " ".join(err.split()), err
    assert sorted(out.glob("checkpoint*")) == checkpoint, "the refused rerun must leave the checkpoint"
    r = api.distill(teacher=teacher / "teacher", student="cnn", out=out, resume=True, set=every, **{**FAST, "epochs": 2})
    assert r["stages"][0]["steps"] == 8 and "resuming from" in capsys.readouterr().err


def test_ctrl_c_says_how_to_continue_and_resume_needs_only_out(teacher, tmp_path, capsys, monkeypatch):
    """Ctrl-C ended with exit code 130 and nothing said; ``--out DIR --resume`` alone failed ("No teacher
    given") although the run's own config.yaml says everything."""
    from kdexam.training import trainer

    save = trainer.save_checkpoint

    def save_then_die(*args, **kw):
        save(*args, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    out = tmp_path / "s"
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "cnn", "--out", str(out),
                       *FAST_ARGS[2:], "--epochs", "2", "--set", "train.checkpoint_every=3"], capsys)
    assert code == 130 and "interrupted; the same command with --resume continues" in " ".join(err.split()), err
    monkeypatch.setattr(trainer, "save_checkpoint", save)
    code, err = _exit(["distill", "--out", str(out), "--resume"], capsys)
    assert code == 0 and "resuming from" in err, err
    assert json.loads((out / "metrics.json").read_text())["stages"][0]["steps"] == 8


def test_a_teacher_layers_count_beyond_the_teacher_is_refused_before_any_data_is_read(teacher, tmp_path, monkeypatch):
    import kdexam.training.distill as distill_module

    monkeypatch.setattr(distill_module, "load_data", lambda *a, **k: pytest.fail("the data was read before the check"))
    with pytest.raises(KdexamError, match=r"teacher-layers:99 asks for 99 layers but the teacher has \d+"):
        api.distill(teacher=teacher / "teacher", student="teacher-layers:99", out=tmp_path / "s", **FAST)
    with pytest.raises(KdexamError, match=r"Layer index 9 is out of range"):
        api.distill(teacher=teacher / "teacher", student="teacher-layers:2", layers=[0, 9], out=tmp_path / "s", **FAST)


def test_damaged_teacher_weights_never_load_silently(teacher, tmp_path, capsys):
    damaged = tmp_path / "teacher"
    shutil.copytree(teacher / "teacher", damaged)
    tensors = load_file(damaged / "model.safetensors")
    dropped = sorted(k for k in tensors if "layer.1.attention" in k)
    save_file({k: v for k, v in tensors.items() if k not in dropped}, damaged / "model.safetensors")
    with pytest.raises(KdexamError, match=r"do not match its config: \d+ weight\(s\) missing \(.*layer\.1\.attention"):
        api.distill(teacher=damaged, student="cnn", out=tmp_path / "s", **FAST)
    code, err = _exit(["predict", str(damaged), "--input", str(_texts(tmp_path))], capsys)
    assert code == 2 and "fine-tune the teacher again" in err
    # a student's weights in the teacher's place: every encoder weight missing
    student = tmp_path / "student"
    api.distill(teacher=teacher / "teacher", student="cnn", out=student, **FAST)
    shutil.copy(student / "model.safetensors", damaged / "model.safetensors")
    with pytest.raises(KdexamError, match="do not match its config"):
        api.distill(teacher=damaged, student="teacher-layers:1", out=tmp_path / "t", **FAST)


def _texts(tmp_path):
    p = tmp_path / "texts.txt"
    p.write_text("a fine film\n")
    return p


@pytest.mark.parametrize("flag,value,key", [
    ("--epochs", "0", "train.epochs"), ("--batch-size", "0", "train.batch_size"), ("--max-train", "-5", "data.max_train"),
    ("--lr", "0", "train.learning_rate"), ("--max-length", "2", "data.max_length"),
])
def test_numeric_flags_are_checked_before_any_work(teacher, tmp_path, capsys, flag, value, key):
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "cnn", "--out", str(tmp_path / "s"),
                       flag, value], capsys)
    assert code == 2 and f"'{key}' is invalid" in err and f"(got {value}" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("targets,match", [
    ([1.5, float("nan"), 2.0], "target nan"), ([1.5, float("inf"), 2.0], "target inf"), ([2.0, 2.0, 2.0], "Every target"),
])
def test_bad_regression_targets_are_refused_at_load(tmp_path, tiny_bert_dir, targets, match):
    rows = [{"text": f"text number {i}", "label": targets[i % len(targets)]} for i in range(30)]
    f = tmp_path / "train.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json writes NaN / Infinity
    with pytest.raises(KdexamError, match=match):
        api.finetune_teacher(data=f, model=tiny_bert_dir, task="regression", out=tmp_path / "t", epochs=1)
    assert not (tmp_path / "t").exists()


def test_zero_counts_and_a_directory_output_are_refused(teacher, tmp_path, capsys):
    code, err = _exit(["export", str(teacher / "teacher"), "--max-examples", "0"], capsys)
    assert code == 2 and "--max-examples" in err and not (teacher / "teacher" / "onnx").exists()
    code, err = _exit(["predict", str(teacher / "teacher"), "--input", str(_texts(tmp_path)), "--output", str(tmp_path)], capsys)
    assert code == 2 and "is a directory" in err
    code, err = _exit(["predict", str(teacher / "teacher"), "--input", str(_texts(tmp_path)), "--batch-size", "0"], capsys)
    assert code == 2 and "--batch-size" in err


def test_temporaries_of_killed_writers_are_swept_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    import numpy as np

    from kdexam.paths import HOST_TAG, temp_prefix
    from kdexam.teachers.cache import pack, read_output, write_output

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    d = tmp_path / "entry"
    d.mkdir()
    stale = d / f".logits.npy.kdexam-{dead}-abc.tmp"
    stale.write_bytes(b"half")
    stale_dir = d / f".student.kdexam-{dead}-xyz"
    stale_dir.mkdir()
    live = d / f"{temp_prefix('logits.npy')}def.tmp"
    live.write_bytes(b"being written")
    # a writer on another machine (or in another PID namespace) sharing this home: its process id
    # means nothing here, so its file stays (an audit, 2026-12-04: a live writer's file was removed)
    elsewhere = d / f".logits.npy.kdexam-{dead}-h{'0' * 8 if HOST_TAG != '0' * 8 else '1' * 8}-ghi.tmp"
    elsewhere.write_bytes(b"being written elsewhere")
    mine_dead = d / f".logits.npy.kdexam-{dead}-h{HOST_TAG}-jkl.tmp"
    mine_dead.write_bytes(b"half")
    write_output(d, "logits", pack("logits", [np.ones(3, dtype=np.float32)]))
    assert not stale.exists() and not stale_dir.exists() and live.exists()
    assert elsewhere.exists() and not mine_dead.exists()
    assert read_output(d, "logits").data.tolist() == [[1.0, 1.0, 1.0]]


CACHE_JOB = """
import sys
import numpy as np
from kdexam.config import DataConfig
from kdexam.data.splits import load_data
from kdexam.teachers.teacher import Teacher

teacher, data, out = sys.argv[1:]
examples = load_data(DataConfig(name=data)).train
outputs = Teacher(teacher).outputs(examples, ["logits", "hidden.2"])
np.savez(out, logits=np.stack([outputs.example(i) for i in range(len(examples))]),
         hidden=np.concatenate([outputs.example(i, "hidden.2") for i in range(len(examples))]))
"""


def test_two_processes_filling_the_same_cache_both_succeed(teacher, tmp_path):
    import os
    import subprocess
    import sys

    import numpy as np

    home = tmp_path / "home"  # an empty cache, shared by both
    env = {**os.environ, "KDEXAM_HOME": str(home), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", CACHE_JOB, str(teacher / "teacher"), str(teacher / "data"),
                               str(tmp_path / f"out{i}.npz")], env=env, stderr=subprocess.PIPE, text=True) for i in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    a, b = np.load(tmp_path / "out0.npz"), np.load(tmp_path / "out1.npz")
    assert np.array_equal(a["logits"], b["logits"]) and np.array_equal(a["hidden"], b["hidden"])
    entries = [d for d in (home / "cache").rglob("*") if d.is_dir() and list(d.glob("*.json"))]
    assert len(entries) == 1 and not [f for f in entries[0].iterdir() if f.name.startswith(".")], "no temporary left"
    # and a third reader finds a valid entry (no rebuild: the teacher does not run)
    r = subprocess.run([sys.executable, "-c", CACHE_JOB, str(teacher / "teacher"), str(teacher / "data"), str(tmp_path / "out2.npz")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "computing" not in r.stderr + r.stdout and "corrupted" not in r.stderr + r.stdout


def test_a_folder_named_like_a_builtin_is_not_taken_for_the_input(tmp_path, monkeypatch):
    from kdexam.config import TeacherRunConfig
    from kdexam.rundir import check_out

    monkeypatch.chdir(tmp_path)
    (tmp_path / "movie-sentiment").mkdir()  # an earlier run's --out, named after the built-in dataset
    cfg = TeacherRunConfig(out="movie-sentiment")
    check_out(cfg, tmp_path / "movie-sentiment", {"model": "minilm-l6", "data": "movie-sentiment"})  # no error
    with pytest.raises(KdexamError, match="is the data of this run"):
        check_out(cfg, tmp_path / "movie-sentiment", {"data": str(tmp_path / "movie-sentiment")})


def _tiny_fit(tmp_path, loss_at, cfg_kw):
    """fit() on a 1-layer BERT whose loss is ``loss_at(call number, true loss)``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from conftest import build_tokenizer, sentiment_examples
    from kdexam.config import TrainConfig
    from kdexam.data.encode import encode, make_loader
    from kdexam.data.readers import Example
    from kdexam.evaluation.predict import evaluate
    from kdexam.tasks import Task
    from kdexam.training.trainer import fit, make_accelerator

    torch.manual_seed(0)
    tok, task = build_tokenizer(), Task("classification", ["neg", "pos"])
    train = [Example(r["text"], None, r["label"]) for r in sentiment_examples(64, seed=1)]
    val = [Example(r["text"], None, r["label"]) for r in sentiment_examples(16, seed=2)]
    model = BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                     intermediate_size=32, max_position_embeddings=32, num_labels=2))
    ftrain, fval = encode(train, tok, task, 32), encode(val, tok, task, 32)
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "checkpoint_every": 2, "keep_checkpoint": True,
                         **cfg_kw})
    calls = {"n": 0}

    def loss_fn(m, batch):
        calls["n"] += 1
        return loss_at(calls["n"], m(**{k: v for k, v in batch.items() if k != "index"}).loss)

    summary = fit(model, make_loader(ftrain, tok, task, cfg.batch_size, shuffle=True, seed=3), loss_fn,
                  lambda m: evaluate(m, fval, val, tok, task)[0], cfg, make_accelerator(cfg), "accuracy",
                  checkpoint_dir=tmp_path / "checkpoint")
    return model, summary


def test_a_non_finite_loss_skips_its_step_and_too_many_stop_the_run(tmp_path):
    import torch

    nan = torch.tensor(float("nan"), requires_grad=True)
    model, summary = _tiny_fit(tmp_path / "a", lambda n, loss: nan * loss if n in (3, 9) else loss, {})
    assert summary["skipped_steps"] == 2 and summary["steps"] == 16
    assert all(torch.isfinite(p).all() for p in model.parameters()), "a NaN step must not reach the weights"
    with pytest.raises(KdexamError, match=r"NaN or infinite for 3 steps in a row \(epoch 1, step 7\); the last good checkpoint is kept"):
        _tiny_fit(tmp_path / "b", lambda n, loss: loss * float("inf") if n >= 5 else loss, {"max_nonfinite_steps": 3})
    from kdexam.training.checkpoint import find_checkpoint

    assert find_checkpoint(tmp_path / "b" / "checkpoint") is not None


def test_checkpoints_are_written_every_n_steps_or_after_each_evaluation(tmp_path, monkeypatch):
    """Every ``checkpoint_every`` steps and not after evaluations (they cost a share of a short run);
    with 0, after each evaluation (the end of each epoch here) instead."""
    import kdexam.training.trainer as trainer

    written = []
    save = trainer.save_checkpoint
    monkeypatch.setattr(trainer, "save_checkpoint", lambda d, m, o, s, position, best, **kw: (
        written.append((position["step"], len(position["history"]))), save(d, m, o, s, position, best, **kw)))
    _tiny_fit(tmp_path / "a", lambda n, loss: loss, {"checkpoint_every": 5, "keep_checkpoint": False})  # 8 steps an epoch, 2 epochs
    assert written == [(5, 0), (10, 1), (15, 1)]
    written.clear()
    _tiny_fit(tmp_path / "k", lambda n, loss: loss, {"checkpoint_every": 5})  # a kept checkpoint is the finished run's
    assert written == [(5, 0), (10, 1), (15, 1), (16, 2)]
    written.clear()
    _tiny_fit(tmp_path / "b", lambda n, loss: loss, {"checkpoint_every": 0, "evals_per_epoch": 2, "patience": 10})
    assert written == [(4, 1), (8, 2), (12, 3), (16, 4)]


def test_the_source_never_runs_untrusted_code_or_unpickles():
    # A static guard over the package's modules; it names the unsafe calls only to search for them.  # reviewed
    import re
    from pathlib import Path

    import kdexam

    root = Path(kdexam.__file__).parent
    bad = {"pickle import": r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", "yaml.load": r"yaml\.load\(",
           "unsafe yaml": r"yaml\.(unsafe_load|full_load)\(", "trust_remote_code=True": r"trust_remote_code\s*=\s*True",
           "allow_pickle=True": r"allow_pickle\s*=\s*True"}
    found = []
    for f in sorted(root.rglob("*.py")):
        text = f.read_text(encoding="utf-8")
        found += [f"{f.relative_to(root)}: {name}" for name, pattern in bad.items() if re.search(pattern, text, re.M)]
        found += [f"{f.relative_to(root)}: torch.load without weights_only=True" for call in re.findall(r"torch\.load\([^)]*\)", text)
                  if "weights_only=True" not in call]
    assert not found, found
    assert len(list(root.rglob("*.py"))) > 50  # it did read the package


def test_student_files_are_replaced_as_one_unit(runs, tmp_path, monkeypatch):  # noqa: F811
    import os

    from safetensors.torch import load_file as load

    from kdexam.students import registry

    run = shutil.copytree(runs.student("cnn", "cls"), tmp_path / "s")
    model, tok, spec, task = registry.load_student(run)
    old = load(run / "model.safetensors")
    # a kill while the new files are moved in: no student.json is left, so nothing loads half old, half new
    moved = {"n": 0}
    real_replace = os.replace

    def dying_replace(src, dst):
        moved["n"] += 1
        if moved["n"] == 2:
            raise KeyboardInterrupt  # stands in for the kill
        return real_replace(src, dst)

    monkeypatch.setattr(registry.os, "replace", dying_replace)
    with torch_no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        registry.save_student(model, tok, spec, task, run)
    monkeypatch.setattr(registry.os, "replace", real_replace)
    with pytest.raises(KdexamError, match="has no student.json"):
        registry.load_student(run)
    registry.save_student(model, tok, spec, task, run)  # saving again completes it
    assert not all((load(run / "model.safetensors")[k] == old[k]).all() for k in old)
    registry.load_student(run)
    # weights replaced behind student.json's back are caught by the recorded hash
    shutil.copy(runs.student("cnn", "cls") / "model.safetensors", run / "model.safetensors")
    with pytest.raises(KdexamError, match="SHA-256 differs"):
        registry.load_student(run)


def torch_no_grad():
    import torch

    return torch.no_grad()


def test_overwrite_with_a_typo_keeps_the_old_run(teacher, tmp_path, capsys):
    """--overwrite removes the old run only once the new one is set up: a bad flag costs nothing."""
    out = tmp_path / "s"
    api.distill(teacher=teacher / "teacher", student="cnn", out=out, **FAST)
    first = sha256_file(out / "model.safetensors")
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "cnn", "--out", str(out), "--overwrite",
                       "--epochs", "1", "--max-train", "64", "--objective", "kl:temprature=2"], capsys)
    assert code == 2 and "temprature" in err
    assert sha256_file(out / "model.safetensors") == first, "a refused --overwrite must leave the old run intact"


def test_a_users_own_config_is_neither_replaced_nor_removed(teacher, tmp_path, capsys):
    exp = tmp_path / "exp"
    exp.mkdir()
    mine = f"# my experiment\nteacher: {teacher / 'teacher'}\nstudent: {{kind: cnn}}\nout: {exp}\n"
    (exp / "config.yaml").write_text(mine)
    (exp / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        code, err = _exit(["distill", "--config", str(exp / "config.yaml"), "--epochs", "1", "--max-train", "64", *extra], capsys)
        assert code == 2 and "is inside --out" in " ".join(err.split())
    assert (exp / "config.yaml").read_text() == mine and (exp / "notes.txt").read_text() == "mine"
    out = tmp_path / "user-folder"  # a folder with only a config.yaml of the user's is no run: --overwrite keeps its files
    out.mkdir()
    (out / "config.yaml").write_text("seed: 1\n")
    (out / "notes.txt").write_text("mine")
    api.distill(teacher=teacher / "teacher", student="cnn", out=out, overwrite=True, **FAST)
    assert (out / "notes.txt").read_text() == "mine" and (out / "metrics.json").is_file()


def test_run_files_are_readable_as_a_plain_open_makes_them(teacher, tmp_path):
    import os

    from kdexam.paths import UMASK

    out = tmp_path / "s"
    api.distill(teacher=teacher / "teacher", student="cnn", out=out, **FAST)
    for name in ("config.yaml", "metrics.json", "student.json", "model.safetensors", "README.md"):
        assert os.stat(out / name).st_mode & 0o777 == 0o666 & ~UMASK, name


def test_unwritable_outputs_and_dropped_api_flags_are_sentences(teacher, tmp_path, capsys):
    from kdexam.config import DistillRunConfig

    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    for out in (tmp_path / "adir", tmp_path / "afile" / "x.json"):
        code, err = _exit(["report", str(teacher / "teacher"), "--out", str(out)], capsys)
        assert code == 2 and "Cannot write" in err, err
    for argv in (["evaluate", str(teacher / "teacher"), "--max-eval", "8"], ["bench", str(teacher / "teacher"), "--no-save"]):
        code, err = _exit([*argv, "--out", "/sys/kdexam-test.json"], capsys)  # refused before the work, not after it
        assert code == 2 and "Cannot write --out '/sys/kdexam-test.json' (" in " ".join(err.split()), err
    cfg = DistillRunConfig(teacher=str(teacher / "teacher"), out=str(tmp_path / "o"))
    with pytest.raises(KdexamError, match=r"Got a DistillRunConfig and flags \(bogus_flag, epochs\)"):
        api.distill(cfg, epochs=1, bogus_flag=3)


def test_set_reaches_into_lists_sets_null_and_fills_empty_sections(tmp_path):
    from kdexam.config import DistillRunConfig
    from kdexam.exam import load_exam_config

    cfg = load_exam_config("quick", {"datasets.0.max_train": 8, "budget.min_retention": None})
    assert cfg.datasets[0].max_train == 8 and cfg.budget.min_retention is None
    with pytest.raises(KdexamError, match=r"'datasets.9.max_train' goes inside 'datasets', which is a list of"):
        load_exam_config("quick", {"datasets.9.max_train": 8})
    with pytest.raises(KdexamError, match=r"'name.x' goes inside 'name', which is not a mapping"):
        load_exam_config("quick", {"name.x": 1})
    (tmp_path / "c.yaml").write_text("train:\nseed: 3\n")  # an empty section, then a flag inside it
    assert api.distill_config(tmp_path / "c.yaml", epochs=1).train.epochs == 1
    assert isinstance(api.distill_config(tmp_path / "c.yaml"), DistillRunConfig)


def test_resume_of_a_finished_run_does_not_train_it_again(teacher, tmp_path, capsys):
    out = tmp_path / "s"
    first = api.distill(teacher=teacher / "teacher", student="cnn", out=out, **FAST)
    stamp = (out / "metrics.json").stat().st_mtime_ns
    again = api.distill(teacher=teacher / "teacher", student="cnn", out=out, resume=True, **FAST)
    assert again == json.loads((out / "metrics.json").read_text()) and again["student"] == first["student"]
    assert (out / "metrics.json").stat().st_mtime_ns == stamp and "is finished" in capsys.readouterr().err


def test_resume_of_a_finished_run_that_kept_its_checkpoint_leaves_it_alone(teacher, tmp_path, capsys):
    """An audit (2026-12-04): a finished run with train.keep_checkpoint was scored again on --resume
    and its metrics.json rewritten, losing what 'kdexam bench' had added."""
    out = tmp_path / "s"
    api.distill(teacher=teacher / "teacher", student="cnn", out=out, set=["train.keep_checkpoint=true"], **FAST)
    assert any(out.glob("checkpoint*"))
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["student"]["efficiency"] = {"latency": []}  # as kdexam bench adds it
    (out / "metrics.json").write_text(json.dumps(metrics))
    again = api.distill(teacher=teacher / "teacher", student="cnn", out=out, set=["train.keep_checkpoint=true"], resume=True, **FAST)
    assert again == metrics == json.loads((out / "metrics.json").read_text()) and "is finished" in capsys.readouterr().err


def test_resume_after_the_teacher_or_the_data_changed_is_refused(teacher, tmp_path, capsys):
    """An audit (2026-12-04): a run interrupted, its teacher's weights replaced in place, then resumed,
    trained its first part on one teacher and the rest on the other, without a word (config.yaml
    names the teacher by its path). The same for a teacher run whose data file was edited."""
    from safetensors.torch import load_file, save_file

    t = shutil.copytree(teacher / "teacher", tmp_path / "t")
    out = tmp_path / "s"
    api.distill(teacher=t, student="cnn", out=out, set=["train.keep_checkpoint=true"], **FAST)
    (out / "metrics.json").unlink()  # as if interrupted after its last checkpoint
    api.distill(teacher=t, student="cnn", out=out, set=["train.keep_checkpoint=true"], resume=True, **FAST)  # same inputs: resumes
    (out / "metrics.json").unlink()
    weights = load_file(t / "model.safetensors")
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}, t / "model.safetensors")
    code, err = _exit(["distill", "--teacher", str(t), "--student", "cnn", "--out", str(out), "--resume"], capsys)
    assert code == 2 and "changed since it was interrupted" in " ".join(err.split()), err
    data = shutil.copytree(teacher / "data", tmp_path / "data")
    tout = tmp_path / "teacher"
    api.finetune_teacher(data=data, model=teacher / "teacher", out=tout, **FAST)
    (tout / "metrics.json").unlink()
    rows = [json.loads(line) for line in (data / "validation.jsonl").read_text().splitlines()]
    rows[0]["text"] = "an edited sentence"
    (data / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, err = _exit(["teacher", "--out", str(tout), "--resume"], capsys)
    assert code == 2 and "changed since it was interrupted" in " ".join(err.split()), err


def test_resume_with_a_mistyped_out_says_it_starts_a_new_run(teacher, tmp_path, capsys):
    """--resume into a folder with no run starts one (exams and scripts rely on it), but a user's
    mistyped --out used to retrain from scratch without a word."""
    shutil.copytree(teacher / "teacher", tmp_path / "student-cnn")
    code, err = _exit(["distill", "--teacher", str(tmp_path / "no-teacher"), "--student", "cnn", "--out",
                       str(tmp_path / "student-cmn"), "--resume"], capsys)
    err = " ".join(err.split())
    assert code == 2 and "holds no run to continue; starting a new run there" in err
    assert f"Did you mean '{tmp_path / 'student-cnn'}'" in err
    code, err = _exit(["distill", "--teacher", str(tmp_path / "no-teacher"), "--student", "cnn", "--out",
                       str(tmp_path / "student-cnn"), "--resume"], capsys)
    assert code == 2 and "holds no run" not in " ".join(err.split())



def test_the_resume_note_survives_a_folder_it_may_not_read(tmp_path, capsys, monkeypatch):
    """/tmp holds root-only folders (systemd-private-*): Path.exists raised PermissionError there."""
    import pathlib

    from kdexam.rundir import note_nothing_to_resume

    (tmp_path / "locked").mkdir()
    exists = pathlib.Path.exists

    def guarded(self, *args, **kwargs):
        if "locked" in self.parts:
            raise PermissionError(13, "Permission denied", str(self))
        return exists(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "exists", guarded)
    note_nothing_to_resume(tmp_path / "new-run", resume=True)
    assert "holds no run to continue" in " ".join(capsys.readouterr().err.split())


def test_out_is_never_a_built_in_models_folder(tmp_path, capsys):
    from kdexam.teachers.builtin_models import model_dir

    model_dir("minilm-l6").mkdir(parents=True)  # (as prepared, in this test's kdexam home)
    code, err = _exit(["teacher", "--data", "movie-sentiment", "--model", "minilm-l6", "--out", str(model_dir("minilm-l6")),
                       "--overwrite"], capsys)
    assert code == 2 and "is the model of this run" in " ".join(err.split())


def test_the_fp16_loss_scale_is_in_the_checkpoint(tmp_path):
    """fp16 training (GPU) scales its loss by a factor that halves on overflow and doubles after a
    run of clean steps; a resumed run must start from the scale and counter it was killed with,
    not from 65,536 again. (The scaler's own CPU form is used here: the same state.)"""
    import torch

    from kdexam.training.checkpoint import load_checkpoint, save_checkpoint

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cpu", growth_interval=5)
    for overflow in (False, True, False, False):  # halve once, then two clean steps towards the next doubling
        opt.zero_grad()
        scaler.scale(model(torch.ones(1, 3)).sum() * (float("inf") if overflow else 1.0)).backward()
        scaler.step(opt)
        scaler.update()
    saved = scaler.state_dict()
    assert saved["scale"] == 32768.0 and saved["_growth_tracker"] == 2, saved
    save_checkpoint(tmp_path / "c", model, opt, sched, {"step": 4}, None, scaler=scaler)
    fresh = torch.amp.GradScaler("cpu", growth_interval=5)
    load_checkpoint(tmp_path / "c", torch.nn.Linear(3, 2), torch.optim.AdamW(model.parameters()), sched, scaler=fresh)
    assert fresh.state_dict() == saved
    save_checkpoint(tmp_path / "n", model, opt, sched, {"step": 4}, None, scaler=None)  # no scaler (fp32, bf16): none saved
    untouched = torch.amp.GradScaler("cpu", growth_interval=5)
    load_checkpoint(tmp_path / "n", model, opt, sched, scaler=untouched)
    assert untouched.state_dict()["scale"] == 65536.0


# ---- found by a review of the command line's bad input (2026-12-03) ----------------------------------


@pytest.mark.parametrize("flags,says", [
    (["--lr", "inf"], "train.learning_rate' is invalid: Input should be a finite number"),
    (["--set", "train.weight_decay=.inf"], "Input should be a finite number"),
    (["--seed", "-1"], "'seed' is invalid"),
    (["--seed", "4294967296"], "'seed' is invalid"),
    (["--num-threads", "10000000000"], "less than or equal to 4096"),
    (["--augment-n", "3"], "transfer.augment_n has no effect without transfer.augment"),
    (["--max-unlabelled", "5"], "transfer.max_unlabelled has no effect without transfer.unlabelled"),
    (["--combine", "logits"], "do nothing with one"),
    # an audit of training (2026-12-04): settings accepted and ignored
    (["--min-confidence", "0.9"], "transfer.min_confidence filters teacher-labelled rows, and there are none"),
    (["--augment", "ngram", "--augment-p", "0.9"], "transfer.augment_p is read by the mask, neighbours and mlm augmenters"),
    (["--augment", "mask", "--augment-vectors", "v.txt"], "transfer.augment_vectors is read by the neighbours augmenter"),
    (["--augment", "mask", "--augment-mlm-model", "m"], "transfer.augment_mlm_model is read by the mlm augmenter"),
    (["--augment", "mask,mask"], "transfer.augment names mask more than once"),
    (["--unlabelled", "movie-dialog", "--unlabelled-column", "nosuch"], "--unlabelled-column names a column of a CSV"),
    (["--objective", "gold", "--augment", "mask"], "Every stage trains on the labelled rows alone (data: gold, or the gold objective alone)"),
])
def test_numbers_and_settings_that_did_nothing_or_ruined_the_run_are_refused(teacher, tmp_path, capsys, flags, says):
    """An infinite learning rate trained a NaN model with exit 0; a seed numpy cannot take and a huge
    thread count were tracebacks; settings of an absent transfer source or ensemble did nothing."""
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "cnn", "--out", str(tmp_path / "s"),
                       "--epochs", "1", *flags], capsys)
    assert code == 2 and says in err, err
    assert not (tmp_path / "s").exists()


def test_output_files_never_replace_an_input_or_a_runs_file(teacher, tmp_path, capsys):
    run = tmp_path / "teacher"
    shutil.copytree(teacher / "teacher", run)
    texts = tmp_path / "in.txt"
    texts.write_text("a good film\n", encoding="utf-8")
    before = {p.name: sha256_file(p) for p in run.iterdir() if p.is_file()}
    for argv, says in [(["predict", str(run), "--input", str(texts), "--output", str(texts)], "is an input of this command"),
                       (["predict", str(run), "--input", str(texts), "--output", str(run / "config.json")], "is a file of the run"),
                       (["report", str(run), "--out", str(run / "metrics.json")], "is a file of the run"),
                       (["evaluate", str(run), "--split", "validation", "--out", str(run / "task.json")], "is a file of the run")]:
        code, err = _exit(argv, capsys)
        assert code == 2 and says in err, (argv, err)
    assert texts.read_text(encoding="utf-8") == "a good film\n"
    assert {p.name: sha256_file(p) for p in run.iterdir() if p.is_file()} == before
    for _ in range(2):  # a file of the user's there is fine, and the same command again
        code, _ = _exit(["report", str(run), "--out", str(run / "report.json")], capsys)
        assert code == 0 and json.loads((run / "report.json").read_text())[0]["model"]


def test_overwrite_never_removes_an_input_kept_inside_out(teacher, tmp_path, capsys):
    out = tmp_path / "s"
    out.mkdir()
    vectors = out / "vec.txt"
    vectors.write_text("good 0.1 0.2\nfilm 0.3 0.4\n", encoding="utf-8")
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "bilstm", "--embeddings", "glove",
                       "--vectors-file", str(vectors), "--out", str(out), "--overwrite", "--epochs", "1"], capsys)
    assert code == 2 and "holds the --vectors-file" in err and vectors.is_file()


def test_a_kdexam_home_that_is_a_file_is_one_sentence(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home.txt"
    home.write_text("", encoding="utf-8")
    monkeypatch.setenv("KDEXAM_HOME", str(home))
    code, err = _exit(["data", "list"], capsys)
    assert code == 2 and "is a file, not a folder" in err


def test_json_values_that_are_not_text_are_refused(tmp_path):
    from kdexam.config import DataConfig
    from kdexam.data.splits import load_data

    from conftest import write_jsonl

    p = write_jsonl(tmp_path / "train.jsonl", [{"text": ["a", "good", "film"], "label": ["O", "O", "O"]}] * 20)
    with pytest.raises(KdexamError, match="has a 'text' that is not text \\(list\\)"):
        load_data(DataConfig(name=str(p)))


def test_an_exam_never_writes_into_its_given_teacher_run(teacher, tmp_path):
    import yaml

    cfg = tmp_path / "exam.yaml"
    cfg.write_text(yaml.safe_dump({"datasets": [str(teacher / "data")], "teachers": [{"run": str(teacher / "teacher")}],
                                   "students": ["cnn"]}), encoding="utf-8")
    before = sorted(p.name for p in (teacher / "teacher").iterdir())
    for out, says in [(teacher / "teacher", "is the teacher run"), (teacher / "teacher" / "exam", "is inside the teacher run"),
                      (teacher, "holds the teacher run")]:
        with pytest.raises(KdexamError, match=says):
            api.exam(str(cfg), out=out)
    with pytest.raises(KdexamError, match="must be a positive number \\(got nan\\)"):
        api.exam(str(cfg), out=tmp_path / "e", max_latency_ms=float("nan"))
    assert sorted(p.name for p in (teacher / "teacher").iterdir()) == before


def test_relative_inputs_are_recorded_absolute_and_read_from_any_folder(teacher, tmp_path, monkeypatch):
    """A run started with ``--data mss --teacher ../t`` recorded those strings as given, so 'kdexam
    export RUN' from another folder found no data and tried the hub with the name 'mss'."""
    import yaml

    from kdexam.export.onnx import run_examples

    work = tmp_path / "work"
    shutil.copytree(teacher / "data", work / "mss")
    monkeypatch.chdir(work)
    api.distill(teacher=os.path.relpath(teacher / "teacher", work), data="mss", student="cnn", out="runs/s", **FAST)
    recorded = yaml.safe_load((work / "runs" / "s" / "config.yaml").read_text(encoding="utf-8"))
    assert recorded["data"]["name"] == str(work / "mss") and recorded["teacher"] == str((teacher / "teacher").resolve())
    monkeypatch.chdir(tmp_path)  # elsewhere: the run still names its data and teacher
    examples, task = run_examples(work / "runs" / "s")
    assert len(examples) == 20 and task.labels == ["neg", "pos"]
    # a run recorded before paths were made absolute resumes from the folder it was started in
    monkeypatch.chdir(work)
    recorded["data"]["name"] = "mss"
    (work / "runs" / "s" / "config.yaml").write_text(yaml.safe_dump(recorded), encoding="utf-8")
    r = api.distill(teacher=str(teacher / "teacher"), data="mss", student="cnn", out="runs/s", resume=True, **FAST)
    assert r["student"]["name"] == "cnn"


@pytest.mark.parametrize("text,strict_says", [
    (None, None),  # no config.yaml
    ("", None),  # an empty one
    ("data: {name: x\n", "not a valid YAML config"),  # unclosed
    ("- a\n- b\n", "not a valid YAML config"),  # not a mapping
    (b"\xff\xfe\x00", "not a valid YAML config"),  # not UTF-8
])
def test_a_runs_config_is_read_in_one_place_and_a_damaged_one_is_a_sentence_or_nothing(tmp_path, text, strict_says):
    from kdexam.export.onnx import run_examples
    from kdexam.inference.predictor import DEFAULT_MAX_LENGTH, run_max_length
    from kdexam.paths import read_run_config

    if isinstance(text, bytes):
        (tmp_path / "config.yaml").write_bytes(text)
    elif text is not None:
        (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    if strict_says:
        with pytest.raises(KdexamError, match=strict_says):
            read_run_config(tmp_path)
    else:
        assert read_run_config(tmp_path) == {}
    assert read_run_config(tmp_path, strict=False) == {}
    # where the file only fills in a default, a damaged one leaves the default
    assert run_max_length(tmp_path) == DEFAULT_MAX_LENGTH
    with pytest.raises(KdexamError, match="has no config.yaml naming its data; pass --data"):
        run_examples(tmp_path)


def test_a_runs_config_read_back_is_what_was_written(teacher):
    from kdexam.paths import read_run_config

    recorded = read_run_config(teacher / "teacher")
    assert recorded["data"]["name"] and recorded["model"] and recorded["seed"] == 42


def test_an_out_the_system_refuses_is_a_sentence_before_any_work(teacher, tmp_path, capsys, monkeypatch):
    """/sys refuses a new folder (EPERM, even to root) and /proc has none to make one in (ENOENT): both
    ended in a traceback at the run's first write, after the data and the teacher pass."""
    import kdexam.training.distill as distill_module

    monkeypatch.setattr(distill_module, "load_data", lambda *a, **k: pytest.fail("the data was read before the check"))
    for bad in ("/sys/kdexam-test-out", "/proc/kdexam-test-out/run"):
        code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "cnn", "--out", bad, *FAST_ARGS], capsys)
        assert code == 2 and f"Cannot write --out '{bad}'" in " ".join(err.split()) and "Traceback" not in err, err
    code, err = _exit(["teacher", "--data", str(teacher / "data"), "--model", str(teacher / "teacher"),
                       "--out", "/sys/kdexam-test-out", *FAST_ARGS], capsys)
    assert code == 2 and "Cannot write --out '/sys/kdexam-test-out'" in " ".join(err.split()), err
    (tmp_path / "file").write_text("x")
    code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "cnn", "--out",
                       str(tmp_path / "file" / "run"), *FAST_ARGS], capsys)
    assert code == 2 and "is a file" in err, err


def test_an_os_error_on_a_path_is_a_sentence(capsys, monkeypatch):
    """The last line of defence: a path the system refuses where no check caught it first (here the
    kdexam home under /sys) is exit code 2 and a sentence naming the path, not a traceback."""
    from kdexam import api

    def refuse(*a, **k):
        raise PermissionError(1, "Operation not permitted", "/sys/kx")

    monkeypatch.setattr(api, "prepare_data", refuse)
    code, err = _exit(["data", "prepare", "trec6"], capsys)
    assert code == 2 and "Cannot use '/sys/kx' (Operation not permitted)" in " ".join(err.split()), err
    monkeypatch.setattr(api, "prepare_data", lambda *a, **k: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):  # (an error with no path is not the user's to fix: it stays a traceback)
        _exit(["data", "prepare", "trec6"], capsys)


def test_true_or_false_for_a_number_is_refused(teacher, tmp_path, capsys):
    """pydantic reads True as 1 for an int: --set train.batch_size=true trained at batch size 1."""
    for setting in ("train.batch_size=true", "student.hidden_size=false", "train.learning_rate=true"):
        code, err = _exit(["distill", "--teacher", str(teacher / "teacher"), "--student", "cnn", "--out", str(tmp_path / "s"),
                           "--set", setting], capsys)
        key, value = setting.split("=")
        assert code == 2 and f"Config value '{key}' is invalid: must be a number, not {value}" in " ".join(err.split()), err
    assert not (tmp_path / "s").exists()


def test_true_or_false_for_a_number_of_an_exam_or_bench_is_refused(tmp_path, capsys):
    """The exam's and the bench's own settings read true as 1 (bench: {threads: true} timed on one
    thread, seeds: [true] ran seed 1) where the run configs already refused it."""
    exam = {"datasets": ["movie-sentiment"], "students": ["cnn"]}
    for extra, key, said in [({"bench": {"threads": True}}, "bench.threads", "must be a number, not true"),
                             ({"bench": {"batch_sizes": [1, True]}}, "bench.batch_sizes", "must be numbers, not true"),
                             ({"seeds": [False]}, "seeds", "must be numbers, not false"),
                             ({"budget": {"max_latency_ms": True}}, "budget.max_latency_ms", "must be a number, not true")]:
        path = tmp_path / "exam.yaml"
        path.write_text(yaml.safe_dump({**exam, **extra}))
        code, err = _exit(["exam", str(path), "--out", str(tmp_path / "e")], capsys)
        assert code == 2 and key in err and said in " ".join(err.split()), err
    (tmp_path / "bench.yaml").write_text("threads: true\n")
    code, err = _exit(["bench", "--config", str(tmp_path / "bench.yaml"), str(tmp_path)], capsys)
    assert code == 2 and "threads" in err and "must be a number, not true" in " ".join(err.split()), err
    assert not (tmp_path / "e").exists()


def test_a_teacher_that_is_not_one_is_said_for_what_it_is(teacher, tmp_path, capsys):
    """--teacher of a student run, a built-in base model's name or a missing path said "has no
    model.safetensors" or "has no config.json"; --model and report of a missing path likewise."""
    student = tmp_path / "s"
    api.distill(teacher=teacher / "teacher", student="cnn", out=student, **FAST)
    said = {
        str(student): "is a student run (student.json), not a teacher",
        "minilm-l6": "is a built-in base model, not a fine-tuned teacher: fine-tune it first",
        str(tmp_path / "missing"): "does not exist",
    }
    for given, sentence in said.items():
        code, err = _exit(["distill", "--teacher", given, "--student", "cnn", "--out", str(tmp_path / "o"), *FAST_ARGS], capsys)
        assert code == 2 and sentence in " ".join(err.split()), err
    code, err = _exit(["teacher", "--data", str(teacher / "data"), "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "t")],
                      capsys)
    assert code == 2 and "does not exist" in err, err
    code, err = _exit(["report", str(tmp_path / "missing")], capsys)
    assert code == 2 and "does not exist" in err, err


def test_distill_and_evaluate_take_the_same_folders_for_a_teacher(teacher, tmp_path, capsys):
    """What a teacher folder is was checked twice: distill needed model.safetensors and config.json,
    evaluate --teacher only model.safetensors (a teacher copy without its config.json passed there
    and failed later, at loading). Both now refuse the same folders with the same sentence."""
    student = tmp_path / "s"
    api.distill(teacher=teacher / "teacher", student="cnn", out=student, **FAST)
    no_config = shutil.copytree(teacher / "teacher", tmp_path / "no-config")
    (no_config / "config.json").unlink()
    said = {str(student): "is a student run (student.json), not a teacher", str(no_config): "has no config.json"}
    for given, sentence in said.items():
        code, err = _exit(["distill", "--teacher", given, "--student", "cnn", "--out", str(tmp_path / "o"), *FAST_ARGS], capsys)
        assert code == 2 and sentence in " ".join(err.split()), err
        code, err = _exit(["evaluate", str(student), "--split", "validation", "--teacher", given], capsys)
        assert code == 2 and sentence in " ".join(err.split()), err


def test_a_truncated_teachers_weights_are_said_to_be_damaged(teacher, tmp_path, capsys):
    """A local teacher folder whose weights cannot be read was told to "pass a built-in model, a local
    Hugging Face model directory, or a hub id", as if the path were wrong."""
    t = shutil.copytree(teacher / "teacher", tmp_path / "t")
    with open(t / "model.safetensors", "r+b") as f:
        f.truncate(1000)
    code, err = _exit(["distill", "--teacher", str(t), "--student", "cnn", "--out", str(tmp_path / "s"), *FAST_ARGS], capsys)
    assert code == 2 and "its files are damaged or incomplete" in " ".join(err.split()), err
