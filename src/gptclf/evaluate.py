"""A trained run measured on labelled texts (its test split unless given a file): the
probabilities it gives them as it decides (blended, calibrated), the metrics, and the pictures
``gptclf eval`` writes. ``gptclf eval`` and ``gptclf report`` share it. (scikit-learn, which
the metrics need, loads when they are computed, not with the CLI.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gptclf.data.dataset import Splits
from gptclf.data.labels import LabelMap
from gptclf.data.readers import LabelledTexts, read_labelled
from gptclf.errors import GptclfError
from gptclf.options import at_least, option
from gptclf.run import RunDir, read_run_config
from gptclf.run.record import read_split, split_reading

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


@dataclass
class EvalOptions:
    """What ``gptclf eval`` shows beside the metrics."""

    errors: int | None = option(
        None,
        "also print the N mistakes made with the highest probability",
        **at_least(1),
        metavar="N",
    )


@dataclass(frozen=True)
class Evaluation:
    """A run's classifier on one labelled file."""

    path: Path
    data: LabelledTexts
    labels: LabelMap
    truth: list[int] | np.ndarray  # class ids, or multi-label 0/1 rows
    probabilities: np.ndarray  # (n, n_classes) as the run decides by them
    metrics: dict


def evaluate(
    run_dir: RunDir,
    data_path: Path | None = None,
    reading: dict | None = None,
    threshold: float | None = None,
    device: str = "cpu",
) -> Evaluation:
    """The run in ``run_dir`` on ``data_path`` read with ``reading`` (default: its test split,
    read as training read it), decided by ``threshold`` (default: the run's)."""
    from gptclf.distributed import distributed_context
    from gptclf.metrics import compute_metrics
    from gptclf.predict import Classifier
    from gptclf.store import PrefixStore

    labels = read_run_config(run_dir).label_map  # bad input fails before the model loads
    path = data_path or run_dir.test_split()
    data = read_labelled(path, **(split_reading(run_dir) if data_path is None else reading or {}))
    truth = labels.targets(data.labels, data.source)
    with distributed_context(device) as dist:  # one process: the device, checked
        classifier = Classifier.from_pretrained(run_dir.root).to(dist.device)
        where = lambda i: f"{path}: row {data.rows[i]}"  # noqa: E731
        ids = classifier.token_ids(data.texts, where, pairs=data.pairs)
        store = PrefixStore.on_disk(keep=False) if classifier.config.recipe.store else None
        model_probabilities = classifier.probabilities_of_ids(ids, store=store)
    probabilities = classifier.final_probabilities(data.texts, model_probabilities)
    if threshold is None:
        threshold = classifier.config.decision_rule.threshold
    metrics = compute_metrics(truth, probabilities, labels.names, threshold)
    return Evaluation(path, data, labels, truth, probabilities, {**metrics, "data": str(path)})


def write_evaluation(evaluation: Evaluation, run_dir: RunDir) -> None:
    """The metrics file and the pictures of ``evaluation`` in the run folder's ``eval/``."""
    from gptclf.metrics import write_metrics

    metrics_path, pictures = run_dir.evaluation(evaluation.path)
    write_metrics(evaluation.metrics, metrics_path)
    write_pictures(evaluation, pictures)


def write_pictures(evaluation: Evaluation, pictures: dict[str, Path]) -> list[str]:
    """Each picture named in ``pictures`` that ``evaluation`` has (its confusion matrix,
    reliability diagram, precision-recall curve) at its path; returns the names drawn."""
    from gptclf.plots import plot_confusion_matrix, plot_precision_recall, plot_reliability

    metrics, truth, probabilities = evaluation.metrics, evaluation.truth, evaluation.probabilities
    available = {
        "confusion_matrix": "confusion_matrix" in metrics,
        "reliability": True,
        "precision_recall": metrics.get("pr_auc") is not None or evaluation.labels.multi_label,
    }
    drawn = [name for name in pictures if available[name]]
    for name in drawn:
        path = pictures[name]
        if name == "confusion_matrix":
            plot_confusion_matrix(metrics, path)
        elif name == "reliability":
            plot_reliability(truth, probabilities, path)
        else:
            plot_precision_recall(truth, probabilities, metrics, path)
    return drawn


def fit_run_baseline(run_dir: RunDir) -> Pipeline:
    """The TF-IDF baseline fitted on the run's own training split, its C chosen on the run's
    validation split, with the run's seed: the baseline ``--compare-baseline`` shows."""
    from gptclf.baseline import fit_baseline

    config = read_run_config(run_dir)
    parts = {name: read_split(run_dir, name) for name in ("train", "validation")}
    if parts["train"] is None:
        raise GptclfError(f"{run_dir.root}: the run has no training split to fit the baseline on")
    splits = Splits({name: p for name, p in parts.items() if p is not None}, config.label_map)
    return fit_baseline(splits, config.recipe.seed)[0]
