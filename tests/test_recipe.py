"""The training recipe: the defaults, the book preset under options given on top, the options
file every run folder holds (written, read back and split into recipe and data), and the tokens
kept per text."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from gptclf.data.dataset import DataSource
from gptclf.errors import GptclfError
from gptclf.recipe import (
    DEFAULT_MAX_LENGTH,
    PRESETS,
    TrainConfig,
    max_length_within,
    options_of_run,
    read_options,
    recipe,
    write_options,
)


def test_no_preset_and_no_values_is_the_declared_defaults():
    assert recipe() == TrainConfig()


def test_book_preset_sets_every_option_it_names():
    config = recipe("book")
    assert {name: getattr(config, name) for name in PRESETS["book"]} == PRESETS["book"]
    assert config.lr == 5e-5 and config.schedule == "constant" and config.max_grad_norm is None


def test_values_given_with_a_preset_override_it_and_leave_the_rest():
    config = recipe("book", epochs=1, lr=1e-4, schedule="cosine")
    assert (config.epochs, config.lr, config.schedule) == (1, 1e-4, "cosine")
    book = recipe("book")
    untouched = {f.name for f in fields(TrainConfig)} - {"epochs", "lr", "schedule"}
    assert all(getattr(config, name) == getattr(book, name) for name in untouched)


def test_an_unknown_preset_is_an_error_listing_the_presets():
    with pytest.raises(GptclfError, match=r"^unknown preset 'chapter6'; choose one of book$"):
        recipe("chapter6")


def test_a_wrong_value_from_a_file_is_an_error_naming_the_file():
    with pytest.raises(GptclfError, match=r"^my\.yaml: epochs = 8\.5 is not an integer$"):
        recipe(source="my.yaml", epochs=8.5)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_read_options_splits_the_file_into_recipe_and_data_options(tmp_path, suffix):
    values = {"epochs": 2, "train": "t.csv", "lr": 0.01, "text_column": "body", "seed": 7}
    path = tmp_path / f"options{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(values))
    else:
        path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    recipe_values, data_values = read_options(path)
    assert recipe_values == {"epochs": 2, "lr": 0.01, "seed": 7}
    assert data_values == {"train": "t.csv", "text_column": "body"}


def test_read_options_names_the_file_and_the_keys_that_are_no_option(tmp_path):
    path = tmp_path / "options.yaml"
    path.write_text("epochs: 2\nlearning_rate: 0.01\ntrain: t.csv\nbogus: 1\n")
    with pytest.raises(GptclfError) as error:
        read_options(path)
    assert str(error.value) == f"{path}: unknown option(s) bogus, learning_rate"


def test_options_written_for_a_run_read_back_to_the_same_recipe_and_data(tmp_path):
    config = recipe(
        "book",
        model="models/tiny",
        epochs=2,
        template="SMS: {text}\nSpam?",
        lora_targets=("qv", "mlp"),
        max_grad_norm=0.5,
    )
    source = DataSource(train=Path("d/train.csv"), test=Path("d/test.csv"), strict=True)
    path = tmp_path / "run.yaml"
    write_options(path, config, source)
    assert options_of_run(path) == (config, source)
    written = read_options(path)
    assert set(written[0]) == {f.name for f in fields(TrainConfig)}  # every option, resolved
    assert set(written[1]) == {f.name for f in fields(DataSource)}


def test_a_run_options_file_with_a_wrong_value_is_an_error_naming_it(tmp_path):
    path = tmp_path / "run.yaml"
    write_options(path, recipe(), DataSource(train=Path("t.csv")))
    path.write_text(path.read_text().replace("epochs: 4", "epochs: 4.5"))
    with pytest.raises(GptclfError) as error:
        options_of_run(path)
    assert str(error.value) == f"{path}: epochs = 4.5 is not an integer"


@pytest.mark.parametrize(
    ("max_length", "context", "kept"),
    [
        (None, 1024, DEFAULT_MAX_LENGTH),
        (None, 256, 256),
        (2000, 1024, 1024),
        (100, 1024, 100),
    ],
)
def test_tokens_kept_per_text_are_the_option_or_the_default_within_the_context(
    max_length, context, kept
):
    assert max_length_within(max_length, context) == kept


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"label_smoothing": 1.0}, "--label-smoothing must be in [0, 1), not 1.0"),
        ({"label_smoothing": -0.1}, "--label-smoothing must be in [0, 1), not -0.1"),
        ({"depth": 0}, "--depth must be at least 1, not 0"),
        ({"decay": "biases"}, "--decay must be one of all, matrices, not 'biases'"),
        ({"truncate": "middle"}, "--truncate must be one of head, tail, head+tail, not 'middle'"),
    ],
)
def test_a_wrong_depth_decay_label_smoothing_or_truncation_is_an_error_naming_its_flag(
    values, message
):
    with pytest.raises(GptclfError) as error:
        recipe(**values)
    assert str(error.value) == message


def test_the_new_options_accept_their_documented_values():
    config = recipe(depth=1, decay="matrices", label_smoothing=0.0, truncate="head+tail")
    assert (config.depth, config.decay, config.truncate) == (1, "matrices", "head+tail")
    assert recipe().depth is None and recipe().decay == "all" and recipe().label_smoothing == 0


def test_the_classifier_spec_carries_pooling_depth_and_lora_unless_merged():
    config = recipe(pooling="last-token+mean", depth=3, trainable="lora", lora_rank=4)
    spec = config.classifier_spec(n_classes=5)
    assert (spec.n_classes, spec.pooling, spec.depth) == (5, "last-token+mean", 3)
    assert spec.lora == config.lora() and spec.lora["rank"] == 4
    assert config.classifier_spec(5, with_lora=False).lora is None
    assert recipe(trainable="head").classifier_spec(2).lora is None


def test_options_with_depth_decay_and_label_smoothing_read_back_from_a_run_file(tmp_path):
    config = recipe(depth=2, decay="matrices", label_smoothing=0.1, truncate="head+tail")
    source = DataSource(train=Path("d/train.csv"))
    write_options(tmp_path / "run.yaml", config, source)
    assert options_of_run(tmp_path / "run.yaml") == (config, source)
