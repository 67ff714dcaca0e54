"""Reading and writing labelled text files: CSV, TSV, JSONL and Parquet, chosen by suffix.

Row numbers are 1-based data rows (the CSV/TSV header is not counted; for JSONL a row is a line),
so every message and every kept example can be traced back to the file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from gptclf.atomic import atomic_path
from gptclf.errors import GptclfError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
TEXT_COLUMNS = (
    "text",
    "message",
    "sentence",
    "content",
    "body",
    "review",
    "document",
    "sms",
    "utterance",
    "query",
)
LABEL_COLUMNS = (
    "label",
    "labels",
    "class",
    "category",
    "target",
    "sentiment",
    "intent",
    "topic",
    "y",
)
SHOWN_ROWS = 5
INTEGER_LITERAL = re.compile(r"[+-]?[0-9]+")


@dataclass
class LabelledTexts:
    """Texts and their labels as read from one file, with each example's row number."""

    source: str
    texts: list[str]
    labels: list[int | str] | None
    rows: list[int]
    dropped_empty: list[int]
    text_column: str
    label_column: str | None


def read_table(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """The file as a table, one row per data row; CSV/TSV cells are strings ("" when empty).
    Blank lines are rows too (with empty cells), so positions match the file's row numbers."""
    path = Path(path)
    raw = _read_bytes(path)
    file_format = _format_of(path)
    if not raw.strip():
        raise GptclfError(f"{path}: file is empty")
    if file_format == "parquet":
        return _parse_parquet(raw, path)
    text = _decode(raw, path, encoding, has_header=file_format != "jsonl")
    if file_format == "jsonl":
        return _parse_jsonl(text, path)
    return _parse_delimited(text, path, separator="\t" if file_format == "tsv" else ",")


def read_labelled(
    path: Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str = "utf-8",
    strict: bool = False,
    labels_required: bool = True,
) -> LabelledTexts:
    """Texts and labels of a file; rows with empty text are dropped (an error when ``strict``)."""
    table = read_table(path, encoding)
    source = str(path)
    columns = list(table.columns)
    text_name = _choose_column(columns, text_column, TEXT_COLUMNS, "text", source, required=True)
    label_name = _choose_column(
        columns, label_column, LABEL_COLUMNS, "label", source, required=labels_required
    )
    if text_name == label_name:
        raise GptclfError(f"{source}: column {text_name!r} cannot hold both text and labels")
    values = table[text_name].tolist()
    kept = [row for row, value in enumerate(values, 1) if not _is_blank(value)]
    dropped = [row for row, value in enumerate(values, 1) if _is_blank(value)]
    if strict and dropped:
        raise GptclfError(f"{source}: empty text in column {text_name!r} at {_rows_text(dropped)}")
    if not kept:
        raise GptclfError(f"{source}: no row has text in column {text_name!r}")
    labels = None
    if label_name is not None:
        label_values = table[label_name].tolist()
        labels = _read_labels([label_values[row - 1] for row in kept], kept, label_name, source)
    return LabelledTexts(
        source=source,
        texts=[_as_text(values[row - 1]) for row in kept],
        labels=labels,
        rows=kept,
        dropped_empty=dropped,
        text_column=text_name,
        label_column=label_name,
    )


def write_labelled(
    path: Path,
    texts: Sequence[str],
    labels: Sequence[int | str],
    text_column: str = "text",
    label_column: str = "label",
) -> None:
    """Write texts and labels in the format that ``path``'s suffix names, atomically."""
    path = Path(path)
    file_format = _format_of(path)
    table = pd.DataFrame({text_column: list(texts), label_column: list(labels)})
    with atomic_path(path) as tmp:
        if file_format == "parquet":
            table.to_parquet(tmp, index=False)
        elif file_format == "jsonl":
            _write_jsonl(table, tmp)
        else:
            table.to_csv(
                tmp,
                sep="\t" if file_format == "tsv" else ",",
                index=False,
                lineterminator="\n",
                quoting=csv.QUOTE_NONNUMERIC,
                encoding="utf-8",
            )


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise GptclfError(f"{path}: is a directory, not a data file")
    if not path.exists():
        raise GptclfError(f"{path}: file not found")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GptclfError(f"{path}: cannot read file ({exc.strerror})") from exc


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        supported = ", ".join(FORMATS)
        raise GptclfError(f"{path}: unknown file format {suffix!r}; supported: {supported}")
    return FORMATS[suffix]


def _decode(raw: bytes, path: Path, encoding: str, has_header: bool) -> str:
    """The file's text without a leading byte-order mark; bad bytes are reported by offset."""
    try:
        text = raw.decode(encoding)
    except LookupError as exc:
        raise GptclfError(f"unknown encoding {encoding!r} given with --encoding") from exc
    except UnicodeDecodeError as exc:
        row = _row_at(raw, exc.start, has_header)
        where = f"row {row}" if row else "the header"
        raise GptclfError(
            f"{path}: not valid {encoding} at byte offset {exc.start} ({where}); "
            "pass the file's encoding with --encoding, e.g. --encoding latin-1"
        ) from exc
    return text.removeprefix("\ufeff")


def _row_at(raw: bytes, offset: int, has_header: bool) -> int:
    """The 1-based data row holding byte ``offset`` (0 for a header): line breaks inside
    double quotes do not end a CSV/TSV row, and a JSONL row is a line."""
    before = raw[:offset]
    if not has_header:
        return before.count(b"\n") + 1
    return sum(outside.count(b"\n") for outside in before.split(b'"')[::2])


def _parse_delimited(text: str, path: Path, separator: str) -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=separator,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise GptclfError(f"{path}: cannot parse the file: {_one_line(exc)}") from exc


def _parse_jsonl(text: str, path: Path) -> pd.DataFrame:
    """One record per line; a blank line is an empty record, so rows stay line numbers."""
    lines = text.split("\n")
    if lines[-1].strip() == "":
        lines.pop()
    records = [_json_record(line, number, path) for number, line in enumerate(lines, 1)]
    return pd.DataFrame(records, dtype=object)


def _json_record(line: str, number: int, path: Path) -> dict:
    if not line.strip():
        return {}
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise GptclfError(
            f"{path}: line {number} is not valid JSON ({exc.msg} at column {exc.colno})"
        ) from exc
    if not isinstance(record, dict):
        raise GptclfError(f"{path}: line {number} is not a JSON object")
    return record


def _parse_parquet(raw: bytes, path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(raw))
    except (pa.ArrowException, OSError) as exc:
        raise GptclfError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from exc


def _write_jsonl(table: pd.DataFrame, path: Path) -> None:
    lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in table.to_dict("records"))
    path.write_text("".join(lines), encoding="utf-8")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _choose_column(
    columns: list[str],
    explicit: str | None,
    candidates: tuple[str, ...],
    role: str,
    source: str,
    required: bool,
) -> str | None:
    """The explicitly named column, else the first candidate present (case-insensitive)."""
    listed = ", ".join(repr(column) for column in columns)
    if explicit is not None:
        found = _find_column(columns, explicit)
        if found is None:
            raise GptclfError(f"{source}: no column {explicit!r}; the columns are {listed}")
        return found
    found = next(
        (column for name in candidates if (column := _find_column(columns, name)) is not None),
        None,
    )
    if found is None and required:
        raise GptclfError(
            f"{source}: cannot tell which column holds the {role}s (columns: {listed}); "
            f"pass --{role}-column"
        )
    return found


def _find_column(columns: list[str], name: str) -> str | None:
    """``name`` itself if present, else the first column equal to it ignoring case."""
    if name in columns:
        return name
    return next((column for column in columns if column.lower() == name.lower()), None)


def _is_missing(value: object) -> bool:
    """None, NaN, NA or the empty string."""
    if isinstance(value, str):
        return value == ""
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or value is pd.NA


def _is_blank(value: object) -> bool:
    return _is_missing(value) or (isinstance(value, str) and not value.strip())


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _read_labels(
    values: list[object], rows: list[int], column: str, source: str
) -> list[int | str]:
    """Labels as ints or strings; string labels that are all integer literals become ints."""
    missing = [row for row, value in zip(rows, values, strict=True) if _is_missing(value)]
    if missing:
        raise GptclfError(f"{source}: no label in column {column!r} at {_rows_text(missing)}")
    labels = [
        _label_value(value, row, column, source) for row, value in zip(rows, values, strict=True)
    ]
    strings = [label for label in labels if isinstance(label, str)]
    if strings and all(INTEGER_LITERAL.fullmatch(label) for label in strings):
        return [int(label) for label in labels]
    return labels


def _label_value(value: object, row: int, column: str, source: str) -> int | str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise GptclfError(
            f"{source}: label {value!r} in column {column!r} at row {row} is not a whole number"
        )
    if isinstance(value, str):
        return value
    raise GptclfError(
        f"{source}: label in column {column!r} at row {row} is a {type(value).__name__}, "
        "not a single value"
    )


def _rows_text(rows: list[int]) -> str:
    """ "row 3", or "rows 1, 2, 3, 4, 5 and 7 more"."""
    return f"row {rows[0]}" if len(rows) == 1 else f"rows {listed_rows(rows)}"


def listed_rows(rows: Sequence[int]) -> str:
    """Row numbers for a message: "1, 2, 3, 4, 5 and 7 more"."""
    shown = ", ".join(str(row) for row in rows[:SHOWN_ROWS])
    more = len(rows) - SHOWN_ROWS
    return shown + (f" and {more} more" if more > 0 else "")


def choose_text_column(columns: Sequence[object], explicit: str | None, source: str) -> str:
    """The text column of a table: ``explicit`` if given, else the first detected one."""
    return _choose_column([str(c) for c in columns], explicit, TEXT_COLUMNS, "text", source, True)
