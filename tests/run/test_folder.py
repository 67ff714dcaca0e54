"""The layout of a run folder: where each file lives, when a folder may be created or resumed,
and which test split a run used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gptclf.errors import GptclfError
from gptclf.run.folder import RunDir


def test_every_file_of_a_run_has_its_fixed_place_in_the_folder(tmp_path):
    run = RunDir(tmp_path / "run")
    root = tmp_path / "run"
    assert str(run) == str(root)
    assert run.options == root / "run.yaml"
    assert run.model_config == root / "config.json"
    assert run.weights == root / "classifier.safetensors"
    assert run.tokenizer == root / "tokenizer.json"
    assert run.metrics == root / "metrics.json"
    assert run.metrics_log == root / "metrics.jsonl"
    assert run.curves == {"loss": root / "loss.png", "accuracy": root / "accuracy.png"}
    assert run.confusion_matrix == root / "confusion_matrix.png"
    assert run.split == root / "split"
    assert run.checkpoint == root / "checkpoint"
    assert run.evaluation(Path("elsewhere/new data.csv")) == (
        root / "eval" / "new data.json",
        {
            "confusion_matrix": root / "eval" / "new data_confusion_matrix.png",
            "reliability": root / "eval" / "new data_reliability.png",
            "precision_recall": root / "eval" / "new data_precision_recall.png",
        },
    )


def test_a_new_run_folder_is_under_runs_named_by_the_time_and_the_model():
    run = RunDir.new("models/tiny-gpt2")
    assert run.root.parent == Path("runs")
    assert re.fullmatch(r"\d{8}-\d{6}-tiny-gpt2", run.root.name)


def test_create_makes_the_folder_with_its_parents(tmp_path):
    RunDir(tmp_path / "a" / "b" / "run").create(resume=False)
    assert (tmp_path / "a" / "b" / "run").is_dir()


def test_create_accepts_an_existing_empty_folder(tmp_path):
    (tmp_path / "run").mkdir()
    RunDir(tmp_path / "run").create(resume=False)
    assert list((tmp_path / "run").iterdir()) == []


def test_create_refuses_a_folder_that_is_not_empty_and_leaves_it_alone(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(GptclfError, match="already exists and is not empty; choose another --out"):
        RunDir(tmp_path / "run").create(resume=False)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["keep.txt"]
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"


def test_resume_refuses_a_folder_without_run_yaml(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    with pytest.raises(GptclfError, match=r"run: not a gptclf run folder \(no run\.yaml\)"):
        RunDir(tmp_path / "run").create(resume=True)
    with pytest.raises(GptclfError, match="not a gptclf run folder"):
        RunDir(tmp_path / "missing").create(resume=True)
    assert not (tmp_path / "missing").exists()


def test_resume_accepts_a_folder_with_run_yaml_and_changes_nothing(tmp_path):
    (tmp_path / "run" / "checkpoint").mkdir(parents=True)
    (tmp_path / "run" / "run.yaml").write_text("epochs: 2\n")
    RunDir(tmp_path / "run").create(resume=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint", "run.yaml"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".tsv"])
def test_test_split_is_the_test_file_the_run_copied(tmp_path, suffix):
    run = RunDir(tmp_path / "run")
    run.split.mkdir(parents=True)
    for name in ("train", "validation", "test"):
        (run.split / f"{name}{suffix}").write_text("text,label\n")
    assert run.test_split() == run.split / f"test{suffix}"


def test_a_run_without_a_test_split_asks_for_data(tmp_path):
    run = RunDir(tmp_path / "run")
    run.split.mkdir(parents=True)
    (run.split / "train.csv").write_text("text,label\n")
    with pytest.raises(GptclfError, match=r"the run has no test split; pass --data FILE"):
        run.test_split()
