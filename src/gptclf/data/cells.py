"""What the cells of a table hold: missing values, text, and labels (one per text, or a set of
labels per text from a list, separator-joined labels or 0/1 columns); and how messages list row
numbers."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gptclf.errors import GptclfError

SHOWN_ROWS = 5
INTEGER_LITERAL = re.compile(r"[+-]?[0-9]+")
YES_CELLS = {"1", "1.0", "true"}  # how a 0/1 label column says a text has the label ...
NO_CELLS = {"0", "0.0", "false", ""}  # ... and that it has not (an empty cell too)


def is_missing(value: object) -> bool:
    """None, NaN, NA or the empty string."""
    if isinstance(value, str):
        return value == ""
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or value is pd.NA


def is_blank(value: object) -> bool:
    return is_missing(value) or (isinstance(value, str) and not value.strip())


def as_text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def cell_text(value: object) -> str:
    """A cell as text: "" when missing (see ``is_missing``)."""
    return "" if is_missing(value) else as_text(value)


def read_labels(values: list[object], rows: list[int], column: str, source: str) -> list[int | str]:
    """Labels as ints or strings; string labels that are all integer literals become ints."""
    missing = [row for row, value in zip(rows, values, strict=True) if is_missing(value)]
    if missing:
        raise GptclfError(f"{source}: no label in column {column!r} at {rows_text(missing)}")
    labels = [
        label_value(value, row, column, source) for row, value in zip(rows, values, strict=True)
    ]
    return as_ints(labels)


def as_ints(labels: list[int | str]) -> list[int | str]:
    """``labels`` as ints where every string among them is an integer literal, else
    ``labels`` itself."""
    strings = [label for label in labels if isinstance(label, str)]
    if strings and all(INTEGER_LITERAL.fullmatch(label) for label in strings):
        with contextlib.suppress(ValueError):  # more digits than Python turns into an int
            return [int(label) for label in labels]
    return labels


def label_value(value: object, row: int, column: str, source: str) -> int | str:
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


def is_list(value: object) -> bool:
    """A JSON list, or the array Parquet gives for a list cell."""
    return isinstance(value, (list, tuple, np.ndarray))


def read_label_sets(
    values: list[object], rows: list[int], column: str, separator: str | None, source: str
) -> list[tuple[int | str, ...]]:
    """Each row's labels, a tuple in first-seen order without repeats: a list cell, or a cell
    of ``separator``-joined labels (an empty cell: no label). With lists, a single value in
    some row is an error: the row may have lost its brackets."""
    sets = []
    for row, value in zip(rows, values, strict=True):
        if is_list(value):
            items = list(value)
        elif separator is not None and isinstance(value, str):
            items = [part.strip() for part in value.split(separator) if part.strip()]
        elif separator is not None and is_missing(value):
            items = []
        else:
            wanted = "a list of labels" if separator is None else f"labels joined by {separator!r}"
            raise GptclfError(
                f"{source}: label in column {column!r} at row {row} is {value!r}, not {wanted} "
                "as in other rows"
            )
        items = [item.item() if isinstance(item, np.generic) else item for item in items]
        labels = [label_value(item, row, column, source) for item in items]
        if "" in labels:
            raise GptclfError(f"{source}: an empty label in column {column!r} at row {row}")
        sets.append(tuple(dict.fromkeys(labels)))
    flat = [label for labels in sets for label in labels]
    converted = as_ints(flat)
    if converted is flat:
        return sets
    numbers = iter(converted)
    return [tuple(next(numbers) for _ in labels) for labels in sets]


def read_label_columns(
    cells: list[np.ndarray], rows: list[int], columns: tuple[str, ...], source: str
) -> list[tuple[str, ...]]:
    """Each row's labels: the names of its columns holding 1 (or true); 0, false or an empty
    cell is no; anything else is an error naming row and column."""
    sets = []
    for row, values in zip(rows, cells, strict=True):
        labels = []
        for column, value in zip(columns, values, strict=True):
            text = "" if is_missing(value) else str(value).strip().lower()
            if text not in YES_CELLS | NO_CELLS:
                raise GptclfError(
                    f"{source}: column {column!r} at row {row} holds {value!r}, not 0 or 1"
                )
            if text in YES_CELLS:
                labels.append(column)
        sets.append(tuple(labels))
    return sets


def rows_text(rows: list[int]) -> str:
    """ "row 3", or "rows 1, 2, 3, 4, 5 and 7 more"."""
    return f"row {rows[0]}" if len(rows) == 1 else f"rows {listed_rows(rows)}"


def listed_rows(rows: Sequence[int], total: int | None = None) -> str:
    """Row numbers for a message: "1, 2, 3, 4, 5 and 7 more" (``total``: how many there are,
    when ``rows`` holds only the first)."""
    shown = ", ".join(str(row) for row in rows[:SHOWN_ROWS])
    more = (len(rows) if total is None else total) - SHOWN_ROWS
    return shown + (f" and {more} more" if more > 0 else "")
