"""Reading and writing labelled text files: CSV, TSV, JSONL and Parquet, chosen by suffix.

Row numbers are 1-based data rows (the CSV/TSV header is not counted; for JSONL a row is a line),
so every message and every kept example can be traced back to the file.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa

from gptclf.atomic import atomic_path
from gptclf.data.cells import (
    as_text,
    is_blank,
    is_list,
    read_label_columns,
    read_label_sets,
    read_labels,
    rows_text,
)
from gptclf.data.decoding import decode
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


@dataclass
class LabelledTexts:
    """Texts and their labels as read from one file, with each example's row number (and, for
    tasks that classify two texts together, each text's pair). With
    ``multi_label`` each label is a tuple of any number of label values, read from a list
    column, a column of ``label_separator``-joined labels, or 0/1 ``label_columns``."""

    source: str
    texts: list[str]
    labels: list[int | str] | list[tuple[int | str, ...]] | None
    rows: list[int]
    dropped_empty: list[int]
    text_column: str
    label_column: str | None
    multi_label: bool = False
    label_separator: str | None = None
    label_columns: tuple[str, ...] | None = None
    pairs: list[str] | None = None  # the second text of each example, for text-pair tasks
    pair_column: str | None = None


def read_table(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """The file as a table, one row per data row; CSV/TSV cells are strings ("" when empty).
    Blank lines are rows too (with empty cells), so positions match the file's row numbers.
    A column name given twice (a CSV/TSV header's, a JSONL line's key) is an error."""
    path = Path(path)
    raw = _read_bytes(path)
    file_format = format_of(path)
    if not raw.strip():
        raise GptclfError(f"{path}: file is empty")
    if file_format == "parquet":
        table = _parse_parquet(raw, path)
    else:
        text = decode(raw, path, encoding, quoted=file_format != "jsonl")
        if file_format == "jsonl":
            return _parse_jsonl(text, path)
        table = parse_delimited(io.StringIO(text), path, file_format)
        table = with_header(table, path)
    check_unique_columns([str(column) for column in table.columns], path)
    return table


def read_labelled(
    path: Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str = "utf-8",
    strict: bool = False,
    labels_required: bool = True,
    label_separator: str | None = None,
    label_columns: str | None = None,
    text_pair_column: str | None = None,
) -> LabelledTexts:
    """Texts and labels of a file; rows with empty text are dropped (an error when ``strict``);
    with ``text_pair_column``, each text's pair, which every kept row must have.
    A text has several labels where its label cells are lists (JSONL, Parquet), where
    ``label_separator`` joins them in one cell, or in ``label_columns`` ("a,b,c": a 0/1 column
    per label)."""
    table = read_table(path, encoding)
    source = str(path)
    columns = list(table.columns)
    text_name = _choose_column(columns, text_column, TEXT_COLUMNS, "text", source, required=True)
    if label_columns is not None:
        if label_column is not None or label_separator is not None:
            raise GptclfError(
                "--label-columns names every label's column: drop --label-column "
                "and --label-separator"
            )
        label_names = _label_columns(columns, label_columns, text_name, source)
        label_name = None
    else:
        label_names = None
        label_name = _choose_column(
            columns, label_column, LABEL_COLUMNS, "label", source, required=labels_required
        )
    if text_name == label_name:
        raise GptclfError(f"{source}: column {text_name!r} cannot hold both text and labels")
    pair_name = None
    if text_pair_column is not None:
        pair_name = choose_column(columns, text_pair_column, source)
        if pair_name in (text_name, label_name, *(label_names or ())):
            raise GptclfError(f"{source}: column {pair_name!r} cannot hold the pair and more")
    values = table[text_name].tolist()
    kept = [row for row, value in enumerate(values, 1) if not is_blank(value)]
    dropped = [row for row, value in enumerate(values, 1) if is_blank(value)]
    if strict and dropped:
        raise GptclfError(f"{source}: empty text in column {text_name!r} at {rows_text(dropped)}")
    if not kept:
        raise GptclfError(f"{source}: no row has text in column {text_name!r}")
    pairs = None if pair_name is None else _read_pairs(table[pair_name], kept, pair_name, source)
    labels, multi_label = None, label_names is not None
    if label_names is not None:
        cells = table[list(label_names)].to_numpy(dtype=object)
        labels = read_label_columns([cells[row - 1] for row in kept], kept, label_names, source)
    elif label_name is not None:
        label_values = table[label_name].tolist()
        cells = [label_values[row - 1] for row in kept]
        multi_label = label_separator is not None or any(is_list(cell) for cell in cells)
        if multi_label:
            labels = read_label_sets(cells, kept, label_name, label_separator, source)
        else:
            labels = read_labels(cells, kept, label_name, source)
    return LabelledTexts(
        source=source,
        texts=[as_text(values[row - 1]) for row in kept],
        labels=labels,
        rows=kept,
        dropped_empty=dropped,
        text_column=text_name,
        label_column=label_name,
        multi_label=multi_label,
        label_separator=label_separator,
        label_columns=label_names,
        pairs=pairs,
        pair_column=pair_name,
    )


def _read_pairs(cells: pd.Series, rows: list[int], column: str, source: str) -> list[str]:
    """The pair of each kept row; a pair with no text is an error naming its rows."""
    values = cells.tolist()
    empty = [row for row in rows if is_blank(values[row - 1])]
    if empty:
        raise GptclfError(f"{source}: empty text in pair column {column!r} at {rows_text(empty)}")
    return [as_text(values[row - 1]) for row in rows]


def write_labelled(
    path: Path,
    texts: Sequence[str],
    labels: Sequence[int | str] | Sequence[tuple[int | str, ...]],
    text_column: str = "text",
    label_column: str = "label",
    *,
    label_separator: str | None = None,
    label_columns: tuple[str, ...] | None = None,
    pairs: Sequence[str] | None = None,
    pair_column: str = "pair",
) -> None:
    """Write texts (with their ``pairs`` where given) and labels in the format that ``path``'s
    suffix names, atomically. Sets of labels go as 0/1 ``label_columns`` where given, else as
    lists (JSONL, Parquet) or joined by ``label_separator`` (CSV, TSV), so that reading them back
    the same way gives them again."""
    path = Path(path)
    file_format = format_of(path)
    table = pd.DataFrame({text_column: list(texts)})
    if pairs is not None:
        table[pair_column] = list(pairs)
    if label_columns is not None:
        for name in label_columns:
            table[name] = [int(name in labels_of_row) for labels_of_row in labels]
    elif labels and isinstance(labels[0], tuple) and file_format in ("csv", "tsv"):
        if label_separator is None:
            raise ValueError("sets of labels in CSV or TSV need a separator")
        table[label_column] = [label_separator.join(map(str, row)) for row in labels]
    else:
        table[label_column] = [list(row) if isinstance(row, tuple) else row for row in labels]
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
    with open_data_file(path) as binary:
        return binary.read()


def open_data_file(path: Path) -> BinaryIO:
    """``path`` open to read its bytes; a folder, a missing or unreadable file is an error."""
    if path.is_dir():
        raise GptclfError(f"{path}: is a directory, not a data file")
    if not path.exists():
        raise GptclfError(f"{path}: file not found")
    try:
        return open(path, "rb")  # the caller closes it
    except OSError as exc:
        raise GptclfError(f"{path}: cannot read file ({exc.strerror})") from exc


def format_of(path: Path) -> str:
    """The format that ``path``'s suffix names: csv, tsv, jsonl or parquet."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        supported = ", ".join(FORMATS)
        raise GptclfError(f"{path}: unknown file format {suffix!r}; supported: {supported}")
    return FORMATS[suffix]


def parse_delimited(text: io.TextIOBase, path: Path, file_format: str, **chunks) -> pd.DataFrame:
    """CSV/TSV cells as strings; the header is the first row (``with_header``), so that a name
    given twice is seen and a row with more cells than the header is an error, not an index.
    With ``chunksize`` in ``chunks``, an iterator of such tables."""
    try:
        return pd.read_csv(
            text,
            sep="\t" if file_format == "tsv" else ",",
            header=None,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            **chunks,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise parse_error(path, exc) from exc


def parse_error(path: Path, exc: Exception) -> GptclfError:
    if isinstance(exc, pd.errors.EmptyDataError):
        return GptclfError(f"{path}: the first line, the header, is empty")
    return GptclfError(f"{path}: cannot parse the file: {_one_line(exc)}")


def with_header(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The table under its first row's names, that row removed; a name given twice (other
    than an empty one) is an error naming it."""
    names = [str(name) for name in table.iloc[0]] if len(table) else []
    check_unique_columns(names, path)
    body = table.iloc[1:].reset_index(drop=True)
    body.columns = names
    return body


def check_unique_columns(names: list[str], path: Path) -> None:
    repeated = sorted(name for name, count in Counter(names).items() if name and count > 1)
    if repeated:
        listed = ", ".join(repr(name) for name in repeated)
        raise GptclfError(
            f"{path}: the header names {listed} more than once; rename or remove the copies, "
            "so that it is clear which column to read"
        )


def _parse_jsonl(text: str, path: Path) -> pd.DataFrame:
    """One record per line; a blank line is an empty record, so rows stay line numbers."""
    lines = text.split("\n")
    if lines[-1].strip() == "":
        lines.pop()
    records = [json_record(line, number, path) for number, line in enumerate(lines, 1)]
    return pd.DataFrame(records, dtype=object)


def json_record(line: str, number: int, path: Path) -> dict:
    """The JSON object on line ``number`` of a JSONL file; a blank line is an empty one."""
    if not line.strip():
        return {}
    try:
        record = json.loads(line, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise GptclfError(
            f"{path}: line {number} is not valid JSON ({exc.msg} at column {exc.colno})"
        ) from exc
    except (ValueError, RecursionError) as exc:  # a repeated key; too many digits or brackets
        raise GptclfError(f"{path}: line {number}: {_one_line(exc) or 'nested too deep'}") from exc
    if not isinstance(record, dict):
        raise GptclfError(f"{path}: line {number} is not a JSON object")
    return record


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    record = dict(pairs)
    if len(record) < len(pairs):
        repeated = next(key for key, count in Counter(k for k, _ in pairs).items() if count > 1)
        raise ValueError(f"key {repeated!r} appears more than once in an object")
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


def _label_columns(
    columns: list[str], listed: str, text_column: str, source: str
) -> tuple[str, ...]:
    """The columns ``listed`` ("a,b,c") names, each found as ``--text-column`` would be."""
    names = [name.strip() for name in listed.split(",") if name.strip()]
    if len(names) < 2:
        raise GptclfError(
            f"--label-columns names at least two columns, comma-separated: {listed!r}"
        )
    found = tuple(choose_column(columns, name, source) for name in names)
    repeated = sorted({name for name in found if found.count(name) > 1})
    if repeated:
        raise GptclfError(f"--label-columns names {repeated[0]!r} more than once")
    if text_column in found:
        raise GptclfError(f"{source}: column {text_column!r} cannot hold both text and labels")
    return found


def choose_column(columns: Sequence[object], name: str, source: str) -> str:
    """The column ``name`` of a table (matched as ``--text-column`` is)."""
    return _choose_column([str(c) for c in columns], name, (), "", source, True)


def choose_text_column(columns: Sequence[object], explicit: str | None, source: str) -> str:
    """The text column of a table: ``explicit`` if given, else the first detected one."""
    return _choose_column([str(c) for c in columns], explicit, TEXT_COLUMNS, "text", source, True)
