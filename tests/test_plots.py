"""Training-curve and confusion-matrix PNGs: which files are written, what they show, and that
they are valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.image import imread
from PIL import Image

from gptclf import plots
from gptclf.plots import plot_confusion_matrix, plot_training_curves
from gptclf.run.folder import RunDir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def records(with_examples: bool = True) -> list[dict]:
    """Two epochs of 8 examples: step-wise train records, one without accuracy, and
    a validation record at each epoch's end."""
    lines = [
        {"kind": "train", "epoch": 0.5, "step": 1, "examples_seen": 4, "loss": 0.9},
        {
            "kind": "train",
            "epoch": 1.0,
            "step": 2,
            "examples_seen": 8,
            "loss": 0.7,
            "accuracy": 0.6,
        },
        {
            "kind": "validation",
            "epoch": 1.0,
            "step": 2,
            "examples_seen": 8,
            "loss": 0.8,
            "accuracy": 0.5,
        },
        {
            "kind": "train",
            "epoch": 1.5,
            "step": 3,
            "examples_seen": 12,
            "loss": 0.5,
            "accuracy": 0.7,
        },
        {
            "kind": "train",
            "epoch": 2.0,
            "step": 4,
            "examples_seen": 16,
            "loss": 0.4,
            "accuracy": 0.8,
        },
        {
            "kind": "validation",
            "epoch": 2.0,
            "step": 4,
            "examples_seen": 16,
            "loss": 0.6,
            "accuracy": 0.7,
        },
    ]
    if not with_examples:
        for line in lines:
            del line["examples_seen"]
    return lines


@pytest.fixture
def saved_figures(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The figures ``plot_training_curves`` saves, by file name, as well as the files."""
    figures = {}
    save_png = plots.save_png

    def recording_save_png(figure, path: Path) -> None:
        figures[Path(path).name] = figure
        save_png(figure, path)

    monkeypatch.setattr(plots, "save_png", recording_save_png)
    return figures


def assert_valid_png(path: Path) -> None:
    assert path.stat().st_size > 0
    assert path.read_bytes().startswith(PNG_MAGIC)
    with Image.open(path) as image:
        image.verify()
    assert imread(path).ndim == 3


def test_writes_loss_and_accuracy_pngs_and_no_temp_files(tmp_path: Path):
    written = plot_training_curves(records(), RunDir(tmp_path / "run").curves)
    assert written == [tmp_path / "run" / "loss.png", tmp_path / "run" / "accuracy.png"]
    for path in written:
        assert_valid_png(path)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["accuracy.png", "loss.png"]


def test_curves_are_train_and_validation_against_epochs(tmp_path: Path, saved_figures: dict):
    plot_training_curves(records(), RunDir(tmp_path).curves)
    axes = saved_figures["accuracy.png"].axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert list(lines["Training accuracy"].get_xdata()) == [1.0, 1.5, 2.0]
    assert list(lines["Training accuracy"].get_ydata()) == [0.6, 0.7, 0.8]
    assert list(lines["Validation accuracy"].get_xdata()) == [1.0, 2.0]
    assert axes.get_xlabel() == "Epochs"
    assert axes.get_ylabel() == "Accuracy"


def test_top_axis_shows_examples_seen_when_records_have_them(tmp_path: Path, saved_figures: dict):
    plot_training_curves(records(), RunDir(tmp_path).curves)
    top_axes = saved_figures["loss.png"].axes[0].child_axes
    assert [axis.get_xlabel() for axis in top_axes] == ["Examples seen"]


def test_no_top_axis_without_examples_seen(tmp_path: Path, saved_figures: dict):
    plot_training_curves(records(with_examples=False), RunDir(tmp_path).curves)
    assert saved_figures["loss.png"].axes[0].child_axes == []


def test_a_metric_that_never_appears_is_skipped(tmp_path: Path):
    loss_only = [{k: v for k, v in r.items() if k != "accuracy"} for r in records()]
    assert plot_training_curves(loss_only, RunDir(tmp_path).curves) == [tmp_path / "loss.png"]
    assert not (tmp_path / "accuracy.png").exists()


def test_validation_only_records_still_plot(tmp_path: Path):
    validation = [r for r in records() if r["kind"] == "validation"]
    written = plot_training_curves(validation, RunDir(tmp_path).curves)
    assert [p.name for p in written] == ["loss.png", "accuracy.png"]


def test_no_records_write_nothing(tmp_path: Path):
    assert plot_training_curves([], RunDir(tmp_path).curves) == []
    assert list(tmp_path.iterdir()) == []


def test_confusion_matrix_png_shows_every_count_with_the_labels_and_leaves_no_temp_file(
    tmp_path: Path, saved_figures: dict
):
    metrics = {"labels": ["a", "b", "c"], "confusion_matrix": [[1, 1, 0], [0, 2, 0], [1, 0, 1]]}
    path = tmp_path / "plots" / "confusion_matrix.png"
    plot_confusion_matrix(metrics, path)
    assert_valid_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["confusion_matrix.png"]
    axes = saved_figures["confusion_matrix.png"].axes[0]
    assert [t.get_text() for t in axes.texts] == ["1", "1", "0", "0", "2", "0", "1", "0", "1"]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["a", "b", "c"]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("predicted", "true")
