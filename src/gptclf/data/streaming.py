"""The texts of a CSV/TSV/JSONL file chunk by chunk, for classifying files of any size: the
parsing, checks and messages of ``readers.read_table``, without holding the file in memory."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from gptclf.data.cells import cell_text
from gptclf.data.decoding import DecodedStream
from gptclf.data.readers import (
    choose_column,
    choose_text_column,
    format_of,
    json_record,
    open_data_file,
    parse_delimited,
    parse_error,
    with_header,
)
from gptclf.errors import GptclfError

STREAMED = ("csv", "tsv", "jsonl")


@contextmanager
def text_chunks(
    path: Path,
    text_column: str | None = None,
    encoding: str = "utf-8",
    chunk_rows: int = 1024,
    pair_column: str | None = None,
) -> Iterator[Iterator[list[str]] | Iterator[list[tuple[str, str]]]]:
    """The texts of ``path``'s text column (``text_column``, else detected) in lists of up to
    ``chunk_rows``, in file order, one per data row ("" where a row has none); with
    ``pair_column``, each row's (text, pair). Opening reads and checks the header, the columns
    and the first chunk, so that a bad file fails at once; a problem further on is raised when
    its chunk is read."""
    path = Path(path)
    file_format = format_of(path)
    if file_format not in STREAMED:
        raise GptclfError(f"{path}: --input must be .csv, .tsv or .jsonl")
    with open_data_file(path) as binary:
        if path.stat().st_size == 0:
            raise GptclfError(f"{path}: file is empty")
        stream = DecodedStream(binary, path, encoding, quoted=file_format != "jsonl")
        if file_format == "jsonl":
            chunks = _jsonl_chunks(stream, path, text_column, chunk_rows, pair_column)
        else:
            chunks = _delimited_chunks(
                stream, path, file_format, text_column, chunk_rows, pair_column
            )
        first = next(chunks, [])
        yield itertools.chain([first], chunks)


def _delimited_chunks(
    stream: DecodedStream,
    path: Path,
    file_format: str,
    text_column: str | None,
    chunk_rows: int,
    pair_column: str | None,
) -> Iterator[list[str]] | Iterator[list[tuple[str, str]]]:
    """The first chunk always (if only the header: no texts), then one per further chunk."""
    reader = parse_delimited(stream, path, file_format, chunksize=chunk_rows)
    tables = _tables(reader, path)
    first = with_header(next(tables, pd.DataFrame()), path)
    names = list(first.columns)
    columns = [choose_text_column(names, text_column, str(path))]
    if pair_column is not None:
        columns.append(choose_column(names, pair_column, str(path)))
    positions = [names.index(column) for column in columns]
    for table in itertools.chain([first], tables):
        yield _examples([[cell_text(v) for v in table.iloc[:, p]] for p in positions])


def _examples(columns: list[list[str]]) -> list[str] | list[tuple[str, str]]:
    """The texts of the one column, or the (text, pair) of each row of two."""
    return columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))


def _tables(reader, path: Path) -> Iterator[pd.DataFrame]:
    try:
        yield from reader
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise parse_error(path, exc) from exc


def _jsonl_chunks(
    stream: DecodedStream,
    path: Path,
    text_column: str | None,
    chunk_rows: int,
    pair_column: str | None,
) -> Iterator[list[str]] | Iterator[list[tuple[str, str]]]:
    """One chunk per ``chunk_rows`` lines; the columns are chosen among the keys of the first
    chunk's records."""
    records = (json_record(line, number, path) for number, line in enumerate(stream.lines(), 1))
    columns = None
    while chunk := list(itertools.islice(records, chunk_rows)):
        if columns is None:
            keys = list(dict.fromkeys(key for record in chunk for key in record))
            columns = [choose_text_column(keys, text_column, str(path))]
            if pair_column is not None:
                columns.append(choose_column(keys, pair_column, str(path)))
        yield _examples([[cell_text(record.get(c)) for record in chunk] for c in columns])
