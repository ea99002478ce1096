"""A run killed mid-epoch (or in its second stage) and resumed ends with the same weights as an uninterrupted run."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

JOB = Path(__file__).parent / "resume_job.py"


def run(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(JOB), str(out), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("ema", [[], ["--ema"]], ids=["plain", "weight-average"])
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, ema):
    full = run(tmp_path / "full", *ema)
    assert full.returncode == 0, full.stderr
    # 12 batches an epoch, checkpoints every 4 steps and after each epoch: step 19 is mid-epoch 2
    killed = run(tmp_path / "resumed", "--kill-at", "19", *ema)
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "resumed" / "checkpoint" / "state.json").is_file()
    assert (tmp_path / "resumed" / "checkpoint" / "average.safetensors").is_file() == bool(ema)
    assert not (tmp_path / "resumed" / "final.safetensors").exists()
    resumed = run(tmp_path / "resumed", "--resume", *ema)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "epoch 2, batch 4" in resumed.stderr
    a, b = load_file(tmp_path / "full" / "final.safetensors"), load_file(tmp_path / "resumed" / "final.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.stdout.strip() == resumed.stdout.strip() == "steps 36"
    assert not (tmp_path / "resumed" / "checkpoint").exists(), "a finished run removes its checkpoint"


def test_a_resumed_log_has_each_evaluation_once(tmp_path):
    """Checkpoints every 5 steps, an evaluation at step 12, a kill at step 14: the resumed run repeats
    steps 11-14 and their evaluation, and its log holds it once, as the uninterrupted run's does."""
    import json

    def lines(d):
        return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in (d / "train_log.jsonl").read_text().splitlines()]

    assert run(tmp_path / "full", "--checkpoint-every", "5").returncode == 0
    assert run(tmp_path / "resumed", "--checkpoint-every", "5", "--kill-at", "14").returncode == -9
    assert [x["step"] for x in lines(tmp_path / "resumed")] == [12], "the evaluation after the last checkpoint"
    assert run(tmp_path / "resumed", "--checkpoint-every", "5", "--resume").returncode == 0
    assert lines(tmp_path / "resumed") == lines(tmp_path / "full") and [x["step"] for x in lines(tmp_path / "full")] == [12, 24, 36]
    # killed before its first checkpoint (step 30), after the evaluation at step 12: a resume starts the
    # run again from nothing and logs that evaluation again, once
    assert run(tmp_path / "early", "--checkpoint-every", "30", "--kill-at", "20").returncode == -9
    assert [x["step"] for x in lines(tmp_path / "early")] == [12]
    assert run(tmp_path / "early", "--checkpoint-every", "30", "--resume").returncode == 0
    assert lines(tmp_path / "early") == lines(tmp_path / "full")


def test_resume_with_gradient_accumulation_equals_uninterrupted(tmp_path):
    """Windows of 5 batches in 12-batch epochs (5, 5, 2): the windows restart each epoch, and a run
    killed mid-epoch 2 resumes from the end of a window to the same weights."""
    full = run(tmp_path / "full", "--accumulate", "5")
    assert full.returncode == 0, full.stderr
    killed = run(tmp_path / "resumed", "--kill-at", "19", "--accumulate", "5")
    assert killed.returncode == -9, killed.stderr
    resumed = run(tmp_path / "resumed", "--resume", "--accumulate", "5")
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 2, batch 5" in resumed.stderr  # the last window's end before step 19: step 17
    a, b = load_file(tmp_path / "full" / "final.safetensors"), load_file(tmp_path / "resumed" / "final.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


STAGE_JOB = Path(__file__).parent / "stage_job.py"


def test_sigkill_in_stage_2_resumes_without_retraining_stage_1(tmp_path, tiny_bert_dir):
    from conftest import write_sentiment_splits
    from kdexam import api

    data = write_sentiment_splits(tmp_path / "data", 100, 20, 20)
    api.finetune_teacher(data=data, model=tiny_bert_dir, out=tmp_path / "teacher", epochs=1, batch_size=16)

    def job(out: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(STAGE_JOB), str(tmp_path / "teacher"), str(data), str(tmp_path / out), *args],
                              capture_output=True, text=True, timeout=300)

    full = job("full")
    assert full.returncode == 0, full.stderr
    # 64 examples in batches of 16: 4 steps an epoch, stage 1 = 8 forward passes; pass 11 is in stage 2's first epoch
    killed = job("resumed", "--kill-at", "11")
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "resumed" / "stage1-done" / "stage.json").is_file()
    resumed = job("resumed")
    assert resumed.returncode == 0, resumed.stderr
    assert "stage 1 'soft' finished in an earlier run: not trained again" in resumed.stderr
    assert "soft: step" not in resumed.stderr and "soft epoch" not in resumed.stderr, "stage 1 was trained again"
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    import json

    stages = [json.loads((tmp_path / d / "metrics.json").read_text())["stages"] for d in ("full", "resumed")]
    untimed = [{k: v for k, v in s[0].items() if k != "train_seconds"} for s in stages]
    assert [s["stage"] for s in stages[1]] == ["soft", "gold"] and untimed[0] == untimed[1]  # stage 1's summary kept
    assert not list((tmp_path / "resumed").glob("stage*-done")), "a finished run removes its stage records"
    assert log_lines(tmp_path / "resumed") == log_lines(tmp_path / "full")

    # killed after stage 2's first evaluation (pass 12) with no checkpoint in stage 2: the stage is trained
    # again from its start, and its evaluation was logged twice
    assert job("late", "--kill-at", "14", "--checkpoint-every", "100").returncode == -9
    assert [x["step"] for x in log_lines(tmp_path / "late")] == [4, 8, 4]
    assert job("late", "--checkpoint-every", "100").returncode == 0
    assert log_lines(tmp_path / "late") == log_lines(tmp_path / "full")


def log_lines(d: Path) -> list[dict]:
    import json

    return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in (d / "train_log.jsonl").read_text().splitlines()]
