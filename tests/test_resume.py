"""A run killed mid-epoch and resumed ends with the same weights as an uninterrupted run."""

import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

JOB = Path(__file__).parent / "resume_job.py"


def run(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(JOB), str(out), *args], capture_output=True, text=True, timeout=300)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    full = run(tmp_path / "full")
    assert full.returncode == 0, full.stderr
    # 12 batches an epoch, checkpoints every 4 steps and after each epoch: step 19 is mid-epoch 2
    killed = run(tmp_path / "resumed", "--kill-at", "19")
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "resumed" / "checkpoint" / "state.json").is_file()
    assert not (tmp_path / "resumed" / "final.safetensors").exists()
    resumed = run(tmp_path / "resumed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "epoch 2, batch 4" in resumed.stderr
    a, b = load_file(tmp_path / "full" / "final.safetensors"), load_file(tmp_path / "resumed" / "final.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.stdout.strip() == resumed.stdout.strip() == "steps 36"
    assert not (tmp_path / "resumed" / "checkpoint").exists(), "a finished run removes its checkpoint"
