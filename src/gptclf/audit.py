"""``gptclf data audit``: the rows of a labelled file most likely to be mislabelled. Every row's
class probabilities come from cross-validation (each from the fold that held the row out: the
finetuned model's, or the TF-IDF baseline's), and confident learning (cleanlab) says which rows'
labels those probabilities contradict; every row is ranked by the probability of its own label."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptclf.atomic import write_text_atomic
from gptclf.data.dataset import Splits
from gptclf.data.labels import LabelMap
from gptclf.data.readers import LabelledTexts
from gptclf.errors import GptclfError
from gptclf.options import as_plain, at_least, option
from gptclf.recipe import TrainConfig, recipe

AUDITORS = ("model", "baseline")
MIN_TRAINING_ROWS = 3
COLUMNS = ("rank", "row", "label", "suggested", "label_probability", "flagged", "text")


@dataclass
class AuditOptions:
    by: str = option(
        "model",
        "whose out-of-fold probabilities: the finetuned model's or the TF-IDF baseline's",
        choices=AUDITORS,
    )
    folds: int = option(5, "cross-validation folds", **at_least(2))
    top: int = option(20, "rows shown (all of them go to --out)", **at_least(1))


@dataclass
class Audit:
    """Every row ranked, most suspect first, with what cross-validation and confident learning
    say of it."""

    data: LabelledTexts
    labels: LabelMap
    given: np.ndarray  # (n,) class id of each row's label
    probabilities: np.ndarray  # (n, n_classes) out of fold
    order: np.ndarray  # positions, by the probability of the row's own label, lowest first
    flagged: np.ndarray  # (n,) bool: confident learning finds the label wrong

    @property
    def accuracy(self) -> float:
        """Of the out-of-fold decisions."""
        return float((self.probabilities.argmax(1) == self.given).mean())

    def rows(self) -> list[dict]:
        """One record per row, in rank order."""
        suggested = self.probabilities.argmax(1)
        return [
            {
                "rank": rank,
                "row": self.data.rows[i],
                "label": self.labels.names[self.given[i]],
                "suggested": self.labels.names[suggested[i]],
                "label_probability": round(float(self.probabilities[i, self.given[i]]), 4),
                "flagged": bool(self.flagged[i]),
                "text": self.data.texts[i],
            }
            for rank, i in enumerate(self.order, start=1)
        ]


def audit_labels(
    data: LabelledTexts, labels: LabelMap, config: TrainConfig, options: AuditOptions
) -> Audit:
    """Out-of-fold probabilities of every row of ``data`` by ``options.by``, and the ranking.
    The model is measured alone, as ``tune`` measures it: its last weights (the held-out rows
    never choose an epoch), unblended."""
    from gptclf.tune.crossval import baseline_out_of_fold, cross_validate, fold_indices
    from gptclf.tune.space import MEASURED_ALONE

    given = np.array(labels.ids(data.labels, data.source))
    folds = fold_indices(given.tolist(), options.folds, config.seed)
    _check_folds(given, folds, labels, data.source)
    pooled = Splits({"train": data}, labels)
    if options.by == "baseline":
        measured = baseline_out_of_fold(pooled, folds, config.seed)
    else:
        from gptclf.store import PrefixStore
        from gptclf.training.prepare import base_model

        alone = recipe(**{**as_plain(config), **MEASURED_ALONE})
        store = PrefixStore.on_disk() if alone.store else PrefixStore()
        measured = cross_validate(alone, pooled, base_model(alone), store, folds)
    return ranked(data, labels, given, measured.probabilities)


def ranked(
    data: LabelledTexts, labels: LabelMap, given: np.ndarray, probabilities: np.ndarray
) -> Audit:
    """The audit of out-of-fold ``probabilities``: rows by the probability of their own label
    (lowest first; ties by row), each flagged where confident learning finds its label wrong."""
    from cleanlab.filter import find_label_issues

    own = probabilities[np.arange(len(given)), given]
    order = np.lexsort((np.arange(len(given)), own))
    flagged = find_label_issues(given, probabilities, n_jobs=1)
    return Audit(data, labels, given, probabilities, order, flagged)


def _check_folds(
    given: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], labels: LabelMap, source: str
) -> None:
    """Every label in every fold's held-out part, and at least ``MIN_TRAINING_ROWS`` of it in
    every fold's training part (the baseline chooses its C by 3-fold cross-validation there)."""
    counts = Counter(given.tolist())
    scarce = [
        labels.names[c]
        for c in range(len(labels))
        if counts[c] < len(folds)
        or any(np.count_nonzero(given[train] == c) < MIN_TRAINING_ROWS for train, _ in folds)
    ]
    if scarce:
        raise GptclfError(
            f"{source}: {len(folds)}-fold cross-validation needs at least {len(folds)} rows of "
            f"each label, {MIN_TRAINING_ROWS} of them outside each fold; too few of "
            f"{', '.join(map(repr, scarce))} (use fewer --folds)"
        )


def format_audit(audit: Audit, top: int, by: str, folds: int) -> str:
    """What the terminal shows: the figures, then the ``top`` most suspect rows."""
    n_flagged = int(audit.flagged.sum())
    lines = [
        f"{audit.data.source}: {len(audit.given)} rows, {folds}-fold out-of-fold probabilities "
        f"of the {by} (accuracy {audit.accuracy:.4f}); confident learning flags {n_flagged} "
        "as likely mislabelled",
        f"{'rank':>4}  {'row':>6}  {'label':<12}  {'suggested':<12}  {'p(label)':>8}  flag  text",
    ]
    for record in audit.rows()[:top]:
        text = " ".join(record["text"].split())
        lines.append(
            f"{record['rank']:>4}  {record['row']:>6}  {record['label'][:12]:<12}  "
            f"{record['suggested'][:12]:<12}  {record['label_probability']:>8.4f}  "
            f"{'yes' if record['flagged'] else '':<4}  {text[:60]}"
        )
    return "\n".join(lines)


def write_audit(audit: Audit, path: Path) -> None:
    """Every row, ranked, as CSV (written whole or not at all)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(audit.rows())
    write_text_atomic(path, buffer.getvalue())
