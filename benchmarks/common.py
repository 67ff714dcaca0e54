"""What the benchmark scripts share: running a ``gptclf`` command in-process."""

from __future__ import annotations

import contextlib
import io

from gptclf.cli import main as gptclf


def run(*argv: str) -> str:
    """What ``gptclf argv...`` prints; an error stops the benchmark."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        if gptclf(list(argv)) != 0:
            raise SystemExit(f"gptclf {' '.join(argv)} failed")
    return printed.getvalue()
