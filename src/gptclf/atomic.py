"""Writing files so that a reader never sees one half-written: temp file, then rename."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gptclf.errors import GptclfError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename,
    on failure it is removed and ``path`` is left as it was. Missing folders above ``path`` are
    made, and on failure removed again (those still empty)."""
    made = _make_folders(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except BaseException:
        _remove_empty(made)
        raise
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it private; give it normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        _remove_empty(made)
        raise


def check_writable(path: Path) -> None:
    """That ``atomic_path(path)`` can write ``path``, checked before any slow work: ``path`` is
    not a folder, and the nearest of its folders that exists (its own, or the one in which the
    missing ones will be made) is a folder that takes new files."""
    path = Path(path)
    if path.is_dir():
        raise GptclfError(f"{path}: is a directory; give the path of a file to write")
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists() or p == p.parent)
    if not folder.is_dir():
        raise GptclfError(f"{path}: cannot be written, {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".gptclf-probe.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise GptclfError(f"{path}: cannot write in {folder} ({exc.strerror})") from exc
    os.close(fd)
    os.unlink(probe)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and the missing folders above it; the ones made, deepest first."""
    missing = list(itertools.takewhile(lambda p: not p.exists(), (folder, *folder.parents)))
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # no longer empty: something else writes there


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
