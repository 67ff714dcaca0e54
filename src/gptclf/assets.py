"""Files shipped inside PyPI packages: found without importing the package, checked by SHA-256."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from gptclf.errors import GptclfError


def package_dir(module: str, pip_requirement: str) -> Path:
    """The folder of an installed package, found without running its ``__init__``."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise GptclfError(
            f"the package {module!r} is not installed; install it with: "
            f"pip install --no-deps {pip_requirement}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verified_file(path: Path, expected_sha256: str, shown_name: str | None = None) -> Path:
    """Return ``path`` if it exists and has the expected SHA-256, else raise a clear error naming
    the file (or ``shown_name``, e.g. the archive member it came from)."""
    name = shown_name or path
    if not path.is_file():
        raise GptclfError(f"{name}: file not found")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise GptclfError(f"{name}: SHA-256 is {actual}, expected {expected_sha256}")
    return path
