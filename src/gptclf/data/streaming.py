"""The texts of a CSV/TSV/JSONL file chunk by chunk, for classifying files of any size: the
parsing, checks and messages of ``readers.read_table``, without holding the file in memory."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from gptclf.data.decoding import DecodedStream
from gptclf.data.readers import (
    cell_text,
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
    path: Path, text_column: str | None = None, encoding: str = "utf-8", chunk_rows: int = 1024
) -> Iterator[Iterator[list[str]]]:
    """The texts of ``path``'s text column (``text_column``, else detected) in lists of up to
    ``chunk_rows``, in file order, one per data row ("" where a row has none). Opening reads
    and checks the header, the text column and the first chunk, so that a bad file fails at
    once; a problem further on is raised when its chunk is read."""
    path = Path(path)
    file_format = format_of(path)
    if file_format not in STREAMED:
        raise GptclfError(f"{path}: --input must be .csv, .tsv or .jsonl")
    with open_data_file(path) as binary:
        if path.stat().st_size == 0:
            raise GptclfError(f"{path}: file is empty")
        stream = DecodedStream(binary, path, encoding, quoted=file_format != "jsonl")
        if file_format == "jsonl":
            chunks = _jsonl_chunks(stream, path, text_column, chunk_rows)
        else:
            chunks = _delimited_chunks(stream, path, file_format, text_column, chunk_rows)
        first = next(chunks, [])
        yield itertools.chain([first], chunks)


def _delimited_chunks(
    stream: DecodedStream, path: Path, file_format: str, text_column: str | None, chunk_rows: int
) -> Iterator[list[str]]:
    """The first chunk always (if only the header: no texts), then one per further chunk."""
    reader = parse_delimited(stream, path, file_format, chunksize=chunk_rows)
    tables = _tables(reader, path)
    first = with_header(next(tables, pd.DataFrame()), path)
    names = list(first.columns)
    position = names.index(choose_text_column(names, text_column, str(path)))
    yield [cell_text(value) for value in first.iloc[:, position]]
    for table in tables:
        yield [cell_text(value) for value in table.iloc[:, position]]


def _tables(reader, path: Path) -> Iterator[pd.DataFrame]:
    try:
        yield from reader
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise parse_error(path, exc) from exc


def _jsonl_chunks(
    stream: DecodedStream, path: Path, text_column: str | None, chunk_rows: int
) -> Iterator[list[str]]:
    """One chunk per ``chunk_rows`` lines; the text column is chosen among the keys of the
    first chunk's records."""
    records = (json_record(line, number, path) for number, line in enumerate(stream.lines(), 1))
    column = None
    while chunk := list(itertools.islice(records, chunk_rows)):
        if column is None:
            keys = dict.fromkeys(key for record in chunk for key in record)
            column = choose_text_column(list(keys), text_column, str(path))
        yield [cell_text(record.get(column)) for record in chunk]
