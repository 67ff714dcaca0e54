"""``gptclf tune``'s own options: the time budget as a duration, checked on the command line."""

import pytest

from gptclf.cli import main
from gptclf.errors import GptclfError
from gptclf.tune.options import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), (" 2m ", 120)],
)
def test_a_duration_is_seconds_by_default_or_in_the_unit_it_names(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["ten", "5d", "", "-1m", "1h30m"])
def test_a_duration_that_is_not_a_number_with_s_m_or_h_is_an_error_naming_budget(text):
    with pytest.raises(GptclfError, match=r"^--budget .*: give a duration such as 90s, 10m or 1h$"):
        parse_duration(text)


def run_tune_exit_code(argv: list[str]) -> int:
    """``gptclf tune``'s exit status, whether ``main`` returns it or argparse exits with it."""
    try:
        return main(["tune", "--train", "t.csv", *argv])
    except SystemExit as stopped:
        return stopped.code


def test_a_budget_of_zero_is_a_one_line_error_with_exit_code_2(capsys):
    assert run_tune_exit_code(["--budget", "0"]) == 2
    assert capsys.readouterr().err == "gptclf: error: --budget must be positive, not 0.0\n"


def test_a_budget_that_is_no_duration_is_a_one_line_error_with_exit_code_2(capsys):
    assert run_tune_exit_code(["--budget", "ten"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--budget" in err and "ten" in err
