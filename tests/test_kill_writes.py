"""SIGKILL at random points inside the writes that must never be seen half-done (issue 15):
a teacher-cache output and a training checkpoint. A child process writes in a loop and is
killed after a random delay; the reader then finds the whole output (or none: it is rebuilt),
never a torn one, and the next write sweeps the killed writer's temporary files."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

KILLS = int(os.environ.get("KDEXAM_KILLS", "8"))
MAX_KILLS = 6 * KILLS
"""At least KILLS kills each; more (up to MAX_KILLS) until one landed mid-write and one found a whole
output, as the random delays may all miss the write on a loaded machine."""

CACHE_WRITER = r"""
import sys
import numpy as np
from kdexam.teachers.cache import Stored, write_output
d = sys.argv[1]
rng = np.random.default_rng(0)
data = rng.standard_normal((400_000, 6)).astype(np.float32)   # ~10 MB: a write takes a while
offsets = np.arange(0, 400_001, 4, dtype=np.int64)
print("ready", flush=True)
while True:
    write_output(__import__("pathlib").Path(d), "logits", Stored(data, offsets))
"""

CHECKPOINT_WRITER = r"""
import sys
import torch
from kdexam.training.checkpoint import save_checkpoint
torch.manual_seed(0)
model = torch.nn.Linear(1000, 1000)
opt = torch.optim.AdamW(model.parameters())
model(torch.ones(2, 1000)).sum().backward()
opt.step()
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
print("ready", flush=True)
step = 0
while True:
    step += 1
    with torch.no_grad():
        model.weight.fill_(step)  # each checkpoint's weights say which step it is
    save_checkpoint(sys.argv[1], model, opt, sched, {"step": step}, None)
"""


def kill_at_random(script: str, arg: Path, delay: float) -> None:
    proc = subprocess.Popen([sys.executable, "-c", script, str(arg)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_killed_cache_write_is_never_read_torn(tmp_path):
    from kdexam.teachers.cache import read_output

    expected = np.random.default_rng(0).standard_normal((400_000, 6)).astype(np.float32)
    rng, seen_whole, mid_write = random.Random(7), 0, 0
    for kills in range(1, MAX_KILLS + 1):
        kill_at_random(CACHE_WRITER, tmp_path, rng.uniform(0.0, 0.4))
        mid_write += any(p.name.startswith(".") for p in tmp_path.iterdir())  # a temporary file left: killed mid-write
        got = read_output(tmp_path, "logits")
        if got is not None:  # whole and checksummed, or None (rebuilt by the next run)
            np.testing.assert_array_equal(got.data, expected)
            np.testing.assert_array_equal(got.offsets, np.arange(0, 400_001, 4))
            seen_whole += 1
        if kills >= KILLS and seen_whole and mid_write:
            break
    assert seen_whole >= 1 and mid_write >= 1, (kills, seen_whole, mid_write)  # else the kills proved nothing
    from kdexam.teachers.cache import Stored, write_output

    write_output(tmp_path, "logits", Stored(expected, np.arange(0, 400_001, 4, dtype=np.int64)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logits.json", "logits.npy", "logits.offsets.npy"]


def test_a_killed_checkpoint_write_leaves_a_whole_checkpoint(tmp_path):
    from safetensors.torch import load_file

    from kdexam.training.checkpoint import find_checkpoint

    ckpt = tmp_path / "checkpoint"
    rng, found, mid_write = random.Random(11), 0, 0
    for kills in range(1, MAX_KILLS + 1):
        kill_at_random(CHECKPOINT_WRITER, ckpt, rng.uniform(0.0, 0.5))
        mid_write += ckpt.with_name("checkpoint.new").exists()
        d = find_checkpoint(ckpt)
        if d is None:
            continue
        step = json.loads((d / "state.json").read_text())["position"]["step"]
        weights = load_file(str(d / "model.safetensors"))["weight"]
        assert float(weights[0, 0]) == step and float(weights[-1, -1]) == step  # weights and position agree
        assert set(load_file(str(d / "optimizer.safetensors"))) >= {"0.exp_avg", "0.exp_avg_sq"}
        found += 1
        if kills >= KILLS and found and mid_write:
            break
    assert found >= 1 and mid_write >= 1, (kills, found, mid_write)  # else the kills proved nothing
