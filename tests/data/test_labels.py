"""Label maps: stable ids, display names, lookup by value, its string or name, storage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptclf.data.labels import LabelMap
from gptclf.errors import GptclfError


@given(st.lists(st.sampled_from([3, -1, 10, 2]), min_size=2).filter(lambda xs: len(set(xs)) > 1))
def test_ids_are_the_same_whatever_the_row_order(labels):
    reordered = LabelMap.from_labels(list(reversed(labels)))
    assert LabelMap.from_labels(labels) == reordered
    assert list(reordered.values) == sorted(set(labels))


def test_ints_sort_numerically_and_strings_lexicographically():
    assert LabelMap.from_labels([10, 2, 1, 2]).values == (1, 2, 10)
    assert LabelMap.from_labels(["spam", "ham", "Spam"]).values == ("Spam", "ham", "spam")


def test_mixed_labels_put_ints_first():
    assert LabelMap.from_labels(["b", 2, "a", 1]).values == (1, 2, "a", "b")


def test_names_default_to_the_value_as_text():
    assert LabelMap.from_labels([1, 0]).names == ("0", "1")


def test_names_mapping_keyed_by_the_value_or_its_string():
    from_strings = LabelMap.from_labels([0, 1, 1], names={"0": "ham", "1": "spam"})
    from_ints = LabelMap.from_labels([0, 1, 1], names={0: "ham", 1: "spam"})
    assert from_strings.names == from_ints.names == ("ham", "spam")


def test_a_name_used_twice_is_an_error():
    with pytest.raises(GptclfError, match=r"label names \['x'\] are given to more than one"):
        LabelMap.from_labels([0, 1], names={"0": "x", "1": "x"})


def test_ids_follow_the_order_of_values():
    label_map = LabelMap.from_labels(["pos", "neg", "neutral"])
    assert label_map.ids(["neutral", "pos", "neg"], "test.csv") == [1, 2, 0]


def test_the_string_1_matches_the_value_1_and_back():
    ints = LabelMap.from_labels([0, 1])
    assert ints.ids(["1", "0", 1], "test.csv") == [1, 0, 1]
    strings = LabelMap.from_labels(["0", "1"])
    assert strings.ids([1, 0], "test.csv") == [1, 0]


def test_display_names_match_too():
    label_map = LabelMap.from_labels([0, 1], names={"0": "ham", "1": "spam"})
    assert label_map.ids(["spam", "ham", 1], "test.csv") == [1, 0, 1]


def test_unseen_labels_are_listed_sorted_with_the_known_ones():
    label_map = LabelMap.from_labels([0, 1], names={"0": "ham", "1": "spam"})
    with pytest.raises(GptclfError) as caught:
        label_map.ids(["spam", "eggs", 7, "bacon", 7], "test.csv")
    assert str(caught.value) == (
        "test.csv: labels not seen in training: 7, 'bacon', 'eggs'; known labels: 0 (ham), 1 (spam)"
    )


def test_many_unseen_labels_are_cut_after_ten():
    label_map = LabelMap.from_labels(["a", "b"])
    unseen = list(range(100, 80, -1))
    with pytest.raises(GptclfError, match=r": 81, 82, .*, 90 and 10 more; known labels: 'a', 'b'$"):
        label_map.ids([*unseen, "a"], "test.csv")


def test_one_class_is_an_error_naming_it_and_the_source():
    with pytest.raises(GptclfError, match=r"^only one class \('spam'\) in train\.csv; a classif"):
        LabelMap.from_labels(["spam", "spam"], source="train.csv")


def test_the_same_label_stored_as_int_and_string_is_an_error():
    with pytest.raises(GptclfError, match=r"labels 1 and '1' are the same label"):
        LabelMap.from_labels([1, "1", 0], source="train.jsonl")


def test_json_round_trip_keeps_types_and_names():
    label_map = LabelMap.from_labels([2, 0, 1], names={"1": "spam"})
    stored = json.loads(json.dumps(label_map.to_json()))
    back = LabelMap.from_json(stored)
    assert back == label_map
    assert back.values == (0, 1, 2)
    assert back.names == ("0", "spam", "2")
    assert len(back) == 3


def test_a_damaged_stored_map_is_an_error():
    with pytest.raises(GptclfError, match="stored label map is damaged"):
        LabelMap.from_json({"values": [0, 1], "names": ["a"]})
    with pytest.raises(GptclfError, match="stored label map is damaged"):
        LabelMap.from_json({"values": [0, 1]})


def test_multi_label_targets_are_a_0_1_row_per_text_over_the_label_ids():
    sets = [("urgent", "money"), (), ("money",)]
    labels = LabelMap.from_labels(sets, source="t", multi_label=True)
    assert labels.values == ("money", "urgent") and labels.multi_label
    assert labels.targets(sets, "t").tolist() == [[1, 1], [0, 0], [1, 0]]
    assert LabelMap.from_json(json.loads(json.dumps(labels.to_json()))) == labels
    with pytest.raises(GptclfError, match="labels not seen in training: 'spam'"):
        labels.targets([("spam",)], "v.jsonl")
    with pytest.raises(GptclfError, match=r"v\.jsonl: one label per text"):
        labels.targets(["money"], "v.jsonl")


def test_a_single_label_map_is_stored_as_before():
    assert LabelMap.from_labels(["a", "b"]).to_json() == {"values": ["a", "b"], "names": ["a", "b"]}
