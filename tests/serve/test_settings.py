"""The serve options: the flags made from them are those of ``gptclf serve``, and each rule is one
error naming its flag."""

import argparse
import dataclasses

import pytest

from gptclf import options
from gptclf.errors import GptclfError
from gptclf.serve import ServeSettings

TODAY = ServeSettings(
    max_batch=64,
    max_wait_ms=5.0,
    batching=True,
    max_texts=256,
    max_chars=10_000,
    max_body_bytes=1_000_000,
    api_key=None,
)


def parser_of_serve_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    options.add_options(parser, ServeSettings, keep_defaults=True)
    return parser


def test_the_flags_and_their_help_are_those_of_gptclf_serve():
    actions = [a for a in parser_of_serve_options()._actions if a.dest != "help"]
    assert [(a.option_strings, a.dest) for a in actions] == [
        (["--max-batch"], "max_batch"),
        (["--max-wait-ms"], "max_wait_ms"),
        (["--no-batching"], "batching"),
        (["--max-texts"], "max_texts"),
        (["--max-chars"], "max_chars"),
        (["--max-body-bytes"], "max_body_bytes"),
    ]
    helps = [
        "texts per model call",
        "how long a batch waits to fill",
        "compute every request alone",
        "texts per request",
        "characters per text",
        "request body size",
    ]
    for action, help_text in zip(actions, helps, strict=True):
        assert action.help.startswith(help_text)


@pytest.mark.parametrize(
    ("argv", "changed"),
    [
        ([], {}),
        (
            ["--max-batch", "8", "--max-wait-ms", "0", "--max-texts", "5"],
            {"max_batch": 8, "max_wait_ms": 0.0, "max_texts": 5},
        ),
        (
            ["--no-batching", "--max-chars", "200", "--max-body-bytes", "200000"],
            {"batching": False, "max_chars": 200, "max_body_bytes": 200_000},
        ),
    ],
    ids=["defaults", "batching", "limits"],
)
def test_given_flags_change_the_defaults_of_the_settings(argv, changed):
    assert ServeSettings() == TODAY
    settings = options.build(ServeSettings, vars(parser_of_serve_options().parse_args(argv)))
    assert settings == dataclasses.replace(TODAY, **changed)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_batch": 0}, "--max-batch must be at least 1, not 0"),
        ({"max_wait_ms": -1.0}, "--max-wait-ms must be at least 0, not -1.0"),
        ({"max_texts": 0}, "--max-texts must be at least 1, not 0"),
        ({"max_chars": -5}, "--max-chars must be at least 1, not -5"),
        ({"max_body_bytes": 0}, "--max-body-bytes must be at least 1, not 0"),
    ],
)
def test_each_rule_is_one_error_naming_its_flag(values, message):
    with pytest.raises(GptclfError) as refused:
        ServeSettings(**values)
    assert str(refused.value) == message


def test_a_value_of_the_wrong_type_is_an_error_naming_the_option():
    with pytest.raises(GptclfError, match=r"serve: max_batch = 8\.5 is not an integer"):
        options.build(ServeSettings, {"max_batch": 8.5}, source="serve")
