"""Stratified splits: proportions per class, determinism, coverage, errors and written files."""

from __future__ import annotations

from collections import Counter

import pytest

from gptclf.data.readers import LabelledTexts, read_labelled
from gptclf.data.splits import stratified_split, write_split
from gptclf.errors import GptclfError

FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}


def labelled(counts: dict[int | str, int], source: str = "data.csv") -> LabelledTexts:
    """Rows of each class interleaved, numbered 1.. as in a file, with empty-text rows dropped."""
    labels = [label for label, count in counts.items() for _ in range(count)]
    labels = labels[::2] + labels[1::2]
    return LabelledTexts(
        source=source,
        texts=[f"text {row}" for row in range(1, len(labels) + 1)],
        labels=labels,
        rows=list(range(1, len(labels) + 1)),
        dropped_empty=[],
        text_column="text",
        label_column="label",
    )


@pytest.mark.parametrize("counts", [{0: 50, 1: 30, 2: 20}, {"ham": 97, "spam": 23, "eggs": 11}])
def test_each_class_keeps_its_proportion_within_one_row(counts):
    splits = stratified_split(labelled(counts))
    for name, part in splits.items():
        per_class = Counter(part.labels)
        for label, count in counts.items():
            assert abs(per_class[label] - FRACTIONS[name] * count) <= 1, (name, label)


def test_the_same_seed_gives_the_same_split_and_another_seed_another():
    data = labelled({0: 60, 1: 40})
    first, again = stratified_split(data, seed=7), stratified_split(data, seed=7)
    other = stratified_split(data, seed=8)
    assert {name: part.rows for name, part in first.items()} == {
        name: part.rows for name, part in again.items()
    }
    assert first["test"].rows != other["test"].rows


def test_every_row_lands_in_exactly_one_split_and_keeps_its_text_and_label():
    data = labelled({"a": 40, "b": 25, "c": 9})
    splits = stratified_split(data)
    rows = [row for part in splits.values() for row in part.rows]
    assert sorted(rows) == data.rows
    by_row = dict(zip(data.rows, zip(data.texts, data.labels, strict=True), strict=True))
    for part in splits.values():
        assert part.rows == sorted(part.rows)
        for row, text, label in zip(part.rows, part.texts, part.labels, strict=True):
            assert by_row[row] == (text, label)


def test_rows_are_traced_back_to_the_file(tmp_path):
    lines = "".join(f"t{i},{i % 2}\n" if i % 7 else f",{i % 2}\n" for i in range(1, 41))
    path = tmp_path / "data.csv"
    path.write_text("text,label\n" + lines)
    data = read_labelled(path)
    for part in stratified_split(data).values():
        assert all(text == f"t{row}" for text, row in zip(part.texts, part.rows, strict=True))


def test_a_class_with_one_row_is_an_error_naming_it_its_count_and_the_file():
    with pytest.raises(GptclfError, match=r"^train\.csv: class 'rare' has only 1 row\(s\)"):
        stratified_split(labelled({"common": 30, "rare": 1}, source="train.csv"), (0.8, 0, 0.2))


def test_a_class_too_small_for_three_splits_is_an_error():
    with pytest.raises(GptclfError, match=r"class 1 has only 2 row\(s\); .* into 3 parts"):
        stratified_split(labelled({0: 30, 1: 2}))


def test_a_split_that_would_miss_a_class_says_so():
    with pytest.raises(GptclfError, match=r"the test split would have no row of class"):
        stratified_split(labelled({0: 96, 1: 2, 2: 2}), (0.97, 0, 0.03))


def test_a_split_smaller_than_the_number_of_classes_says_so():
    with pytest.raises(GptclfError, match=r"a test fraction of 0.01 gives 1 of 100 rows, fewer"):
        stratified_split(labelled({0: 50, 1: 50}), (0.99, 0, 0.01))


def test_fractions_must_sum_to_one():
    with pytest.raises(GptclfError, match=r"must sum to 1"):
        stratified_split(labelled({0: 50, 1: 50}), (0.7, 0.2, 0.2))


def test_a_zero_fraction_leaves_that_split_out():
    splits = stratified_split(labelled({0: 50, 1: 50}), (0.8, 0.0, 0.2))
    assert list(splits) == ["train", "test"]
    assert (len(splits["train"].texts), len(splits["test"].texts)) == (80, 20)


def test_unlabelled_data_cannot_be_split():
    data = labelled({0: 5, 1: 5})
    data.labels = None
    with pytest.raises(GptclfError, match="no labels to split by"):
        stratified_split(data)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_written_splits_read_back_equal(tmp_path, fmt):
    data = labelled({"ham": 30, "spam": 10})
    data.texts[0] = 'a "quoted", multi\nline\ttext 😀'
    splits = stratified_split(data)
    paths = write_split(splits, tmp_path, fmt)
    assert paths == {name: tmp_path / f"{name}.{fmt}" for name in ("train", "validation", "test")}
    for name, part in splits.items():
        back = read_labelled(paths[name])
        assert (back.texts, back.labels) == (part.texts, part.labels)


def tagged(sets: list[tuple[str, ...]]) -> LabelledTexts:
    """Texts with the sets of labels ``sets``, numbered 1.. as in a file."""
    return LabelledTexts(
        source="t.jsonl",
        texts=[f"t{i}" for i in range(len(sets))],
        labels=sets,
        rows=list(range(1, len(sets) + 1)),
        dropped_empty=[],
        text_column="text",
        label_column="labels",
        multi_label=True,
    )


def test_a_multi_label_split_keeps_every_label_in_every_part_and_is_deterministic():
    sets = [("a",), ("a", "b"), ("b",), (), ("c", "a"), ("c",)] * 10
    data = tagged(sets)
    parts = stratified_split(data, tuple(FRACTIONS.values()), seed=5)
    assert {name: len(p.texts) for name, p in parts.items()} == {
        "train": 42,
        "validation": 6,
        "test": 12,
    }
    for part in parts.values():
        assert part.multi_label
        assert {label for row in part.labels for label in row} == {"a", "b", "c"}
    again = stratified_split(data, tuple(FRACTIONS.values()), seed=5)
    assert all(again[n].rows == parts[n].rows for n in parts)


def test_multi_label_texts_whose_rarest_label_is_too_rare_to_stratify_are_split_together():
    """Each text's rarest label alone would make strata of one text, which no stratified split
    can share out; pooled, they split, and every label still reaches every part."""
    sets = [("a", "b"), ("a", "c"), ("b", "c")] * 8 + [("a", "d"), ("b", "e")]
    sets += [("d",), ("e",), ("d", "e"), ("d",), ("e",), ("d", "e")]
    data = tagged(sets)
    parts = stratified_split(data, (0.6, 0.2, 0.2), seed=1)
    assert sum(len(p.texts) for p in parts.values()) == len(sets)
