"""The TF-IDF + logistic regression baseline: it learns, it picks C on validation alone, and it
reaches the book's level on the SMS spam split."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from gptclf import baseline
from gptclf.baseline import C_GRID, class_probabilities, make_pipeline, train_baseline
from gptclf.cli import main
from gptclf.data.dataset import DataSource, Splits, load_splits
from gptclf.data.labels import LabelMap
from gptclf.data.readers import LabelledTexts, write_labelled

TOPIC_WORDS = {
    "sport": "goal match team score league coach player win season stadium",
    "food": "recipe bake oven flavour salt dinner spicy soup bread taste",
    "weather": "rain sunny cloud storm wind forecast snow cold humid thunder",
}
COMMON_WORDS = "the a today really my we is was very so and it"


def synthetic_part(name: str, per_topic: int, rng: random.Random) -> LabelledTexts:
    """Short texts of three topics: three topic words, one word of another topic, four common."""
    texts, labels = [], []
    common = COMMON_WORDS.split()
    for topic, words in TOPIC_WORDS.items():
        own = words.split()
        others = " ".join(ws for other, ws in TOPIC_WORDS.items() if other != topic).split()
        for _ in range(per_topic):
            text = [*rng.sample(own, 3), rng.choice(others), *rng.sample(common, 4)]
            rng.shuffle(text)
            texts.append(" ".join(text))
            labels.append(topic)
    return labelled(name, texts, labels)


def labelled(name: str, texts: list[str], labels: list[int | str]) -> LabelledTexts:
    rows = list(range(1, len(texts) + 1))
    return LabelledTexts(f"{name}.csv", texts, labels, rows, [], "text", "label")


def synthetic_splits(parts: tuple[str, ...] = ("train", "validation", "test")) -> Splits:
    rng = random.Random(0)
    sizes = {"train": 40, "validation": 15, "test": 15}
    made = {name: synthetic_part(name, sizes[name], rng) for name in parts}
    return Splits(made, LabelMap.from_labels(made["train"].labels))


def with_test_labels_rotated(splits: Splits) -> Splits:
    """The same splits, except every test label is replaced by the next topic's."""
    test = splits.parts["test"]
    topics = list(TOPIC_WORDS)
    rotated = [topics[(topics.index(label) + 1) % len(topics)] for label in test.labels]
    parts = dict(splits.parts, test=labelled("test", test.texts, rotated))
    return Splits(parts, splits.labels)


def test_baseline_on_three_synthetic_topics_is_far_above_chance():
    model, metrics = train_baseline(synthetic_splits())
    assert isinstance(model, Pipeline)
    assert metrics["split"] == "test"
    assert metrics["n"] == 45
    assert metrics["accuracy"] > 0.8  # chance is 1/3
    assert metrics["labels"] == ["food", "sport", "weather"]
    assert metrics["selection"]["C"] in C_GRID
    assert list(metrics["selection"]["validation_accuracy"]) == [str(c) for c in sorted(C_GRID)]


def test_selection_does_not_depend_on_test_labels():
    splits = synthetic_splits()
    _, metrics = train_baseline(splits)
    _, metrics_rotated = train_baseline(with_test_labels_rotated(splits))
    assert metrics_rotated["selection"] == metrics["selection"]
    assert metrics_rotated["accuracy"] < 0.2  # the rotated labels were measured, not chosen on


def test_models_are_fitted_on_train_texts_only(monkeypatch: pytest.MonkeyPatch):
    splits = synthetic_splits()
    fitted_on = []
    fit = Pipeline.fit

    def recording_fit(self, texts, ids, **kwargs):
        fitted_on.append(list(texts))
        return fit(self, texts, ids, **kwargs)

    monkeypatch.setattr(Pipeline, "fit", recording_fit)
    train_baseline(splits)
    assert fitted_on == [splits.parts["train"].texts] * len(C_GRID)


def test_c_is_chosen_by_validation_accuracy_ties_going_to_the_smaller_c(
    monkeypatch: pytest.MonkeyPatch,
):
    splits = synthetic_splits()
    validation_ids = splits.labels.ids(splits.parts["validation"].labels, "validation")
    scored_on = []

    def same_accuracy_for_all(y_true, y_pred):
        scored_on.append(list(y_true))
        return 0.5

    monkeypatch.setattr(baseline, "accuracy_score", same_accuracy_for_all)
    _, metrics = train_baseline(splits)
    assert metrics["selection"]["C"] == min(C_GRID)
    assert scored_on == [validation_ids] * len(C_GRID)


def test_without_validation_c_defaults_to_one():
    _, metrics = train_baseline(synthetic_splits(("train", "test")))
    assert metrics["selection"] == {"C": 1.0, "validation_accuracy": None}
    assert metrics["split"] == "test"


def test_without_test_the_validation_split_is_measured():
    _, metrics = train_baseline(synthetic_splits(("train", "validation")))
    assert metrics["split"] == "validation"
    assert metrics["n"] == 45


def test_class_probabilities_put_columns_in_class_id_order_with_zeros_for_unseen_classes():
    model = make_pipeline(1.0, seed=0).fit(["goal match", "rain snow"] * 3, [0, 2] * 3)
    probabilities = class_probabilities(model, ["goal", "rain"], n_classes=3)
    assert probabilities.shape == (2, 3)
    assert np.all(probabilities[:, 1] == 0)
    assert probabilities.argmax(axis=1).tolist() == [0, 2]


def test_baseline_on_the_sms_book_split_reaches_95_percent_test_accuracy():
    splits = load_splits(DataSource(dataset="sms-spam"), None)
    _, metrics = train_baseline(splits)
    assert metrics["split"] == "test"
    assert metrics["n"] == 300
    assert metrics["accuracy"] >= 0.95


def topics_file(folder: Path) -> Path:
    """The synthetic topics, 70 rows of each, in one CSV to split on the fly."""
    part = synthetic_part("all", 70, random.Random(1))
    write_labelled(folder / "topics.csv", part.texts, part.labels)
    return folder / "topics.csv"


def test_baseline_splits_data_in_memory_without_split_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = topics_file(tmp_path)
    assert main(["baseline", f"--data={data}", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["split"] == "test" and metrics["n"] == 42 and metrics["accuracy"] > 0.8
    assert list(tmp_path.iterdir()) == [data]  # nothing written


def test_baseline_writes_the_split_with_split_out(tmp_path, capsys):
    data = topics_file(tmp_path)
    assert main(["baseline", f"--data={data}", f"--split-out={tmp_path / 'split'}"]) == 0
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == [
        "test.csv",
        "train.csv",
        "validation.csv",
    ]


def test_a_split_out_that_cannot_be_written_fails_before_reading(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    absent = tmp_path / "absent.csv"  # not read: the folder is checked first
    assert main(["baseline", f"--data={absent}", f"--split-out={blocker}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{blocker} is not a folder" in err
