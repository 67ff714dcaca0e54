"""The label audit ranks the rows whose labels out-of-fold probabilities contradict first, flags
them by confident learning, and reports every row."""

import csv
from pathlib import Path

import numpy as np
import pytest

from gptclf.audit import ranked
from gptclf.cli import main
from gptclf.data.labels import LabelMap
from gptclf.data.readers import LabelledTexts, read_labelled, write_labelled

from conftest import TRAINED_RUN_OPTIONS

FLIPPED = (4, 29)  # positions in spam_data's train.csv whose labels are swapped


@pytest.fixture(scope="module")
def flipped_train(spam_data, tmp_path_factory) -> tuple[Path, set[int]]:
    """spam_data's train.csv with two labels swapped, and their row numbers."""
    data = read_labelled(spam_data / "train.csv")
    labels = list(data.labels)
    for i in FLIPPED:
        labels[i] = "ham" if labels[i] == "spam" else "spam"
    path = tmp_path_factory.mktemp("flipped") / "train.csv"
    write_labelled(path, data.texts, labels)
    return path, {data.rows[i] for i in FLIPPED}


def ranking(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_rows_whose_label_the_probabilities_contradict_rank_first_and_are_flagged():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=200)
    probabilities = np.full((200, 3), 0.05)
    probabilities[np.arange(200), truth] = 0.9
    given = truth.copy()
    wrong = [7, 50, 120, 199]
    given[wrong] = (truth[wrong] + 1) % 3
    texts = [f"text {i}" for i in range(200)]
    labelled = LabelledTexts("data", texts, given.tolist(), list(range(200)), [], "t", "l")
    audit = ranked(labelled, LabelMap.from_labels(range(3)), given, probabilities)
    assert sorted(audit.order[:4].tolist()) == wrong
    assert np.flatnonzero(audit.flagged).tolist() == wrong
    assert [r["suggested"] for r in audit.rows()[:4]] == [str(truth[i]) for i in audit.order[:4]]


@pytest.mark.parametrize("by", ["baseline", "model"])
def test_the_audit_ranks_purposely_flipped_labels_at_the_top(
    by, flipped_train, tiny_gpt2_base, tmp_path, capsys
):
    path, flipped = flipped_train
    out = tmp_path / "ranking.csv"
    model = [f"--model={tiny_gpt2_base}", *TRAINED_RUN_OPTIONS] if by == "model" else []
    argv = ["data", "audit", str(path), f"--by={by}", "--folds=2", f"--out={out}", *model]
    assert main(argv) == 0
    records = ranking(out)
    assert len(records) == 48 and sorted(int(r["rank"]) for r in records) == list(range(1, 49))
    assert {int(r["row"]) for r in records[:2]} == flipped
    flagged = {int(r["row"]) for r in records if r["flagged"] == "True"}
    assert flagged and flagged <= flipped
    printed = capsys.readouterr().out
    assert "48 rows, 2-fold out-of-fold probabilities" in printed


def test_too_few_rows_of_a_label_for_the_folds_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "few.csv"
    write_labelled(path, [f"text {i}" for i in range(11)], ["x"] * 8 + ["y"] * 3)
    assert main(["data", "audit", str(path), "--by=baseline", "--folds=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 of them outside each fold; too few of 'y'" in err
