"""Hostile input for the readers, property-based: whatever bytes a file holds, reading it gives
a table or one ``GptclfError`` of one line, never another exception; and what gptclf writes it
reads back, whole or chunk by chunk, exactly."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gptclf.data.readers import read_labelled, read_table, write_labelled
from gptclf.data.streaming import text_chunks
from gptclf.errors import GptclfError

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SUFFIXES = st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"])
WORDS = ["text", "label", '"text"', "NA", "null", "NaN", "1", "-2", "1e400", "9" * 5000]
PIECES = st.sampled_from([*',\t"\n\r \x00\ufeffé😀\\{}[]:a', *WORDS])
ENCODINGS = st.sampled_from(["utf-8", "utf-16", "utf-16-le", "latin-1"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
RAW_JSON = st.sampled_from(["9" * 5000, "1e400", "NaN", "-Infinity", "[" * 5000, '"\\ud800"'])
NAMES = st.sampled_from(["text", "label", "Text", "LABEL", "", "message", "text.1"])
PAIRS = st.lists(st.tuples(NAMES, JSON_VALUES.map(json.dumps) | RAW_JSON), max_size=4)
CELLS = st.sampled_from(["9" * 5000, "NA", "", "1"]) | st.lists(
    st.sampled_from([*'a,"\n\r\t é0-', "NA", "12"]), max_size=4
).map("".join)


def read_every_way(path: Path, encoding: str = "utf-8") -> None:
    """Read ``path`` as training, inspection and prediction do: a ``GptclfError`` of one line
    is fine, any other exception fails the test."""
    calls = [
        lambda: read_table(path, encoding),
        lambda: read_labelled(path, encoding=encoding),
        lambda: read_labelled(path, encoding=encoding, labels_required=False, strict=True),
        lambda: read_labelled(path, encoding=encoding, text_column="label", label_column="text"),
    ]
    if path.suffix != ".parquet":
        calls.append(lambda: _stream(path, encoding))
    for call in calls:
        try:
            call()
        except GptclfError as exc:
            assert "\n" not in str(exc) and str(exc)


def _stream(path: Path, encoding: str) -> None:
    with text_chunks(path, encoding=encoding, chunk_rows=3) as chunks:
        for _ in chunks:
            pass


@FAST
@given(raw=st.binary(max_size=400), suffix=SUFFIXES)
def test_random_bytes_are_read_or_refused_in_one_line(tmp_path, raw, suffix):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(raw)
    read_every_way(path)


@FAST
@given(pieces=st.lists(PIECES, max_size=30), suffix=SUFFIXES, encoding=ENCODINGS)
def test_text_made_of_tricky_pieces_is_read_or_refused_in_one_line(
    tmp_path, pieces, suffix, encoding
):
    path = tmp_path / f"data{suffix}"
    path.write_bytes("".join(pieces).encode(encoding, errors="replace"))
    read_every_way(path)
    read_every_way(path, encoding)


def json_object(pairs: list[tuple[str, str]]) -> str:
    """A JSON object of keys and raw JSON values, a key possibly given twice."""
    return "{" + ", ".join(f"{json.dumps(key)}: {value}" for key, value in pairs) + "}"


@FAST
@given(lines=st.lists(PAIRS.map(json_object) | JSON_VALUES.map(json.dumps) | RAW_JSON, max_size=5))
@example(lines=['{"text": "a", "label": 1}', '{"text": "b", "label": 2, "text": "c"}'])
@example(lines=['{"text": "a", "label": ' + "9" * 5000 + "}"])
@example(lines=['{"text": ' + "[" * 5000 + "}"])
def test_any_json_lines_are_read_or_refused_in_one_line(tmp_path, lines):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    read_every_way(path)


@FAST
@given(
    header=st.lists(NAMES, min_size=1, max_size=4),
    rows=st.lists(st.lists(CELLS, max_size=5), max_size=5),
    separator=st.sampled_from([",", "\t"]),
)
@example(header=["text", "label"], rows=[["a", "9" * 5000], ["b", "1"]], separator=",")
@example(header=["text", "text", "label"], rows=[["a", "b", "c"]], separator="\t")
@example(header=["text", "label"], rows=[["a", "0", "extra"]], separator=",")
def test_any_table_is_read_or_refused_in_one_line(tmp_path, header, rows, separator):
    out = io.StringIO()
    csv.writer(out, delimiter=separator).writerows([header, *rows])
    path = tmp_path / ("data.csv" if separator == "," else "data.tsv")
    path.write_text(out.getvalue(), encoding="utf-8")
    read_every_way(path)


TEXTS = st.text(st.characters(codec="utf-8") | st.sampled_from(["\n", "\r", '"', "\x00"]))
LABELS = st.text(st.characters(codec="utf-8"), min_size=1).filter(  # integer literals read as ints
    lambda x: not re.fullmatch(r"[+-]?[0-9]+", x)
)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
@FAST
@given(data=st.data())
def test_what_is_written_is_read_back_whole_and_in_chunks(tmp_path, suffix, data):
    n = data.draw(st.integers(1, 6))
    texts = data.draw(st.lists(TEXTS.filter(str.strip), min_size=n, max_size=n))
    labels = data.draw(st.lists(LABELS, min_size=n, max_size=n))
    path = tmp_path / f"data{suffix}"
    write_labelled(path, texts, labels)
    back = read_labelled(path)
    assert (back.texts, back.labels, back.rows) == (texts, labels, list(range(1, n + 1)))
    if suffix != ".parquet":
        with text_chunks(path, chunk_rows=data.draw(st.integers(1, 4))) as chunks:
            assert [text for chunk in chunks for text in chunk] == texts
