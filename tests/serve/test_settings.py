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
    max_batch_tokens=512,
    max_wait_ms=0.0,
    batching=True,
    max_texts=256,
    max_chars=10_000,
    max_body_bytes=1_000_000,
    max_queue=512,
    timeout_s=10.0,
    keep_alive_s=5.0,
    max_connections=1000,
    shutdown_grace_s=10.0,
    allowed_hosts=None,
    api_key=None,
)


def parser_of_serve_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    options.add_options(parser, ServeSettings, keep_defaults=True)
    return parser


def test_the_flags_and_their_help_are_those_of_gptclf_serve():
    actions = [a for a in parser_of_serve_options()._actions if a.dest != "help"]
    assert [(a.option_strings, a.dest) for a in actions] == [
        (["--runtime"], "runtime"),
        (["--max-batch"], "max_batch"),
        (["--max-batch-tokens"], "max_batch_tokens"),
        (["--max-wait-ms"], "max_wait_ms"),
        (["--no-batching"], "batching"),
        (["--no-examples"], "examples"),
        (["--max-texts"], "max_texts"),
        (["--max-chars"], "max_chars"),
        (["--max-chunks"], "max_chunks"),
        (["--max-body-bytes"], "max_body_bytes"),
        (["--max-queue"], "max_queue"),
        (["--timeout-s"], "timeout_s"),
        (["--keep-alive-s"], "keep_alive_s"),
        (["--max-connections"], "max_connections"),
        (["--shutdown-grace-s"], "shutdown_grace_s"),
        (["--allowed-hosts"], "allowed_hosts"),
    ]
    helps = [
        "onnx: ONNX Runtime on the run's int8 graph (exported on first use, then cached)",
        "texts per model call",
        "padded tokens per model call (texts times the longest); more are split into turns",
        "how long a batch waits to fill (0: it starts when the model is free, and requests that "
        "arrive while it computes form the next batch)",
        "compute every request alone",
        "keep the run's texts private",
        "texts per request",
        "characters per text",
        "chunks per text, where the model reads long texts in chunks (--chunks)",
        "request body size",
        "texts waiting for the model; more: 503 with Retry-After",
        "seconds a client has to send a request's headers, then its body (408)",
        "seconds an idle connection is kept open",
        "open connections; more: 503 (kept below the open-file limit)",
        "seconds requests in flight get to finish at shutdown",
        "Host header names accepted, '*' for any",
    ]
    for action, help_text in zip(actions, helps, strict=True):
        assert action.help.startswith(help_text)


@pytest.mark.parametrize(
    ("argv", "changed"),
    [
        ([], {}),
        (
            ["--max-batch", "8", "--max-wait-ms", "0", "--max-batch-tokens", "4096"],
            {"max_batch": 8, "max_wait_ms": 0.0, "max_batch_tokens": 4096},
        ),
        (
            ["--no-batching", "--max-chars", "200", "--max-body-bytes", "200000"],
            {"batching": False, "max_chars": 200, "max_body_bytes": 200_000},
        ),
        (
            ["--max-queue", "64", "--timeout-s", "0.5", "--keep-alive-s", "0"],
            {"max_queue": 64, "timeout_s": 0.5, "keep_alive_s": 0.0},
        ),
        (
            ["--max-connections", "50", "--shutdown-grace-s", "2"],
            {"max_connections": 50, "shutdown_grace_s": 2.0},
        ),
        (
            ["--allowed-hosts", "example.com", "*.example.org", "::1"],
            {"allowed_hosts": ("example.com", "*.example.org", "::1")},
        ),
    ],
    ids=["defaults", "batching", "limits", "queue-and-timeouts", "connections", "hosts"],
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
        ({"max_queue": 0}, "--max-queue must be at least 1, not 0"),
        ({"max_batch_tokens": 0}, "--max-batch-tokens must be at least 1, not 0"),
        ({"timeout_s": 0.0}, "--timeout-s must be more than 0, not 0.0"),
        ({"max_connections": 0}, "--max-connections must be at least 1, not 0"),
        ({"shutdown_grace_s": -1.0}, "--shutdown-grace-s must be at least 0, not -1.0"),
        (
            {"allowed_hosts": ("example.com:8000",)},
            "--allowed-hosts must be host names, '*' or '*.domain', without ports, "
            "not ('example.com:8000',)",
        ),
        (
            {"allowed_hosts": ("ex*ample.com",)},
            "--allowed-hosts must be host names, '*' or '*.domain', without ports, "
            "not ('ex*ample.com',)",
        ),
    ],
)
def test_each_rule_is_one_error_naming_its_flag(values, message):
    with pytest.raises(GptclfError) as refused:
        ServeSettings(**values)
    assert str(refused.value) == message


def test_a_value_of_the_wrong_type_is_an_error_naming_the_option():
    with pytest.raises(GptclfError, match=r"serve: max_batch = 8\.5 is not an integer"):
        options.build(ServeSettings, {"max_batch": 8.5}, source="serve")


SECRET = "s3cr\u00e9t-key"  # Latin-1: a valid key


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (SECRET + "\n", "starts or ends with whitespace (a trailing newline?); remove it"),
        (" " + SECRET, "starts or ends with whitespace (a trailing newline?); remove it"),
        (SECRET + "\u20ac", "has a character outside Latin-1 at position 11"),
        ("s3cr\x00t", "has a control character at position 5"),
        ("", "is empty"),
    ],
    ids=["trailing-newline", "leading-space", "not-latin-1", "control", "empty"],
)
def test_an_api_key_no_client_can_send_is_one_error_naming_the_problem_not_the_key(key, problem):
    with pytest.raises(GptclfError) as refused:
        ServeSettings(api_key=key)
    message = str(refused.value)
    assert message.startswith(f"$GPTCLF_API_KEY {problem}") and "\n" not in message
    assert SECRET not in message and "s3cr" not in message
    assert ServeSettings(api_key=SECRET).api_key == SECRET


def test_the_cli_exits_2_with_one_line_for_a_key_with_a_trailing_newline(monkeypatch, capsys):
    from gptclf.cli import main

    monkeypatch.setenv("GPTCLF_API_KEY", "s3cret\n")
    assert main(["serve", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s3cret" not in err
    assert "$GPTCLF_API_KEY starts or ends with whitespace" in err
