import json

import pytest

from gptclf.data.dataset import DataSource, load_splits, tokenize_splits
from gptclf.data.readers import write_labelled
from gptclf.errors import GptclfError
from gptclf.tokenizers import gpt2_tokenizer


def topic_file(path, rows_per_class=20):
    """A three-class file: sports, politics, tech."""
    words = {"sports": "goal match team", "politics": "vote law senate", "tech": "chip code cloud"}
    texts, labels = [], []
    for label, text in words.items():
        for i in range(rows_per_class):
            texts.append(f"{text} {i}")
            labels.append(label)
    write_labelled(path, texts, labels)
    return path


def test_built_in_sms_spam_gives_the_book_split_with_named_classes():
    splits = load_splits(DataSource(dataset="sms-spam"), split_dir=None)
    sizes = {name: len(part.texts) for name, part in splits.parts.items()}
    assert sizes == {"train": 1045, "validation": 149, "test": 300}
    assert splits.labels.values == (0, 1) and splits.labels.names == ("ham", "spam")


def test_one_file_is_split_on_the_fly_and_written_for_reuse(tmp_path):
    data = topic_file(tmp_path / "topics.csv")
    splits = load_splits(DataSource(data=data), split_dir=tmp_path / "split")
    assert set(splits.files) == {"train", "validation", "test"}
    assert all(path.is_file() for path in splits.files.values())
    assert splits.labels.names == ("politics", "sports", "tech")
    again = load_splits(DataSource(train=splits.files["train"], test=splits.files["test"]), None)
    assert again.parts["train"].texts == splits.parts["train"].texts


def test_labels_json_beside_the_training_file_names_the_classes(tmp_path):
    write_labelled(tmp_path / "train.csv", ["a", "b"], [0, 1])
    (tmp_path / "labels.json").write_text(json.dumps({"0": "negative", "1": "positive"}))
    splits = load_splits(DataSource(train=tmp_path / "train.csv"), None)
    assert splits.labels.names == ("negative", "positive")


def test_test_labels_never_seen_in_training_are_an_error_listing_them(tmp_path):
    write_labelled(tmp_path / "train.csv", ["a", "b"], ["x", "y"])
    write_labelled(tmp_path / "test.csv", ["c", "d", "e"], ["x", "z", "w"])
    with pytest.raises(GptclfError, match=r"test\.csv: labels not seen in training: 'w', 'z'"):
        load_splits(DataSource(train=tmp_path / "train.csv", test=tmp_path / "test.csv"), None)


@pytest.mark.parametrize(
    "source",
    [DataSource(), DataSource(dataset="sms-spam", data="x.csv")],
    ids=["none", "two"],
)
def test_exactly_one_data_source_is_required(source):
    with pytest.raises(GptclfError, match="exactly one of --dataset, --data FILE, or --train FILE"):
        load_splits(source, None)


def test_unknown_built_in_dataset_lists_the_known_ones():
    with pytest.raises(GptclfError, match="unknown dataset 'imdb'; built in: sms-spam"):
        load_splits(DataSource(dataset="imdb"), None)


def test_tokenized_splits_come_with_a_summary_per_split(tmp_path):
    splits = load_splits(DataSource(data=topic_file(tmp_path / "t.jsonl")), tmp_path / "s")
    tokens, summaries = tokenize_splits(splits, gpt2_tokenizer(), max_length=3)
    assert [s.name for s in summaries] == ["train", "validation", "test"]
    assert sum(s.rows for s in summaries) == 60
    assert all(s.truncated == s.rows for s in summaries)  # every text has 4 tokens
    assert all(len(ids) == 3 for part in tokens.values() for ids in part.ids)
