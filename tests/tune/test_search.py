"""``gptclf tune`` end to end on the tiny GPT-2 and ``spam_data``: a normal run folder beside its
leaderboard, the winner ranked first, candidates past the budget listed as skipped, the test
split kept out of the choice, and ``gptclf train --config`` rerunning the winner."""

import json
import shutil
from pathlib import Path

import pytest

from gptclf.cli import main
from gptclf.data.readers import read_labelled, write_labelled
from gptclf.recipe import options_of_run, recipe
from gptclf.tune import search
from gptclf.tune.space import Candidate, candidates

from conftest import split_options

QUICK = ["--epochs=1", "--batch-size=32", "--folds=2", "--precision=fp32", "--quiet"]
TWO = ("base recipe", "decay matrices only")


def two_candidates(base, n_blocks, texts_long) -> list[Candidate]:
    """The base recipe and decay of matrices only (which wins here)."""
    return [c for c in candidates(base, n_blocks, texts_long) if c.name in TWO]


def tune(data: Path, model: Path, out: Path, *options: str, space=None) -> int:
    """``gptclf tune`` with a quick recipe (and ``space`` instead of the candidates)."""
    argv = ["tune", *split_options(data), f"--model={model}", *QUICK, f"--out={out}", *options]
    with pytest.MonkeyPatch.context() as patch:
        if space is not None:
            patch.setattr(search, "candidates", space)
        return main([*argv])


def leaderboard(run: Path) -> dict:
    return json.loads((run / "leaderboard.json").read_text())


def cv_figures(board: dict) -> list[dict]:
    """Each ranked candidate's name and cross-validated figures (not its timing)."""
    return [
        {k: v for k, v in row.items() if k == "candidate" or k.startswith("cv_")}
        for row in board["ranked"]
    ]


@pytest.fixture(scope="module")
def tuned(spam_data, tiny_gpt2_base, tmp_path_factory) -> Path:
    """A search over two candidates with time for both."""
    out = tmp_path_factory.mktemp("tune") / "run"
    assert tune(spam_data, tiny_gpt2_base, out, "--budget=10m", space=two_candidates) == 0
    return out


def test_tune_writes_a_run_folder_trained_on_train_and_validation_beside_its_leaderboard(tuned):
    for name in ("config.json", "classifier.safetensors", "leaderboard.md", "split/labels.json"):
        assert (tuned / name).is_file(), name
    metrics = json.loads((tuned / "metrics.json").read_text())
    assert metrics["test"]["n"] == 12 and leaderboard(tuned)["test"] == metrics["test"]
    _, data = options_of_run(tuned / "run.yaml")
    assert (data.train, data.validation) == (tuned / "split" / "train.jsonl", None)
    assert data.test == tuned / "split" / "test.jsonl"
    assert len(read_labelled(data.train).texts) == 48 + 12  # train + validation
    assert len(read_labelled(data.test).texts) == 12


def test_the_winner_is_the_best_ranked_candidate_and_the_run_trains_its_recipe(tuned):
    board = leaderboard(tuned)
    ranked = board["ranked"]
    names = {row["candidate"] for row in ranked}
    blends = {name for name in names if name.endswith(", blended with the baseline")}
    assert names - blends == set(TWO) and len(blends) == 1
    assert all(row["status"] == "measured" for row in ranked)
    keys = [(-row["cv_accuracy"], row["cv_log_loss"]) for row in ranked]
    assert keys == sorted(keys)
    assert board["winner"] == ranked[0]["candidate"]
    base = recipe(**board["search"]["base_recipe"])
    assert (base.epochs, base.precision) == (1, "fp32")
    winner = Candidate(ranked[0]["candidate"], ranked[0]["changes"]).config(base)
    trained, _ = options_of_run(tuned / "run.yaml")
    assert trained == winner
    assert f"Winner: **{board['winner']}**" in (tuned / "leaderboard.md").read_text()


def test_a_budget_for_one_candidate_lists_every_later_candidate_as_skipped(
    spam_data, tiny_gpt2_base, tmp_path
):
    """Texts cut to 6 tokens: the search offers head+tail truncation too."""
    out = tmp_path / "run"
    assert tune(spam_data, tiny_gpt2_base, out, "--budget=0.01s", "--max-length=6") == 0
    board = leaderboard(out)
    base = recipe(**board["search"]["base_recipe"])
    names = [c.name for c in candidates(base, n_blocks=2, texts_long=True)]
    assert "head+tail truncation" in names
    measured = [row for row in board["ranked"] if row["status"] == "measured"]
    skipped = [row for row in board["ranked"] if row["status"] != "measured"]
    blended = "base recipe, blended with the baseline"
    assert {row["candidate"] for row in measured} == {"base recipe", blended}
    assert [row["candidate"] for row in skipped] == names[1:]
    assert all(row["status"].startswith("skipped") and "cv_accuracy" not in row for row in skipped)
    assert board["winner"] == measured[0]["candidate"]
    assert (out / "metrics.json").is_file()


def test_the_test_labels_do_not_change_the_cross_validated_figures(
    tuned, spam_data, tiny_gpt2_base, tmp_path
):
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    for name in ("train.csv", "val.csv"):
        shutil.copyfile(spam_data / name, flipped / name)
    test = read_labelled(spam_data / "test.csv")
    other = {"spam": "ham", "ham": "spam"}
    write_labelled(flipped / "test.csv", test.texts, [other[label] for label in test.labels])

    out = tmp_path / "run"
    assert tune(flipped, tiny_gpt2_base, out, "--budget=10m", space=two_candidates) == 0
    board, original = leaderboard(out), leaderboard(tuned)
    assert cv_figures(board) == cv_figures(original)
    assert board["winner"] == original["winner"]
    # The same final model, measured against the opposite labels:
    assert board["test"]["n_errors"] == 12 - original["test"]["n_errors"]


def test_train_with_the_options_of_a_tune_run_retrains_its_winner_on_its_split(tuned, tmp_path):
    again = tmp_path / "again"
    argv = ["train", "--config", str(tuned / "run.yaml"), "--out", str(again), "--quiet"]
    assert main(argv) == 0
    retrained = json.loads((again / "metrics.json").read_text())["test"]
    tuned_test = json.loads((tuned / "metrics.json").read_text())["test"]
    assert retrained["confusion_matrix"] == tuned_test["confusion_matrix"]
    assert retrained["macro_f1"] == pytest.approx(tuned_test["macro_f1"], abs=1e-6)
    recipe_again, data_again = options_of_run(again / "run.yaml")
    recipe_tuned, data_tuned = options_of_run(tuned / "run.yaml")
    assert recipe_again == recipe_tuned
    assert data_again.train == data_tuned.train == tuned / "split" / "train.jsonl"


def test_tune_accepts_a_base_recipe_training_the_last_two_blocks(
    spam_data, tiny_gpt2_base, tmp_path
):
    out = tmp_path / "run"
    assert tune(spam_data, tiny_gpt2_base, out, "--budget=0.01s", "--trainable=last-blocks:2") == 0
