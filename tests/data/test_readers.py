"""Reading labelled files: round trips in every format, column detection, and bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptclf.data.readers import read_labelled, read_table, write_labelled
from gptclf.errors import GptclfError

FORMATS = ["csv", "tsv", "jsonl", "parquet"]
TRICKY = st.sampled_from(["\t", "\n", "\r", '"', ",", "'", "😀", "\ufeff", "\u2028", "\x00"])
CHARACTERS = st.characters(codec="utf-8")
TEXTS = st.text(CHARACTERS | TRICKY, min_size=1).filter(str.strip)
STRING_LABELS = st.text(CHARACTERS, min_size=1).filter(
    lambda label: not re.fullmatch(r"[+-]?[0-9]+", label)
)
LABEL_LISTS = st.one_of(
    st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=8),
    st.lists(STRING_LABELS, min_size=1, max_size=8),
)


def write_csv(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def assert_one_line_error(match: str, call, *args, **kwargs) -> str:
    with pytest.raises(GptclfError, match=match) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("fmt", FORMATS)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), labels=LABEL_LISTS)
def test_texts_and_labels_round_trip_exactly_with_their_types(tmp_path, fmt, data, labels):
    texts = data.draw(st.lists(TEXTS, min_size=len(labels), max_size=len(labels)))
    path = tmp_path / f"data.{fmt}"
    write_labelled(path, texts, labels)
    back = read_labelled(path)
    assert back.texts == texts
    assert back.labels == labels
    assert [type(label) for label in back.labels] == [type(label) for label in labels]
    assert back.rows == list(range(1, len(texts) + 1))
    assert back.dropped_empty == []


def test_a_lone_carriage_return_round_trips_because_written_text_is_always_quoted(tmp_path):
    path = tmp_path / "cr.csv"
    write_labelled(path, ["a\rb", "\rc\r"], [0, 1])
    assert path.read_bytes() == b'"text","label"\n"a\rb",0\n"\rc\r",1\n'
    assert read_labelled(path).texts == ["a\rb", "\rc\r"]


def test_an_unquoted_carriage_return_in_a_foreign_csv_ends_the_row(tmp_path):
    path = write_csv(tmp_path / "cr.csv", "text,label\na\rb,1\n")
    assert read_table(path)["text"].tolist() == ["a", "b"]


def test_na_and_null_stay_text(tmp_path):
    path = write_csv(tmp_path / "na.csv", "text,label\nNA,null\nnull,NA\n")
    data = read_labelled(path)
    assert data.texts == ["NA", "null"]
    assert data.labels == ["null", "NA"]


def test_integer_literal_labels_in_csv_become_ints(tmp_path):
    path = write_csv(tmp_path / "ints.csv", "text,label\na,0\nb,1\nc,-2\n")
    assert read_labelled(path).labels == [0, 1, -2]


def test_integral_floats_become_ints_and_others_are_an_error_naming_the_row(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "a", "label": 1.0}\n{"text": "b", "label": 0}\n')
    assert read_labelled(good).labels == [1, 0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0.5}\n')
    assert_one_line_error(r"bad\.jsonl: label 0\.5 in column 'label' at row 2", read_labelled, bad)


def test_missing_file_is_reported_as_not_found(tmp_path):
    path = tmp_path / "absent.csv"
    assert_one_line_error(rf"^{re.escape(str(path))}: file not found$", read_labelled, path)


def test_a_directory_is_not_a_data_file(tmp_path):
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    assert_one_line_error(rf"{re.escape(str(folder))}: is a directory", read_labelled, folder)


def test_unknown_format_lists_the_supported_ones(tmp_path):
    path = write_csv(tmp_path / "data.xlsx", "whatever")
    message = assert_one_line_error(r"data\.xlsx: unknown file format '\.xlsx'", read_table, path)
    for suffix in (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".parquet", ".pq"):
        assert suffix in message


def test_an_empty_file_is_reported(tmp_path):
    path = write_csv(tmp_path / "empty.csv", "")
    assert_one_line_error(r"empty\.csv: file is empty", read_table, path)


def test_a_named_column_that_does_not_exist_lists_the_existing_columns(tmp_path):
    path = write_csv(tmp_path / "data.csv", "body,label,extra\na,1\n")
    assert_one_line_error(
        r"data\.csv: no column 'txt'; the columns are 'body', 'label', 'extra'$",
        read_labelled,
        path,
        text_column="txt",
    )


def test_explicit_columns_win_over_detection(tmp_path):
    path = write_csv(tmp_path / "data.csv", "text,label,title,kind\na,0,T,x\nb,1,U,y\n")
    data = read_labelled(path, text_column="title", label_column="kind")
    assert (data.texts, data.labels) == (["T", "U"], ["x", "y"])
    assert (data.text_column, data.label_column) == ("title", "kind")


def test_nothing_detected_names_the_columns_and_the_option(tmp_path):
    path = write_csv(tmp_path / "data.csv", "words,label\na,1\n")
    assert_one_line_error(
        r"data\.csv: cannot tell which column holds the texts \(columns: 'words', 'label'\); "
        r"pass --text-column",
        read_labelled,
        path,
    )
    path = write_csv(tmp_path / "data.csv", "text,verdict\na,1\n")
    assert_one_line_error(r"pass --label-column", read_labelled, path)


def test_without_a_label_column_prediction_input_has_no_labels(tmp_path):
    path = write_csv(tmp_path / "data.csv", "text,id\na,1\nb,2\n")
    data = read_labelled(path, labels_required=False)
    assert (data.texts, data.labels, data.label_column) == (["a", "b"], None, None)


def test_book_csv_header_label_then_text_is_detected(tmp_path):
    path = write_csv(tmp_path / "train.csv", "Label,Text\n0,Hello there\n1,WIN a prize\n")
    data = read_labelled(path)
    assert (data.text_column, data.label_column) == ("Text", "Label")
    assert (data.texts, data.labels) == (["Hello there", "WIN a prize"], [0, 1])


def test_sentence_and_category_are_detected(tmp_path):
    path = write_csv(tmp_path / "data.tsv", "id\tcategory\tsentence\n7\tsport\tA goal.\n")
    data = read_labelled(path)
    assert (data.text_column, data.label_column) == ("sentence", "category")
    assert (data.texts, data.labels) == (["A goal."], ["sport"])


def test_empty_text_rows_are_dropped_and_counted_by_row_number(tmp_path):
    path = write_csv(tmp_path / "data.csv", 'text,label\na,0\n,1\n"  ",0\nb,1\n\n"c",0\n')
    data = read_labelled(path)
    assert data.texts == ["a", "b", "c"]
    assert data.rows == [1, 4, 6]
    assert data.dropped_empty == [2, 3, 5]


def test_missing_text_in_jsonl_and_parquet_is_dropped(tmp_path):
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text('{"text": "a", "label": 0}\n{"text": null, "label": 1}\n\n{"label": 1}\n')
    assert read_labelled(jsonl).dropped_empty == [2, 3, 4]
    parquet = tmp_path / "data.parquet"
    pd.DataFrame({"text": ["a", None, "b"], "label": [0, 1, 1]}).to_parquet(parquet)
    assert read_labelled(parquet).dropped_empty == [2]


def test_strict_mode_names_the_first_five_empty_rows_and_how_many_more(tmp_path):
    rows = "".join(f",{i % 2}\n" if i % 3 else f"t{i},{i % 2}\n" for i in range(1, 21))
    path = write_csv(tmp_path / "data.csv", "text,label\n" + rows)
    assert_one_line_error(
        r"data\.csv: empty text in column 'text' at rows 1, 2, 4, 5, 7 and 9 more$",
        read_labelled,
        path,
        strict=True,
    )


def test_missing_labels_are_an_error_naming_the_rows(tmp_path):
    path = write_csv(tmp_path / "data.csv", "text,label\na,\nb,1\nc,\n")
    assert_one_line_error(
        r"data\.csv: no label in column 'label' at rows 1, 3$", read_labelled, path
    )


def test_invalid_utf8_names_byte_offset_and_data_row(tmp_path):
    content = b'text,label\nok,0\n"two\nlines",1\ncaf\xe9,1\n'
    path = write_csv(tmp_path / "latin.csv", content)
    offset = content.index(b"\xe9")
    message = assert_one_line_error(
        rf"latin\.csv: not valid utf-8 at byte offset {offset} \(row 3\)", read_labelled, path
    )
    assert "--encoding" in message


def test_invalid_utf8_in_the_header_says_so(tmp_path):
    path = write_csv(tmp_path / "header.csv", b"t\xe9xt,label\na,1\n")
    assert_one_line_error(r"byte offset 1 \(the header\)", read_table, path)


def test_invalid_utf8_in_jsonl_names_the_line(tmp_path):
    content = b'{"text": "a"}\n{"text": "\xff"}\n'
    path = write_csv(tmp_path / "data.jsonl", content)
    offset = content.index(b"\xff")
    assert_one_line_error(rf"byte offset {offset} \(row 2\)", read_table, path)


def test_latin1_file_reads_with_the_encoding_option(tmp_path):
    path = write_csv(tmp_path / "latin.csv", "text,label\ncafé,1\nthé,0\n".encode("latin-1"))
    assert read_labelled(path, encoding="latin-1").texts == ["café", "thé"]


def test_an_unknown_encoding_is_reported(tmp_path):
    path = write_csv(tmp_path / "data.csv", "text,label\na,1\n")
    assert_one_line_error(r"unknown encoding 'klingon'", read_table, path, encoding="klingon")


def test_a_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    path = write_csv(tmp_path / "bom.csv", "\ufefftext,label\na,1\n")
    assert read_labelled(path).text_column == "text"


def test_malformed_jsonl_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": \n')
    assert_one_line_error(r"data\.jsonl: line 2 is not valid JSON", read_table, path)


def test_a_jsonl_line_that_is_not_an_object_is_reported(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(["a", 0]) + "\n")
    assert_one_line_error(r"data\.jsonl: line 1 is not a JSON object", read_table, path)


def test_csv_parser_errors_name_the_line(tmp_path):
    path = write_csv(tmp_path / "data.csv", "text,label\na,1\nb,1,extra\n")
    assert_one_line_error(r"data\.csv: cannot parse the file: .*line 3", read_table, path)


def test_broken_parquet_is_reported(tmp_path):
    path = write_csv(tmp_path / "data.parquet", b"PAR1 but not really")
    assert_one_line_error(r"data\.parquet: not a readable Parquet file", read_table, path)


def test_parquet_integer_labels_stay_ints(tmp_path):
    path = tmp_path / "data.pq"
    pd.DataFrame({"message": ["a", "b"], "target": [3, 4]}).to_parquet(path)
    data = read_labelled(path)
    assert data.labels == [3, 4]
    assert all(type(label) is int for label in data.labels)


@pytest.mark.parametrize(
    ("name", "content"),
    [("data.csv", "text,label,text\na,0,b\n"), ("data.tsv", "label\ttext\ttext\n0\ta\tb\n")],
)
def test_a_column_named_twice_in_the_header_is_an_error_naming_it(tmp_path, name, content):
    path = write_csv(tmp_path / name, content)
    assert_one_line_error(
        rf"{name}: the header names 'text' more than once; rename or remove the copies",
        read_labelled,
        path,
    )


def test_a_key_given_twice_on_a_jsonl_line_is_an_error_naming_it(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1, "text": "c"}\n')
    assert_one_line_error(
        r"data\.jsonl: line 2: key 'text' appears more than once", read_labelled, path
    )


def test_unnamed_columns_may_be_many(tmp_path):
    path = write_csv(tmp_path / "data.csv", ",text,label,,\n1,a,0,,\n2,b,1,,\n")
    assert read_labelled(path).texts == ["a", "b"]


def test_a_row_with_more_cells_than_the_header_is_an_error_not_an_index(tmp_path):
    path = write_csv(tmp_path / "data.csv", "text,label\nhello,0,extra\nbye,1\n")
    assert_one_line_error(
        r"data\.csv: cannot parse the file: .*Expected 2 fields in line 2, saw 3", read_table, path
    )


def test_a_blank_first_line_is_an_empty_header(tmp_path):
    path = write_csv(tmp_path / "data.csv", "\ntext,label\na,0\n")
    assert_one_line_error(r"data\.csv: the first line, the header, is empty", read_table, path)


def write_format(path: Path, texts: list, labels: list) -> Path:
    """``texts`` and ``labels`` as the format of ``path``'s suffix writes them; None: a missing
    value (an empty CSV/TSV cell, JSON null, Parquet null)."""
    if path.suffix == ".parquet":
        pd.DataFrame({"text": texts, "label": labels}).to_parquet(path)
    elif path.suffix == ".jsonl":
        lines = [json.dumps({"text": t, "label": x}) for t, x in zip(texts, labels, strict=True)]
        path.write_text("\n".join(lines) + "\n")
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        rows = [f"{t or ''}{sep}{x or ''}" for t, x in zip(texts, labels, strict=True)]
        path.write_text("\n".join([f"text{sep}label", *rows]) + "\n")
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_na_strings_are_labels_in_every_format(tmp_path, fmt):
    names = ["NA", "NaN", "null", "None", "nan", "N/A"]
    path = write_format(tmp_path / f"data.{fmt}", ["t"] * len(names), names)
    assert read_labelled(path).labels == names


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_and_null_labels_are_missing_in_every_format(tmp_path, fmt):
    path = write_format(tmp_path / f"data.{fmt}", ["a", "b", "c", "d"], ["x", None, "", "y"])
    assert_one_line_error(r"no label in column 'label' at rows 2, 3$", read_labelled, path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_and_null_texts_are_dropped_in_every_format(tmp_path, fmt):
    path = write_format(tmp_path / f"data.{fmt}", ["a", None, "", "NA"], ["x", "y", "x", "y"])
    data = read_labelled(path)
    assert (data.texts, data.dropped_empty) == (["a", "NA"], [2, 3])


@pytest.mark.parametrize(
    ("encoding", "advice"),
    [
        ("utf-16", "pass --encoding utf-16$"),
        ("utf-16-le", "pass --encoding utf-16-le$"),
        ("utf-16-be", "pass --encoding utf-16-be$"),
        ("utf-32", "pass --encoding utf-32$"),
        ("latin-1", "e.g. --encoding latin-1$"),
    ],
)
def test_a_file_in_another_encoding_is_told_which_to_pass(tmp_path, encoding, advice):
    content = "text,label\ncafé,0\nthé,1\n"
    path = write_csv(tmp_path / "data.csv", content.encode(encoding))
    assert_one_line_error(rf"data\.csv: .*{advice}", read_labelled, path)
    assert read_labelled(path, encoding=advice.split()[-1].rstrip("$")).texts == ["café", "thé"]


def test_a_binary_file_is_asked_whether_it_is_text_at_all(tmp_path):
    path = write_csv(tmp_path / "data.csv", np.linspace(-1, 1, 300).tobytes())
    assert_one_line_error(r"data\.csv: not valid utf-8 .*is it a text file", read_table, path)


LABEL_SETS = st.lists(
    st.lists(st.sampled_from(["spam", "urgent", "money", "ok"]), unique=True, max_size=4).map(
        tuple
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.parametrize(
    ("fmt", "layout"),
    [("jsonl", "lists"), ("parquet", "lists"), ("csv", "separator"), ("tsv", "separator")]
    + [(fmt, "columns") for fmt in FORMATS],
)
@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sets=LABEL_SETS)
def test_sets_of_labels_round_trip_in_every_layout(tmp_path, fmt, layout, sets):
    """A text may carry any number of labels, none included: as lists (JSONL, Parquet), joined
    by a separator, or as a 0/1 column per label; written and read back, the same sets."""
    path = tmp_path / f"tagged.{fmt}"
    texts = [f"text {i}" for i in range(len(sets))]
    names = ("money", "ok", "spam", "urgent")
    layouts = {
        "lists": ({}, {}),
        "separator": ({"label_separator": "|"}, {"label_separator": "|"}),
        "columns": ({"label_columns": names}, {"label_columns": ",".join(names)}),
    }
    writing, reading = layouts[layout]
    write_labelled(path, texts, sets, **writing)
    data = read_labelled(path, **reading)
    assert data.multi_label
    assert [set(labels) for labels in data.labels] == [set(labels) for labels in sets]


def test_a_jsonl_list_column_makes_the_labels_multi_label_with_integers_kept(tmp_path):
    path = tmp_path / "tagged.jsonl"
    lines = [
        {"text": "a", "labels": [1, 3]},
        {"text": "b", "labels": ["2"]},
        {"text": "c", "labels": []},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    data = read_labelled(path)
    assert data.multi_label and data.labels == [(1, 3), (2,), ()]


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        ('{"text": "a", "labels": ["x"]}\n{"text": "b", "labels": "y"}\n', {}, "row 2 is 'y'"),
        ('{"text": "a", "labels": ["x", ["y"]]}\n', {}, "is a list, not a single value"),
        ('{"text": "a", "labels": ["x", ""]}\n', {}, "an empty label in column 'labels' at row 1"),
        ("text,a,b\nhi,1,0\nho,1,yes\n", {"label_columns": "a,b"}, "column 'b' at row 2 holds"),
        ("text,a,b\nhi,1,0\n", {"label_columns": "a,c"}, "no column 'c'"),
        ("text,a,b\nhi,1,0\n", {"label_columns": "a"}, "at least two columns"),
        ("text,a,b\nhi,1,0\n", {"label_columns": "a,text"}, "cannot hold both text and labels"),
        (
            "text,a,b\nhi,1,0\n",
            {"label_columns": "a,b", "label_column": "a"},
            "drop --label-column",
        ),
    ],
)
def test_bad_multi_label_input_is_one_line_naming_row_and_column(
    tmp_path, content, options, message
):
    path = tmp_path / ("data.jsonl" if content.startswith("{") else "data.csv")
    path.write_text(content)
    with pytest.raises(GptclfError, match=re.escape(message)):
        read_labelled(path, **options)
