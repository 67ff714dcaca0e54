import pytest

from gptclf import cli
from gptclf.signals import TERMINATED, Terminated, was_terminated


def error_set_off_by_sigterm() -> RuntimeError:
    """What SIGTERM striking inside ``threading`` can leave: another error with Terminated as its
    context."""
    try:
        try:
            raise Terminated
        except Terminated:
            raise RuntimeError("release unlocked lock")  # noqa: B904 - raised the way threading does
    except RuntimeError as error:
        return error


def test_an_error_that_sigterm_set_off_counts_as_terminated_and_others_do_not():
    assert was_terminated(Terminated())
    assert was_terminated(error_set_off_by_sigterm())
    assert not was_terminated(RuntimeError("release unlocked lock"))
    assert not was_terminated(None)


def test_main_exits_143_with_one_line_when_sigterm_struck_inside_library_code(monkeypatch, capsys):
    def struck(args):
        raise error_set_off_by_sigterm()

    monkeypatch.setattr(cli, "_cmd_models", struck)
    assert cli.main(["models"]) == TERMINATED
    assert capsys.readouterr().err == "gptclf: terminated (SIGTERM)\n"


def test_main_lets_other_errors_through(monkeypatch):
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_cmd_models", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["models"])


def test_a_gptclf_error_that_sigterm_set_off_still_exits_143(monkeypatch, capsys):
    from gptclf.errors import GptclfError

    def struck(args):
        try:
            raise Terminated
        except Terminated as exc:
            raise GptclfError("a file could not be read") from exc

    monkeypatch.setattr(cli, "_cmd_models", struck)
    assert cli.main(["models"]) == TERMINATED
    assert capsys.readouterr().err == "gptclf: terminated (SIGTERM)\n"
