"""Where kdexam keeps prepared data, models and caches, and how it writes files safely."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from kdexam.errors import KdexamError


def kdexam_home() -> Path:
    """The kdexam home: ``$KDEXAM_HOME`` (set and not empty), default ``~/.cache/kdexam``; a path that
    exists and is not a folder is a one-sentence error (it crashed deep inside a command)."""
    home = Path(os.environ.get("KDEXAM_HOME") or Path.home() / ".cache" / "kdexam").expanduser()
    if home.exists() and not home.is_dir():
        raise KdexamError(f"KDEXAM_HOME '{home}' is a file, not a folder; point it at a folder (or unset it for ~/.cache/kdexam).")
    return home


def keep_library_caches_home() -> None:
    """Point the caches that libraries under kdexam write by default into the user's home or
    ``$TMPDIR`` at the kdexam home instead, unless the user has set them: matplotlib's config and font
    cache (``MPLCONFIGDIR``; default ``~/.config/matplotlib`` and ``~/.cache/matplotlib``) and
    torch's compile cache (``TORCHINDUCTOR_CACHE_DIR``; ``import torch._dynamo`` creates
    ``$TMPDIR/torchinductor_$USER``). Called by the command line before any of them is imported, so
    that a command writes only to its output and the kdexam home (docs/reliability.md); the Python
    API leaves the process's settings to its user. Hugging Face caches stay where the user put them."""
    home = kdexam_home()
    os.environ.setdefault("MPLCONFIGDIR", str(home / "matplotlib"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(home / "torchinductor"))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()
"""The process's file-creation mask, read once at import (reading it means setting it)."""


def temp_file(path: Path) -> tuple[int, str]:
    """``(fd, name)`` of a new temporary file next to ``path`` (:func:`temp_prefix`), with the mode
    a plain ``open`` would give it (``0o666 & ~umask``): ``mkstemp`` makes it 0600, and the rename
    would hand that to the finished file, unreadable to anyone else sharing the run."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    os.fchmod(fd, 0o666 & ~UMASK)
    return fd, tmp


def plain_mode(path: str | Path) -> None:
    """Give a finished file the mode a plain ``open`` would (``0o666 & ~umask``): safetensors
    writes its files 0600, unreadable to anyone else sharing the run."""
    os.chmod(path, 0o666 & ~UMASK)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so that a
    reader never sees a half-written file. A path that cannot be written (a folder, under a file,
    no permission) is a one-sentence :class:`~kdexam.errors.KdexamError`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        fd, tmp = temp_file(path)
    except OSError as e:
        raise KdexamError(f"Cannot write '{path}' ({e.strerror or e}); give a file path in a folder you can write to.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise KdexamError(f"Cannot write '{path}' ({e.strerror or e}); give a file path in a folder you can write to.") from None
        raise


def check_writable_folder(path: str | Path, flag: str, shown: str | Path | None = None) -> None:
    """Refuse, before any work, a folder that cannot be created or written (no permission, a read-only
    or virtual file system such as /sys, a file in the way): a run found out only at its first write,
    with a traceback. Probes by creating and removing a temporary folder in the nearest existing one
    (``os.access`` says yes to root wherever the file system itself refuses)."""
    path = Path(path)
    shown = path if shown is None else shown
    there = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not there.is_dir():
        raise KdexamError(f"Cannot write {flag} '{shown}': '{there}' is a file, not a folder; pass another {flag}.")
    try:
        os.rmdir(tempfile.mkdtemp(dir=there, prefix=temp_prefix(Path(shown).name)))  # (named as the writes that follow)
    except OSError as e:
        raise KdexamError(f"Cannot write {flag} '{shown}' ({e.strerror or e}); pass a path you can write to.") from None


def _host_tag() -> str:
    """8 hex digits naming this machine and PID namespace: a process id means something only there."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha1(f"{socket.gethostname()}|{namespace}".encode()).hexdigest()[:8]


HOST_TAG = _host_tag()


def temp_prefix(name: str) -> str:
    """Prefix of a temporary file or folder kdexam writes next to ``name``: hidden, and naming the
    writing process and its machine (:data:`HOST_TAG`), so that :func:`sweep_stale` can tell an
    abandoned one from one being written, also in a kdexam home shared by several machines."""
    return f".{name}.kdexam-{os.getpid()}-h{HOST_TAG}-"


_TEMP = re.compile(r"^\..*\.kdexam-(\d+)-(?:h([0-9a-f]{8})-)?")


def sweep_stale(d: str | Path) -> int:
    """Remove the temporary files and folders in ``d`` left by kdexam processes that no longer run
    (killed mid-write); those of live processes stay, and so do those of another machine or PID
    namespace (a shared home: their process ids mean nothing here). Returns how many were removed."""
    d = Path(d)
    removed = 0
    if not d.is_dir():
        return 0
    for p in d.iterdir():
        m = _TEMP.match(p.name)
        if m is None or (m.group(2) is not None and m.group(2) != HOST_TAG) or _alive(int(m.group(1))):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def finite_or_null(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (in nested dicts, lists and tuples) replaced by
    ``None``, so that it dumps as strict JSON: ``null`` marks an undefined value (a correlation of
    constant targets, a diverged model's metrics) where Python would write the non-standard ``NaN``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


def json_text(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`finite_or_null` (``obj``): strict JSON that any parser reads."""
    return json.dumps(finite_or_null(obj), allow_nan=False, **kwargs)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json_text(obj, indent=2, ensure_ascii=False) + "\n")


def load_yaml(text: str) -> Any:
    """YAML read safely (``yaml.SafeLoader``: no Python objects), and stricter where YAML 1.1 reads
    a setting as something else without a word: a mapping key given twice is an error (the last one
    won: ``train: {epochs: 3}`` then ``train: {batch_size: 8}`` trained 10 epochs), and an integer
    is YAML 1.2's decimal (``010`` is 10, not octal 8; ``1:30`` is text, not 90 in base 60).
    Errors are ``yaml.YAMLError``, with the line."""
    return yaml_loader().load_text(text)


@functools.lru_cache(maxsize=1)
def yaml_loader():
    """The :func:`load_yaml` loader class (built once, importing yaml only when used)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        @classmethod
        def load_text(cls, text: str) -> Any:
            loader = cls(text)
            try:
                return loader.get_single_data()
            finally:
                loader.dispose()

    def mapping(loader, node):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"the key '{key_node.value}' is given twice",
                                                            key_node.start_mark)
                seen.add(key_node.value)
        return loader.construct_mapping(node, deep=True)

    int_tag = "tag:yaml.org,2002:int"
    StrictLoader.yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != int_tag]
                                            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    StrictLoader.add_implicit_resolver(int_tag, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
    StrictLoader.add_constructor(int_tag, lambda loader, node: int(loader.construct_scalar(node)))
    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def read_run_config(run_dir: str | Path, strict: bool = True) -> dict:
    """A run directory's ``config.yaml`` (a teacher's, a student's or an exam cell's), read with
    :func:`load_yaml`; ``{}`` when the folder has none. A file that cannot be read as a YAML mapping
    is a :class:`KdexamError` (``strict``), or read as ``{}`` where the file only fills in a default
    (the predictor's truncation, the data an export checks on, the teacher a bench run times)."""
    import yaml

    p = Path(run_dir) / "config.yaml"
    if not p.is_file():
        return {}
    try:
        data = load_yaml(p.read_text(encoding="utf-8"))
        if data is None:  # (an empty file)
            return {}
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        data = None
    if isinstance(data, dict):
        return data
    if strict:
        raise KdexamError(f"'{p}' is not a valid YAML config (a mapping of settings); repair the file, or give "
                          "its settings (such as --data) explicitly.")
    return {}


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
