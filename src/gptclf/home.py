"""gptclf's own folder on disk, for downloaded data and token ids: ``$GPTCLF_CACHE`` or
``~/.cache/gptclf``."""

from __future__ import annotations

import os
from pathlib import Path


def home_dir(*parts: str) -> Path:
    """A folder inside gptclf's folder (not created here)."""
    root = os.environ.get("GPTCLF_CACHE") or Path.home() / ".cache" / "gptclf"
    return Path(root, *parts)
