"""The page at ``/``: ``page.html`` with ``page.css`` and ``page.js`` inlined as they are, one
self-contained answer, and the Content-Security-Policy that allows exactly that style and that
script by their SHA-256 hashes (and nothing else but requests to the service itself)."""

from __future__ import annotations

import base64
import hashlib
from importlib import resources
from string import Template


def _package_file(name: str) -> str:
    """The text of the package data file ``name`` beside this module."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def sha256_source(source: str) -> str:
    """The CSP source expression that allows the inline element whose content is ``source``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


PAGE_STYLE = _package_file("page.css")
PAGE_SCRIPT = _package_file("page.js")
PAGE = Template(_package_file("page.html")).substitute(style=PAGE_STYLE, script=PAGE_SCRIPT)
PAGE_POLICY = (
    f"default-src 'none'; script-src {sha256_source(PAGE_SCRIPT)}; "
    f"style-src {sha256_source(PAGE_STYLE)}; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
