"""Training curves from a run's metrics.jsonl: train and validation loss and accuracy against
epochs, with examples seen on a second x-axis at the top.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas, so no global
matplotlib state (backend, pyplot figures) is touched, and every PNG is written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gptclf.atomic import atomic_path

CURVE_METRICS = {"loss": "Loss", "accuracy": "Accuracy"}
KINDS = {"train": "training", "validation": "validation"}
LINE_STYLES = {"train": "-", "validation": "-."}
MARKED_POINTS = 30
DPI = 120


def plot_training_curves(records: Sequence[dict], out_dir: Path) -> list[Path]:
    """Write ``loss.png`` and ``accuracy.png`` into ``out_dir`` (a plot whose metric no record
    holds is skipped) and return the paths written. A record's ``epoch`` is the training progress
    in epochs (fractional within an epoch) and ``examples_seen`` the examples trained on so far."""
    written = []
    for metric, label in CURVE_METRICS.items():
        series = {kind: _points(records, kind, metric) for kind in KINDS}
        if not any(series.values()):
            continue
        path = Path(out_dir) / f"{metric}.png"
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
