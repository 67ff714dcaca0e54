"""Options declared once: values converted to their declared types, every wrong value an error
naming its flag (or its file and key), flags made from the declarations, and config files read
from YAML or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from gptclf.data.dataset import DataSource
from gptclf.errors import GptclfError
from gptclf.options import add_options, as_plain, build, check, given, read_config_file
from gptclf.recipe import TrainConfig


def test_values_are_converted_to_their_declared_types():
    config = build(TrainConfig, {"epochs": "3", "lr": "1e-3", "lora_targets": "qv", "warmup": 0})
    assert (config.epochs, config.lr, config.lora_targets) == (3, 0.001, ("qv",))
    assert isinstance(config.epochs, int) and isinstance(config.warmup, float)
    source = build(DataSource, {"train": "a.csv", "fractions": [0.8, 0.1, 0.1]})
    assert source.train == Path("a.csv") and source.fractions == (0.8, 0.1, 0.1)


def test_options_not_given_keep_their_declared_defaults():
    assert build(TrainConfig, {}) == TrainConfig()
    assert build(DataSource, {}) == DataSource()


def test_unknown_options_are_an_error_naming_the_file_and_every_unknown_key():
    with pytest.raises(GptclfError, match=r"^run\.yaml: unknown option\(s\) epoch, lrate$"):
        build(TrainConfig, {"epochs": 2, "epoch": 3, "lrate": 1e-3}, source="run.yaml")


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("epochs", "x", "an integer"),
        ("epochs", 8.5, "an integer"),
        ("epochs", True, "an integer"),
        ("lr", "fast", "a number"),
        ("lr", False, "a number"),
        ("drop_last", "yes", "true or false"),
        ("drop_last", 1, "true or false"),
        ("model", 5, "text"),
        ("lora_targets", [1, 2], "a list of one or more texts"),
        ("lora_targets", [], "a list of one or more texts"),
        ("fractions", [0.5, 0.5], "a list of 3 numbers"),
    ],
)
def test_a_value_of_the_wrong_type_is_an_error_naming_the_file_key_and_value(key, value, kind):
    options = DataSource if key == "fractions" else TrainConfig
    with pytest.raises(GptclfError) as error:
        build(options, {key: value}, source="run.yaml")
    assert str(error.value) == f"run.yaml: {key} = {value!r} is not {kind}"


def test_without_a_file_the_error_names_the_options_flag():
    with pytest.raises(GptclfError, match=r"^--epochs = 'x' is not an integer$"):
        build(TrainConfig, {"epochs": "x"})
    with pytest.raises(GptclfError, match=r"^--model = 5 is not text$"):  # not --weights
        build(TrainConfig, {"model": 5})
    with pytest.raises(GptclfError, match=r"^--val = 5 is not a path$"):  # its declared flag
        build(DataSource, {"validation": 5})


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("schedule", "exp", "one of constant, linear, cosine"),
        ("schedule", None, "one of constant, linear, cosine"),
        ("class_weights", "inverse", "one of balanced"),
        ("precision", "fp16", "one of auto, bf16, fp32"),
        ("trainable", "some", "one of head, last-block, last-blocks:K, all, lora"),
        ("epochs", 0, "at least 1"),
        ("lr", 0.0, "positive"),
        ("warmup", 1.0, "[0, 1)"),
        ("max_length", 0, "at least 1"),
    ],
)
def test_choices_and_rules_are_enforced_naming_the_file_key_and_value(key, value, allowed):
    with pytest.raises(GptclfError) as error:
        build(TrainConfig, {key: value}, source="run.yaml")
    message = str(error.value)
    assert message.startswith(f"run.yaml: {key} must be ") and message.endswith(f"not {value!r}")
    assert allowed in message


def test_none_is_allowed_where_it_is_the_default():
    config = build(TrainConfig, {"class_weights": None, "max_length": None, "pad_to": None})
    assert (config.class_weights, config.max_length, config.pad_to) == (None, None, None)


def test_check_refuses_an_instance_changed_after_it_was_built():
    config = TrainConfig()
    config.batch_size = 0
    with pytest.raises(GptclfError, match=r"^--batch-size must be at least 1, not 0$"):
        check(config)


def test_flags_are_none_unless_given_so_files_and_presets_can_fill_them_in():
    parser = argparse.ArgumentParser()
    add_options(parser, TrainConfig)
    args = parser.parse_args(["--weights", "m", "--epochs", "2", "--no-cache"])
    assert given(args, TrainConfig) == {"model": "m", "epochs": 2, "cache": False}
    args = parser.parse_args(["--lora-targets", "qv", "mlp", "--template", "A: {text}\\nB:"])
    config = build(TrainConfig, given(args, TrainConfig))
    assert config.lora_targets == ("qv", "mlp") and config.template == "A: {text}\nB:"


def test_kept_defaults_give_the_declared_defaults_and_leave_out_file_only_options():
    parser = argparse.ArgumentParser()
    add_options(parser, TrainConfig, keep_defaults=True)
    args = parser.parse_args([])
    assert build(TrainConfig, given(args, TrainConfig)) == TrainConfig()
    assert "book_loop" not in vars(args)


def test_a_command_line_value_outside_the_choices_is_refused_by_the_parser(capsys):
    parser = argparse.ArgumentParser()
    add_options(parser, TrainConfig, names=["schedule"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--schedule", "exp"])
    assert "invalid choice: 'exp'" in capsys.readouterr().err


OPTIONS_YAML = """\
epochs: 3
lr: 1e-3  # YAML 1.1 reads this as text: it must still become 0.001
schedule: linear
lora_targets: [qv, mlp]
train: data/train.csv
"""
OPTIONS = {
    "epochs": 3,
    "lr": 1e-3,
    "schedule": "linear",
    "lora_targets": ["qv", "mlp"],
    "train": "data/train.csv",
}


def test_yaml_and_json_files_give_the_same_options(tmp_path):
    (tmp_path / "options.yaml").write_text(OPTIONS_YAML)
    (tmp_path / "options.json").write_text(json.dumps(OPTIONS))
    from_yaml = read_config_file(tmp_path / "options.yaml")
    from_json = read_config_file(tmp_path / "options.json")
    assert from_json == OPTIONS and set(from_yaml) == set(OPTIONS)
    recipe_keys = [k for k in OPTIONS if k != "train"]
    built = [build(TrainConfig, {k: v[k] for k in recipe_keys}) for v in (from_yaml, from_json)]
    assert built[0] == built[1] and built[0].lr == 0.001


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.yaml", None, "missing.yaml: file not found"),
        ("list.yaml", "- epochs\n- 3\n", "list.yaml: the file must hold a mapping of option names"),
        ("broken.json", '{"epochs": 3', "broken.json: not a readable YAML or JSON file"),
        ("broken.yaml", "epochs: [3\n", "broken.yaml: not a readable YAML or JSON file"),
        ("empty.yaml", "", "empty.yaml: the file must hold a mapping of option names"),
    ],
)
def test_an_unreadable_config_file_is_an_error_naming_it(tmp_path, name, text, message):
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(GptclfError, match=f"^{tmp_path / message}".replace("(", r"\(")):
        read_config_file(tmp_path / name)


def test_as_plain_gives_file_ready_values_that_build_back_the_same_options():
    source = DataSource(train=Path("t.csv"), test=Path("x/test.csv"), fractions=(0.6, 0.2, 0.2))
    plain = as_plain(source)
    assert plain["train"] == "t.csv" and plain["fractions"] == [0.6, 0.2, 0.2]
    assert json.loads(json.dumps(plain)) == plain
    assert build(DataSource, plain) == source
    config = TrainConfig(lora_targets=("qv", "mlp"), max_grad_norm=None)
    assert build(TrainConfig, as_plain(config)) == config
