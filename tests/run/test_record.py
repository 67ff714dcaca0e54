"""What a run folder records of its training, read back: metrics, when, how much, examples."""

import json

import pytest

from gptclf.data.labels import LabelMap
from gptclf.data.readers import read_labelled, write_labelled
from gptclf.errors import GptclfError
from gptclf.run import RunDir
from gptclf.run.record import EXAMPLE_CHARS, class_examples, read_metrics, training_record

LABELS = LabelMap.from_labels(["ham", "spam"])


def run_with_splits(tmp_path, validation: list[tuple[str, str]]) -> RunDir:
    """A run folder holding a training split of three texts and ``validation``."""
    run_dir = RunDir(tmp_path / "run")
    run_dir.split.mkdir(parents=True)
    write_labelled(run_dir.split / "train.csv", ["a", "b", "c"], ["ham", "spam", "ham"])
    texts, labels = zip(*validation, strict=True)
    write_labelled(run_dir.split / "validation.csv", list(texts), list(labels))
    return run_dir


def test_read_metrics_is_empty_without_a_file_and_names_a_file_it_cannot_read(tmp_path):
    run_dir = RunDir(tmp_path)
    assert read_metrics(run_dir) == {}
    run_dir.metrics.write_text("{not json")
    with pytest.raises(GptclfError, match=r"metrics\.json: not readable JSON"):
        read_metrics(run_dir)
    run_dir.metrics.write_text("[1, 2]")
    with pytest.raises(GptclfError, match=r"metrics\.json: not a JSON object"):
        read_metrics(run_dir)


def test_the_record_takes_metrics_time_and_training_size_from_the_metrics_file(tmp_path):
    run_dir = run_with_splits(tmp_path, [("hello", "ham"), ("win cash", "spam")])
    recorded = {
        "validation": {"accuracy": 0.9},
        "test": {"accuracy": 0.8},
        "epochs_run": 2,
        "finished_at": "2026-12-01T10:00:00+00:00",
        "data": [{"name": "train", "rows": 5000}, {"name": "test", "rows": 7}],
    }
    run_dir.metrics.write_text(json.dumps(recorded))
    record = training_record(run_dir, LABELS, max_chars=100)
    assert record.metrics == {"validation": {"accuracy": 0.9}, "test": {"accuracy": 0.8}}
    assert record.finished_at == "2026-12-01T10:00:00+00:00"
    assert record.training_rows == 5000
    assert record.examples == [
        {"label": "ham", "text": "hello", "pair": None},
        {"label": "spam", "text": "win cash", "pair": None},
    ]


def test_an_older_run_has_no_time_and_is_sized_by_its_training_split(tmp_path):
    run_dir = run_with_splits(tmp_path, [("hello", "ham")])
    run_dir.metrics.write_text(json.dumps({"test": {"accuracy": 0.8}}))
    record = training_record(run_dir, LABELS, max_chars=100)
    assert record.finished_at is None  # not guessed from a file's time
    assert record.training_rows == 3
    assert record.metrics == {"test": {"accuracy": 0.8}}


def test_a_record_without_examples_keeps_the_runs_texts_private(tmp_path):
    run_dir = run_with_splits(tmp_path, [("hello", "ham"), ("win cash", "spam")])
    assert training_record(run_dir, LABELS, max_chars=100, examples=False).examples == []


def test_a_run_without_splits_or_files_has_an_empty_record(tmp_path):
    record = training_record(RunDir(tmp_path), LABELS, max_chars=100)
    assert (record.finished_at, record.training_rows, record.examples) == (None, None, [])


def test_an_example_is_the_first_short_text_else_the_shortest_that_the_service_takes(tmp_path):
    long, longer = "x" * (EXAMPLE_CHARS + 10), "y" * (EXAMPLE_CHARS + 50)
    run_dir = run_with_splits(
        tmp_path,
        [
            (longer, "ham"),
            (long, "ham"),
            ("z" * 900, "spam"),
            ("short spam", "spam"),
            ("ok", "ham"),
        ],
    )
    data = read_labelled(run_dir.split / "validation.csv")
    examples = class_examples(data, LABELS, max_chars=800)
    assert examples == [
        {"label": "ham", "text": "ok", "pair": None},
        {"label": "spam", "text": "short spam", "pair": None},
    ]
    no_short_ham = read_labelled(run_dir.split / "validation.csv")
    no_short_ham.texts[4] = "o" * (EXAMPLE_CHARS + 20)
    assert class_examples(no_short_ham, LABELS, max_chars=800)[0]["text"] == long
    assert [e["label"] for e in class_examples(no_short_ham, LABELS, max_chars=10)] == ["spam"]


def test_a_multi_label_example_carries_its_label_and_a_pair_counts_toward_the_size(tmp_path):
    tags = LabelMap.from_labels([("money",), ("urgent",)], multi_label=True)
    path = tmp_path / "tagged.csv"
    write_labelled(
        path,
        ["cash now", "call me", "pay today"],
        [("money",), ("urgent",), ("money", "urgent")],
        label_separator="|",
        pairs=["q1", "q" * 50, "q3"],
    )
    data = read_labelled(path, label_separator="|", text_pair_column="pair")
    assert class_examples(data, tags, max_chars=40) == [
        {"label": "money", "text": "cash now", "pair": "q1"},
        {"label": "urgent", "text": "pay today", "pair": "q3"},
    ]
