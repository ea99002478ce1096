"""Data-parallel distillation: two CPU processes (gloo, launched with torchrun) share each batch, the
teacher's cache fill and validation, and end with the single process's weights, to float rounding
(see docs/scaling.md)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

JOB = Path(__file__).parent / "ddp_job.py"


def run_job(args, home: Path, processes: int = 1, port: int = 29531) -> list[int]:
    """Run ddp_job.py alone or under torchrun, with its own kdexam home (an empty teacher cache);
    returns the number of examples each process's teacher ran on, by rank."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KDEXAM_HOME": str(home)}
    launch = [] if processes == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(port)]
    done = subprocess.run([sys.executable, *launch, str(JOB), *map(str, args)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    found = dict(map(int, m) for m in re.findall(r"done rank (\d+) examples (\d+)", done.stdout))
    assert sorted(found) == list(range(processes)), f"every process ran the distillation: {done.stdout[-500:]}"
    return [found[r] for r in range(processes)]


def cache_entries(home: Path) -> dict[str, Path]:
    """The teacher cache's stored outputs, by entry and file name."""
    return {f"{p.parent.name}/{p.name}": p for p in (home / "cache" / "teacher").glob("*/*.npy")}


@pytest.fixture(scope="module")
def teacher_and_data(tmp_path_factory, tiny_bert_dir):
    from conftest import write_sentiment_splits
    from kdexam import api

    d = tmp_path_factory.mktemp("scaling")
    data = write_sentiment_splits(d / "data", 100, 20, 20)
    api.finetune_teacher(data=data, model=tiny_bert_dir, out=d / "teacher", epochs=2, batch_size=16, learning_rate=1e-3)
    return d / "teacher", data


def test_two_processes_match_one(tmp_path, teacher_and_data):
    args = list(teacher_and_data)
    one = run_job([*args, tmp_path / "one"], tmp_path / "home-one")
    two = run_job([*args, tmp_path / "two"], tmp_path / "home-two", processes=2)
    # the teacher's pass is shared: 64 training and 20 test examples, each run on by one process
    assert one == [84] and sorted(two) == [42, 42], (one, two)
    a_cache, b_cache = cache_entries(tmp_path / "home-one"), cache_entries(tmp_path / "home-two")
    assert a_cache.keys() == b_cache.keys() and a_cache, "the same entries, merged; no shard left behind"
    for k in a_cache:  # the shards merged in example order: the single process's outputs (float rounding apart)
        np.testing.assert_allclose(np.load(a_cache[k]), np.load(b_cache[k]), atol=1e-5, rtol=0)

    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert worst < 1e-5, f"weights differ by up to {worst:.2e}"  # seen here: 2e-7 (float sums in another order)
    ra, rb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert ra["student"]["metrics"] == rb["student"]["metrics"] and ra["student"]["loyalty"]["label"] == rb["student"]["loyalty"]["label"]
    assert [h["stage"] for h in rb["stages"]] == ["distill"] and rb["stages"][0]["steps"] == ra["stages"][0]["steps"]
    # validation is split between the processes and gathered: every evaluation scores the whole split
    la, lb = ([json.loads(l) for l in (tmp_path / d / "train_log.jsonl").read_text().splitlines()] for d in ("one", "two"))
    assert [h["validation"] for h in la] == [h["validation"] for h in lb] and len(lb) == 2, "one writer, one line per evaluation"
    assert not (tmp_path / "two" / "checkpoint-stage1").exists(), "the one writer cleaned up"


def test_a_killed_parallel_fill_reuses_the_shares_written(tmp_path, teacher_and_data):
    """A shard written by an earlier, killed parallel fill is read, not computed again."""
    teacher, data = teacher_and_data
    home = tmp_path / "home"
    run_job([teacher, data, tmp_path / "first"], home, processes=2, port=29533)
    entries = {p.parent for p in cache_entries(home).values()}
    # put the merged logits back as two shares, as a fill killed before its merge would leave them
    for entry in entries:
        merged = np.load(entry / "logits.npy")
        for r in range(2):
            _write_share(entry, merged[r::2], r)
        for f in ("logits.npy", "logits.json"):
            (entry / f).unlink()
    again = run_job([teacher, data, tmp_path / "second"], home, processes=2, port=29534)
    assert again == [0, 0], "the shares were read and merged; the teacher did not run"
    for entry in entries:
        assert (entry / "logits.npy").is_file() and not list(entry.glob("logits.shard-*"))


def _write_share(entry: Path, rows: np.ndarray, rank: int) -> None:
    from kdexam.teachers.cache import Stored, write_output

    write_output(entry, f"logits.shard-{rank}-of-2", Stored(np.ascontiguousarray(rows)))


def test_general_distillation_shares_teacher_and_validation(tmp_path, tiny_bert_dir):
    """Task-agnostic distillation on two processes: the teacher's pass is split, one process writes
    the encoder, and the validation objective (learning rate ~0: the initial weights) is the whole
    split's mean, as in one process."""
    from conftest import sentiment_examples

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(r["text"] for r in sentiment_examples(60, seed=9)), encoding="utf-8")
    one = run_job([tiny_bert_dir, texts, tmp_path / "one", "general"], tmp_path / "home-one")
    two = run_job([tiny_bert_dir, texts, tmp_path / "two", "general"], tmp_path / "home-two", processes=2, port=29535)
    assert sum(two) == one[0] and min(two) >= one[0] // 2 - 1, (one, two)
    va, vb = (json.loads((tmp_path / d / "metrics.json").read_text())["student"]["metrics"]["validation_objective"]
              for d in ("one", "two"))
    assert abs(va - vb) <= 1e-4 * abs(va), (va, vb)
    assert (tmp_path / "two" / "encoder.json").is_file()


def test_the_teacher_runs_on_the_process_device(monkeypatch, teacher_and_data):
    """Each process's teacher pass runs on its own GPU under a launch (LOCAL_RANK), else the first GPU,
    else the CPU; the teacher is moved there when it loads."""
    import torch

    from kdexam import parallel
    from kdexam.teachers import teacher as teacher_module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert parallel.process_device() == torch.device("cuda", 1)
    monkeypatch.delenv("LOCAL_RANK")
    assert parallel.process_device() == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert parallel.process_device() == torch.device("cpu")
    monkeypatch.setattr(teacher_module, "process_device", lambda: torch.device("meta"))
    t = teacher_module.Teacher(teacher_and_data[0])
    assert {p.device.type for p in t.model.parameters()} == {"meta"}


def test_alone_the_shares_are_everything():
    from kdexam import parallel

    assert parallel.rank_and_world() == (0, 1) and parallel.my_share(3) == [0, 1, 2]
    assert parallel.gather_items({2: "c", 0: "a", 1: "b"}, 3) == ["a", "b", "c"]
    with pytest.raises(RuntimeError, match="no process gave items"):
        parallel.gather_items({0: "a"}, 2)


def test_a_missing_share_is_an_error_in_every_process_not_a_hang(tmp_path, teacher_and_data, monkeypatch):
    """Process 0 of two finds the other's share missing (separate homes, a crash): it still reaches the
    second barrier, and then every process raises the same sentence instead of waiting for ever."""
    from kdexam.data.encode import encode
    from kdexam.data.readers import Example
    from kdexam.errors import KdexamError
    from kdexam.teachers import teacher as teacher_module

    barriers = []
    monkeypatch.setattr(teacher_module, "rank_and_world", lambda: (0, 2))
    monkeypatch.setattr(teacher_module, "my_share", lambda n: list(range(0, n, 2)))
    monkeypatch.setattr(teacher_module, "barrier", lambda: barriers.append(1))
    t = teacher_module.Teacher(teacher_and_data[0])
    examples = [Example(f"text number {i}") for i in range(6)]
    features = encode(examples, t.tokenizer, t.task, 32)
    with pytest.raises(KdexamError, match="share of 'logits' is missing or damaged"):
        t.fill_sharded(tmp_path, examples, ["logits"], features)
    assert len(barriers) == 2
    assert list(tmp_path.glob("logits.shard-0-of-2*")), "its own share is kept for the rerun"


def test_a_process_with_no_examples_writes_an_empty_share(tmp_path, teacher_and_data, monkeypatch):
    """Fewer examples than processes (a one-sentence test split on two processes): the process with
    none writes an empty share, and the merged output is the single process's."""
    from kdexam.data.encode import encode
    from kdexam.data.readers import Example
    from kdexam.errors import KdexamError
    from kdexam.teachers import teacher as teacher_module

    monkeypatch.setattr(teacher_module, "barrier", lambda: None)
    t = teacher_module.Teacher(teacher_and_data[0])
    examples = [Example("the only sentence")]
    features = encode(examples, t.tokenizer, t.task, 32)
    for rank in (1, 0):  # process 1 (no examples) first; process 0 then merges both shares
        monkeypatch.setattr(teacher_module, "rank_and_world", lambda r=rank: (r, 2))
        monkeypatch.setattr(teacher_module, "my_share", lambda n, r=rank: list(range(r, n, 2)))
        if rank == 1:
            with pytest.raises(KdexamError, match="missing or damaged"):  # (process 0 has not merged yet)
                t.fill_sharded(tmp_path, examples, ["logits", "hidden.1"], features)
            assert (tmp_path / "logits.shard-1-of-2.json").is_file(), "the empty share is written"
        else:
            merged = t.fill_sharded(tmp_path, examples, ["logits", "hidden.1"], features)
    alone = t.compute(examples, ["logits", "hidden.1"], features=features)
    for n in ("logits", "hidden.1"):
        assert len(merged[n]) == 1
        np.testing.assert_allclose(merged[n].example(0), alone[n][0], atol=1e-3)
    assert not list(tmp_path.glob("*.shard-*")), "the shares are removed after the merge"
