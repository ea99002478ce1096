"""Writes are confined: a user's commands write only to their --out / --output target and the
kdexam home; temporary files in $TMPDIR are gone when a command ends; inputs stay byte-identical.

The commands run as a user runs them (``python -m kdexam …``, one process each) with HOME, TMPDIR,
XDG_CACHE_HOME, XDG_CONFIG_HOME, HF_HOME, KDEXAM_HOME and the working directory pointing at separate
empty folders under ``tmp_path``. Two witnesses:

- a snapshot (path, size, mtime, SHA-256) of everything under ``tmp_path`` before and after each
  command: it sees writes by any code (Python, Rust, C++) inside the watched folders;
- a Python audit hook (a ``sitecustomize`` on PYTHONPATH, so it also runs in the processes that
  ``kdexam bench`` starts) that logs every path opened for writing, made, renamed or removed
  anywhere on the filesystem: it sees Python-level writes outside the watched folders too.

Allowed besides the command's target and the kdexam home: ``/dev/null``, and Python's own
bytecode cache (``__pycache__/*.pyc``, written by the interpreter's import system into the
installation, as for any Python program; PYTHONDONTWRITEBYTECODE turns it off). ``kdexam bench``
also writes its figures into the measured runs' ``metrics.json`` and ``README.md`` (documented;
``--no-save`` turns it off), and nothing else there. See docs/reliability.md, "Writes stay in --out
and the kdexam home".
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import write_sentiment_splits

# Logs, from every Python process started with this on its path, the paths written (event TAB path).
SITECUSTOMIZE = r'''
import os, sys
_log = os.environ.get("KDEXAM_AUDIT_LOG")
if _log:
    _fd = os.open(_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    _busy = []

    def _path(p, dir_fd=None):
        if isinstance(p, int):
            return None
        p = os.fsdecode(p)
        base = os.getcwd()
        if dir_fd is not None:
            try:
                base = os.readlink(f"/proc/self/fd/{dir_fd}")
            except OSError:
                base = f"<dir_fd {dir_fd}>"
        return os.path.normpath(os.path.join(base, p))

    def _hook(event, args):
        if _busy:
            return
        if event == "open":
            path, mode, flags = args
            if not ((isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and flags & _WRITE)):
                return
            paths = [_path(path)]
        elif event in ("os.mkdir",):
            paths = [_path(args[0], args[2])]
        elif event in ("os.remove", "os.rmdir", "shutil.rmtree"):
            paths = [_path(args[0], args[1])]
        elif event == "os.rename":
            paths = [_path(args[0], args[2]), _path(args[1], args[3])]
        elif event in ("os.truncate", "os.chmod", "os.utime", "sqlite3.connect"):
            paths = [_path(args[0])]
        elif event in ("os.symlink", "os.link"):
            paths = [_path(args[1])]
        else:
            return
        _busy.append(1)
        try:
            for p in paths:
                if p is not None:
                    os.write(_fd, f"{event}\t{p}\n".encode("utf-8", "surrogateescape"))
        finally:
            _busy.pop()

    sys.addaudithook(_hook)
'''


def snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    """Every path under ``root`` (but ``skip``): kind, size, mtime and the SHA-256 of a file."""
    state = {}
    for p in root.rglob("*"):
        if p == skip or skip in p.parents:
            continue
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
        state[str(p)] = ("dir" if p.is_dir() else "file", None if p.is_dir() else st.st_size, st.st_mtime_ns, digest)
    return state


def under(path: str, roots) -> bool:
    return any(path == str(r) or path.startswith(str(r) + os.sep) for r in roots)


def pycache(path: str) -> bool:
    """Python's bytecode cache, written by the import system (not by kdexam): a ``__pycache__``
    folder (made on a first import, as in a fresh clone) or a ``.pyc`` file in one."""
    p = Path(path)
    return p.name == "__pycache__" or ("__pycache__" in p.parts and ".pyc" in p.name)


def part_of_writing(path: Path, target: Path) -> bool:
    """``path`` is the folder of a target file (made if missing) or the temporary that
    :func:`kdexam.paths.atomic_write_text` writes beside it and renames (``.NAME.kdexam-PID-….tmp``)."""
    return path == target.parent or (path.parent == target.parent and path.name.startswith(f".{target.name}.kdexam-"))


def test_commands_write_only_to_their_output_and_the_kdexam_home(tmp_path, tiny_bert_dir):
    root = tmp_path
    audit = root / "audit"
    audit.mkdir()
    (audit / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    dirs = {k: root / k.lower() for k in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "HF_HOME", "KDEXAM_HOME")}
    for d in dirs.values():
        d.mkdir()
    cwd = root / "cwd"
    cwd.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(audit), **{k: str(d) for k, d in dirs.items()}}
    env.update({k: os.environ[k] for k in ("LANG", "LC_ALL", "SYSTEMROOT") if k in os.environ})

    inputs = root / "inputs"
    data = write_sentiment_splits(inputs / "data", 64, 16, 16)
    model = inputs / "bert"
    model.mkdir(parents=True)
    for f in tiny_bert_dir.iterdir():  # a copy, so that its bytes are watched too
        (model / f.name).write_bytes(f.read_bytes())
    texts = inputs / "texts.txt"
    texts.write_text("the movie was good\nan awful dull plot\n", encoding="utf-8")
    out = root / "out"
    teacher, bilstm, tl, onnx = out / "teacher", out / "bilstm", out / "tl1", out / "bilstm-onnx"
    exam_cfg = inputs / "exam.yaml"
    exam_cfg.write_text(yaml.safe_dump({
        "name": "tiny", "datasets": [{"name": str(data)}], "teachers": [{"run": str(teacher), "name": "tiny-bert"}],
        "students": [{"kind": "static", "embedding_dim": 8, "epochs": 1}], "train": {"num_threads": 1, "max_train": 32},
        "bench": {"n_texts": 4, "repeats": 1, "warmup": 0, "batch_sizes": [1], "onnx": False, "rss": False}}), encoding="utf-8")
    quick = ["--epochs", "1", "--max-train", "32", "--set", "train.num_threads=1"]
    bench_writes = {str(r / f) for r in (bilstm, teacher) for f in ("metrics.json", "README.md")}

    commands = [  # (argv, targets it may write, other files it may change)
        (["teacher", "--data", data, "--model", model, "--out", teacher, *quick], [teacher], set()),
        (["distill", "--teacher", teacher, "--data", data, "--student", "bilstm", "--augment", "mask", "--out", bilstm, *quick],
         [bilstm], set()),
        (["distill", "--teacher", teacher, "--data", data, "--student", "teacher-layers:1", "--out", tl, *quick], [tl], set()),
        (["export", bilstm, "--quantize", "int8", "--max-examples", "8", "--out", onnx], [onnx], set()),
        (["predict", onnx, "--input", texts, "--output", out / "onnx.jsonl"], [out / "onnx.jsonl"], set()),
        (["predict", bilstm, "--input", texts, "--output", out / "bilstm.jsonl"], [out / "bilstm.jsonl"], set()),
        (["evaluate", bilstm, "--out", out / "evaluate.json"], [out / "evaluate.json"], set()),
        (["bench", bilstm, "--n-texts", "4", "--repeats", "1", "--warmup", "0", "--batch-sizes", "1", "--out", out / "bench.json"],
         [out / "bench.json"], bench_writes),
        (["report", teacher, bilstm, tl, "--out", out / "report.json"], [out / "report.json"], set()),
        (["exam", exam_cfg, "--out", out / "exam"], [out / "exam"], set()),
    ]
    out.mkdir()
    watched_inputs = snapshot(inputs, audit)
    problems = []
    for i, (argv, targets, may_change) in enumerate(commands):
        log = audit / f"{i}.log"
        before = snapshot(root, audit)
        done = subprocess.run([sys.executable, "-m", "kdexam", *map(str, argv)], cwd=cwd, env=dict(env, KDEXAM_AUDIT_LOG=str(log)),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{argv[0]}: {done.stderr[-2000:]}"
        after = snapshot(root, audit)
        allowed = [*targets, dirs["KDEXAM_HOME"]]
        changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
        # a folder's mtime moves when entries come or go (those are compared one by one); in the user's own
        # folders even that counts, since a file made and removed there is a leak too
        strict = [dirs[k] for k in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "HF_HOME")] + [cwd]
        stray = sorted(p for p in changed if not under(p, allowed) and p not in may_change
                       and not (before.get(p, (None,))[0] == after.get(p, (None,))[0] == "dir" and not under(p, strict)))
        left_in_tmp = sorted(os.listdir(dirs["TMPDIR"]))
        written = sorted({line.split("\t", 1)[1] for line in log.read_text(encoding="utf-8").splitlines()} if log.exists() else set())
        outside = [p for p in written if not under(p, [*allowed, dirs["TMPDIR"], *map(Path, may_change)]) and p != "/dev/null"
                   and not pycache(p) and not any(part_of_writing(Path(p), Path(f)) for f in [*targets, *may_change])]
        assert any(under(p, targets) for p in written), f"the audit hook saw no write of kdexam {argv[0]}"  # it works
        if stray or left_in_tmp or outside:
            problems.append(f"kdexam {argv[0]}: changed {stray}, left in $TMPDIR {left_in_tmp}, wrote outside {outside}")
        if may_change:  # bench: its documented writes happened, and only to those files
            assert {p for p in changed if under(p, [teacher, bilstm]) and after.get(p, before.get(p))[0] == "file"} <= may_change
            assert {str(bilstm / "metrics.json"), str(teacher / "metrics.json")} <= changed
    assert not problems, "\n".join(problems)
    assert snapshot(inputs, audit) == watched_inputs  # data, model and texts byte-identical (and untouched)
    for d in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "HF_HOME"):
        assert not any(dirs[d].iterdir()), f"{d} holds {sorted(os.listdir(dirs[d]))}"
    assert not any(cwd.iterdir())
    kept = sorted(p.name for p in dirs["KDEXAM_HOME"].iterdir())
    assert "cache" in kept and set(kept) <= {"cache", "matplotlib", "torchinductor"}, kept  # the teacher cache, the plots' font cache
