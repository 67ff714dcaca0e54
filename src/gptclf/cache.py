"""gptclf's own cache folder: ``$GPTCLF_CACHE`` or ``~/.cache/gptclf``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """A folder inside the cache (not created here)."""
    root = os.environ.get("GPTCLF_CACHE") or Path.home() / ".cache" / "gptclf"
    return Path(root, *parts)
