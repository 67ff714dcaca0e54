"""Reading a file's texts chunk by chunk for prediction: the same texts, checks and messages as
reading it whole, wherever in the file the problem lies."""

from __future__ import annotations

import re

import pytest

from gptclf.data.readers import read_table
from gptclf.data.streaming import text_chunks
from gptclf.errors import GptclfError

TRICKY = 'text,label\n"two\nlines",0\n\n"say ""hi""",1\n,0\n"  ",1\nNA,0\n\ttab,1\n'


def texts_of(path, chunk_rows=2, **options) -> list[list[str]]:
    with text_chunks(path, chunk_rows=chunk_rows, **options) as chunks:
        return list(chunks)


def test_chunks_hold_the_texts_of_the_whole_file_in_order(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("\ufeff" + TRICKY)
    chunks = texts_of(path)
    whole = read_table(path)["text"].tolist()
    assert [text for chunk in chunks for text in chunk] == whole
    assert whole == ["two\nlines", "", 'say "hi"', "", "  ", "NA", "\ttab"]
    assert [len(chunk) for chunk in chunks] == [1, 2, 2, 2]  # the header is the first chunk's


def test_jsonl_chunks_take_missing_and_null_texts_as_empty(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": null}\n{"id": 4}\n{"text": 5}\n')
    assert texts_of(path) == [["a", ""], ["", ""], ["5"]]


def test_the_text_column_is_chosen_as_when_reading_whole(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("id\tmessage\tnote\n1\thello\tx\n")
    assert texts_of(path) == [["hello"]]
    assert texts_of(path, text_column="note") == [["x"]]
    with pytest.raises(GptclfError, match=r"no column 'body'; the columns are 'id', 'message'"):
        texts_of(path, text_column="body")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("data.csv", b"", r"data\.csv: file is empty$"),
        ("data.jsonl", b"", r"data\.jsonl: file is empty$"),
        ("data.csv", b"text,text\na,b\n", r"the header names 'text' more than once"),
        ("data.jsonl", b'{"text": 1, "text": 2}\n', r"line 1: key 'text' appears more than once"),
        ("data.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"not valid utf-8 at byte offset 0"),
        ("data.csv", "text\nhi\n".encode("utf-16"), r"pass --encoding utf-16$"),
        ("data.tsv", "text\nhi\n".encode("utf-16-le"), r"first line holds NUL bytes"),
        ("data.parquet", b"PAR1", r"--input must be \.csv, \.tsv or \.jsonl"),
        ("data.txt", b"hi", r"unknown file format '\.txt'"),
    ],
)
def test_a_bad_file_fails_on_opening_in_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(GptclfError, match=message) as caught:
        text_chunks(path).__enter__()
    assert "\n" not in str(caught.value)


def test_a_missing_file_and_a_folder_are_named(tmp_path):
    with pytest.raises(GptclfError, match=r"absent\.csv: file not found$"):
        texts_of(tmp_path / "absent.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(GptclfError, match=r"folder\.csv: is a directory"):
        texts_of(tmp_path / "folder.csv")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_bad_byte_far_into_the_file_is_named_by_offset_and_row(tmp_path, suffix):
    """Past the first blocks read (64 KiB here, 256 KiB by pandas), a quoted line break on the
    way: the offset and row are those of the file."""
    if suffix == ".csv":
        rows = [b'"multi\nline",0\n'] + [b"some text here,1\n"] * 30_000
        content = b"text,label\n" + b"".join(rows) + b"caf\xe9,1\n"
        row = len(rows) + 1
    else:
        rows = [b'{"text": "some text here"}\n'] * 30_000
        content = b"".join(rows) + b'{"text": "caf\xe9"}\n'
        row = len(rows) + 1
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    offset = content.index(b"\xe9")
    expected = rf"not valid utf-8 at byte offset {offset} \(row {row}\); .*latin-1$"
    with pytest.raises(GptclfError, match=expected):
        texts_of(path, chunk_rows=5000)
    with pytest.raises(GptclfError, match=re.escape(f"byte offset {offset} (row {row})")):
        read_table(path)


def test_a_malformed_row_far_into_the_file_is_an_error_naming_its_line(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label\n" + "a,0\n" * 5000 + "b,1,extra\n")
    with pytest.raises(GptclfError, match=r"data\.csv: cannot parse the file: .*line 5002"):
        texts_of(path, chunk_rows=1000)


def test_a_file_read_in_its_encoding_gives_its_texts(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes("text\ncafé\nthé\n".encode("utf-16"))
    assert texts_of(path, encoding="utf-16") == [["café"], ["thé"]]
