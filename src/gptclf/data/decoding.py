"""Bytes of a data file to text, whole or block by block, with errors that say where and why.

A byte that is not valid text in the encoding is an error naming its byte offset and data row
(1-based; 0 is the CSV/TSV header) and advising by the file's first bytes: UTF-32 or UTF-16 by
a byte-order mark, UTF-16 by NUL bytes at every other byte, else latin-1. UTF-16 text without
its byte-order mark is valid UTF-8, NUL bytes between the letters: NUL bytes in the first line
(a header, or a JSON object, where they never belong) are an error with the same advice.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gptclf.errors import GptclfError

BLOCK = 1 << 16
HEAD = 4096  # bytes looked at to advise on the encoding


class TextDecoder:
    """Decodes one file's bytes, given in order, in ``encoding``; a leading byte-order mark is
    dropped. ``quoted``: the file is CSV/TSV, whose rows follow a header and whose line breaks
    inside double quotes do not end a row (a JSONL row is a line)."""

    def __init__(self, path: Path, encoding: str, quoted: bool):
        try:
            self._decoder = codecs.getincrementaldecoder(encoding)()
        except LookupError as exc:
            raise GptclfError(f"unknown encoding {encoding!r} given with --encoding") from exc
        self.path, self.encoding, self.quoted = path, encoding, quoted
        self._offset = 0  # bytes decoded so far
        self._breaks, self._in_quotes = 0, False  # row breaks in them, and where they end
        self._head = b""
        self._started = False  # some text came out

    def decode(self, block: bytes, final: bool = False) -> str:
        """The text of the next ``block`` of bytes (``final``: the last)."""
        if len(self._head) < HEAD:
            self._head += block[: HEAD - len(self._head)]
        pending = len(self._decoder.getstate()[0])
        try:
            text = self._decoder.decode(block, final)
        except UnicodeDecodeError as exc:
            raise self._not_text(block, exc.start - pending) from exc
        if text and not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
            if "\x00" in text.partition("\n")[0]:
                raise GptclfError(
                    f"{self.path}: the first line holds NUL bytes, so the file is not "
                    f"{self.encoding} text; {self._advice()}"
                )
        self._breaks, self._in_quotes = self._count(block)
        self._offset += len(block)
        return text

    def _count(self, data: bytes) -> tuple[int, bool]:
        """Row breaks up to the end of ``data`` (which follows the bytes decoded so far), and
        whether it ends inside double quotes."""
        if not self.quoted:
            return self._breaks + data.count(b"\n"), False
        parts = data.split(b'"')
        outside = parts[1::2] if self._in_quotes else parts[::2]
        inside = self._in_quotes != (len(parts) % 2 == 0)
        return self._breaks + sum(part.count(b"\n") for part in outside), inside

    def _not_text(self, block: bytes, position: int) -> GptclfError:
        row = self._count(block[: max(position, 0)])[0] + (not self.quoted)
        where = f"row {row}" if row else "the header"
        return GptclfError(
            f"{self.path}: not valid {self.encoding} at byte offset {self._offset + position} "
            f"({where}); {self._advice()}"
        )

    def _advice(self) -> str:
        """What to do, by the file's first bytes: UTF-32 or UTF-16 by a byte-order mark, UTF-16
        by NUL bytes at every other byte (ASCII letters in UTF-16, their order telling little
        from big endian); other NUL bytes are no text in any encoding."""
        head = self._head
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            return "pass --encoding utf-32"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "pass --encoding utf-16"
        even, odd = _nul_share(head[0::2]), _nul_share(head[1::2])
        if odd > 0.4 and even < 0.1:  # "t\0e\0x\0t\0"
            return "pass --encoding utf-16-le"
        if even > 0.4 and odd < 0.1:  # "\0t\0e\0x\0t"
            return "pass --encoding utf-16-be"
        if 0 in head:
            return "it holds NUL bytes: is it a text file (not compressed, not a spreadsheet)?"
        return "pass the file's encoding with --encoding, e.g. --encoding latin-1"


def _nul_share(data: bytes) -> float:
    return data.count(0) / max(len(data), 1)


def decode(raw: bytes, path: Path, encoding: str, quoted: bool) -> str:
    """The whole text of a file's bytes ``raw`` (see ``TextDecoder``)."""
    return TextDecoder(path, encoding, quoted).decode(raw, final=True)


class DecodedStream(io.TextIOBase):
    """A binary file read as text, block by block (see ``TextDecoder``), for pandas to parse
    or line by line."""

    def __init__(self, binary: BinaryIO, path: Path, encoding: str, quoted: bool):
        self._binary = binary
        self._decoder = TextDecoder(path, encoding, quoted)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        """Up to about ``size`` characters ("" only at the end of the file)."""
        wanted = BLOCK if size is None or size < 0 else max(size, 1)
        while True:
            block = self._binary.read(wanted)
            text = self._decoder.decode(block, final=not block)
            if text or not block:
                return text

    def lines(self) -> Iterator[str]:
        """The lines of the text, split at "\\n" only (which they do not keep); a last line
        that is empty is not one."""
        rest = ""
        while chunk := self.read(BLOCK):
            *lines, rest = (rest + chunk).split("\n")
            yield from lines
        if rest:
            yield rest
