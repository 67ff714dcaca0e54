"""The pictures of a run: training curves from its metrics.jsonl (train and validation loss and
accuracy against epochs, with examples seen on a second x-axis at the top), and an evaluation's
confusion matrix, reliability diagram and precision-recall curve.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas, so no global
matplotlib state (backend, pyplot figures) is touched, and every PNG is written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gptclf.atomic import atomic_path
from gptclf.decision import POSITIVE_CLASS, reliability_bins

CURVE_METRICS = {"loss": "Loss", "accuracy": "Accuracy"}
KINDS = {"train": "training", "validation": "validation"}
LINE_STYLES = {"train": "-", "validation": "-."}
MARKED_POINTS = 30
DPI = 120
CELL_INCHES = 0.9
MIN_FIGURE_INCHES = 4.0


def plot_training_curves(records: Sequence[dict], paths: Mapping[str, Path]) -> list[Path]:
    """Write the curves of loss and accuracy to ``paths[metric]`` (a plot whose metric no record
    holds is skipped) and return the paths written. A record's ``epoch`` is the training progress
    in epochs (fractional within an epoch) and ``examples_seen`` the examples trained on so far."""
    written = []
    for metric, label in CURVE_METRICS.items():
        series = {kind: _points(records, kind, metric) for kind in KINDS}
        if not any(series.values()):
            continue
        path = Path(paths[metric])
        _plot_curves(series, label, _examples_per_epoch(records), path)
        written.append(path)
    return written


def new_figure(width: float, height: float) -> Figure:
    """A figure of the given size in inches on its own Agg canvas."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: Path) -> None:
    """Save ``figure`` as a PNG at ``path``, atomically."""
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)


def _points(records: Sequence[dict], kind: str, metric: str) -> list[tuple[float, float]]:
    """(epoch, value) of the records of ``kind`` that hold ``metric``, in epoch order."""
    points = [
        (float(record["epoch"]), float(record[metric]))
        for record in records
        if record.get("kind") == kind
        and record.get(metric) is not None
        and record.get("epoch") is not None
    ]
    return sorted(points)


def _examples_per_epoch(records: Sequence[dict]) -> float | None:
    """The least-squares slope through the origin of examples seen against epochs, or None
    when the records do not tell it."""
    pairs = [
        (float(record["epoch"]), float(record["examples_seen"]))
        for record in records
        if record.get("epoch") is not None and record.get("examples_seen") is not None
    ]
    epochs_squared = sum(epoch * epoch for epoch, _ in pairs)
    if epochs_squared == 0:
        return None
    return sum(epoch * examples for epoch, examples in pairs) / epochs_squared


def _plot_curves(
    series: dict[str, list[tuple[float, float]]],
    label: str,
    examples_per_epoch: float | None,
    path: Path,
) -> None:
    figure = new_figure(6.0, 4.0)
    axes = figure.add_subplot()
    for kind, points in series.items():
        if points:
            epochs, values = zip(*points, strict=True)
            axes.plot(
                epochs,
                values,
                linestyle=LINE_STYLES[kind],
                marker="o" if len(points) <= MARKED_POINTS else None,
                markersize=3,
                label=f"{KINDS[kind].capitalize()} {label.lower()}",
            )
    axes.set_xlabel("Epochs")
    axes.set_ylabel(label)
    axes.legend()
    if examples_per_epoch:
        _add_examples_axis(axes, examples_per_epoch)
    save_png(figure, path)


def _add_examples_axis(axes, examples_per_epoch: float) -> None:
    """A top x-axis that reads the bottom one's epochs as examples seen."""
    top = axes.secondary_xaxis(
        "top",
        functions=(
            lambda epochs: epochs * examples_per_epoch,
            lambda seen: seen / examples_per_epoch,
        ),
    )
    top.set_xlabel("Examples seen")


def plot_confusion_matrix(
    metrics: dict, path: Path, title: str = "Confusion matrix (rows: true, columns: predicted)"
) -> None:
    """A PNG of the confusion matrix with the count in every cell, written atomically."""
    counts = np.array(metrics["confusion_matrix"])
    names = metrics["labels"]
    side = max(MIN_FIGURE_INCHES, CELL_INCHES * len(names) + 2.5)
    figure = new_figure(side + 1.0, side)
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes)
    _write_counts_in_cells(axes, counts)
    ticks = range(len(names))
    slanted = len(names) > 4
    axes.set_xticks(
        ticks, labels=names, rotation=45 if slanted else 0, ha="right" if slanted else "center"
    )
    axes.set_yticks(ticks, labels=names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    save_png(figure, path)


def _write_counts_in_cells(axes, counts: np.ndarray) -> None:
    """Each cell's count, white on dark cells and black on light ones."""
    middle = counts.max() / 2
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if count > middle else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour)


def plot_reliability(ids: Sequence[int], probabilities: np.ndarray, path: Path) -> None:
    """A reliability diagram: in each bin of top-class confidence, the accuracy against the
    mean confidence (a calibrated model lies on the diagonal), with the bin's count."""
    bins = reliability_bins(np.asarray(ids), probabilities)
    figure = new_figure(5.0, 5.0)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="calibrated")
    lows = [b["low"] for b in bins]
    widths = [b["high"] - b["low"] for b in bins]
    accuracy = [b["accuracy"] for b in bins]
    axes.bar(lows, accuracy, width=widths, align="edge", alpha=0.6, edgecolor="black")
    axes.plot([b["confidence"] for b in bins], accuracy, marker="o", label="accuracy per bin")
    for b in bins:
        axes.annotate(
            str(b["count"]),
            (b["low"] + (b["high"] - b["low"]) / 2, b["accuracy"]),
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
            fontsize=7,
        )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("confidence (probability of the predicted class)")
    axes.set_ylabel("accuracy")
    axes.set_title("Reliability (numbers: texts per bin)")
    axes.legend(loc="upper left")
    save_png(figure, path)


def plot_precision_recall(
    ids: Sequence[int], probabilities: np.ndarray, metrics: dict, path: Path
) -> None:
    """The precision-recall curve of the positive class, with the point ``metrics`` decided at
    (their threshold, or the most probable class); for multi-label metrics, every label's."""
    from sklearn.metrics import precision_recall_curve

    if metrics.get("multi_label"):
        _plot_label_curves(np.asarray(ids), probabilities, metrics, path)
        return
    positive = metrics["labels"][POSITIVE_CLASS]
    is_positive = np.asarray(ids) == POSITIVE_CLASS
    precision, recall, _ = precision_recall_curve(is_positive, probabilities[:, POSITIVE_CLASS])
    decided = metrics["per_class"][positive]
    threshold = metrics["threshold"]
    rule = "the more probable class" if threshold is None else f"p >= {threshold:.4g}"
    figure = new_figure(5.0, 5.0)
    axes = figure.add_subplot()
    axes.step(recall, precision, where="post", label=f"PR-AUC {metrics['pr_auc']:.4f}")
    axes.plot(
        decided["recall"],
        decided["precision"],
        marker="o",
        color="red",
        label=f"decided by {rule}: P {decided['precision']:.3f}, R {decided['recall']:.3f}",
    )
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel(f"recall of {positive}")
    axes.set_ylabel(f"precision of {positive}")
    axes.set_title("Precision-recall")
    axes.legend(loc="lower left")
    save_png(figure, path)


def _plot_label_curves(truth: np.ndarray, probabilities: np.ndarray, metrics: dict, path: Path):
    """Each label's precision-recall curve (labels present in ``truth``) with the point its
    threshold decided at."""
    from sklearn.metrics import precision_recall_curve

    figure = new_figure(7.5, 5.0)
    axes = figure.add_subplot()
    for i, (name, decided) in enumerate(metrics["per_class"].items()):
        if decided["pr_auc"] is None:
            continue
        precision, recall, _ = precision_recall_curve(truth[:, i], probabilities[:, i])
        (line,) = axes.step(
            recall, precision, where="post", label=f"{name} (PR-AUC {decided['pr_auc']:.3f})"
        )
        axes.plot(decided["recall"], decided["precision"], marker="o", color=line.get_color())
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title("Precision-recall per label (dots: the decisions)")
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    save_png(figure, path)
