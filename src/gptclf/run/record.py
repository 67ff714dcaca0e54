"""What a run folder records of its training, read back: the metrics file, when training
finished, how big the training split was, how its split files are read, and an example of each
class from its validation split. The service's card and the run report read these."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from gptclf.data.labels import LabelMap
from gptclf.data.readers import LabelledTexts, read_labelled
from gptclf.errors import GptclfError
from gptclf.run.folder import RunDir

EXAMPLE_CHARS = 400  # an example longer than this is chosen only where a class has no shorter one


@dataclass(frozen=True)
class TrainingRecord:
    """What training left in the run folder for a reader of the model."""

    metrics: dict = field(default_factory=dict)  # "validation" and "test", where recorded
    finished_at: str | None = None  # ISO 8601, UTC
    training_rows: int | None = None
    examples: list[dict] = field(default_factory=list)  # {"label", "text", "pair"} per class


def read_metrics(run_dir: RunDir) -> dict:
    """Everything the run's metrics file holds ({} for a run without one)."""
    path = run_dir.metrics
    if not path.is_file():
        return {}
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GptclfError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(recorded, dict):
        raise GptclfError(f"{path}: not a JSON object")
    return recorded


def split_reading(run_dir: RunDir) -> dict:
    """How the run's own split files are read: as training read its data (the columns, a
    label separator or label columns), where the run records it."""
    from gptclf.data.dataset import READING_OPTIONS
    from gptclf.recipe import read_options

    if not run_dir.options.is_file():  # an imported run
        return {}
    recorded = read_options(run_dir.options)[1]
    return {name: recorded[name] for name in READING_OPTIONS if name in recorded}


def read_split(run_dir: RunDir, name: str) -> LabelledTexts | None:
    """The run's split ``name`` read as training read it (None: the run has no such file)."""
    path = run_dir.split_file(name)
    return None if path is None else read_labelled(path, **split_reading(run_dir))


def training_record(
    run_dir: RunDir, labels: LabelMap, max_chars: int, examples: bool = True
) -> TrainingRecord:
    """The record of the run in ``run_dir``; with ``examples``, one text of each class of its
    validation split no longer than ``max_chars``."""
    recorded = read_metrics(run_dir)
    validation = read_split(run_dir, "validation") if examples else None
    return TrainingRecord(
        metrics={k: recorded[k] for k in ("validation", "test") if k in recorded},
        finished_at=recorded.get("finished_at"),
        training_rows=_training_rows(recorded, run_dir),
        examples=[] if validation is None else class_examples(validation, labels, max_chars),
    )


def _training_rows(recorded: dict, run_dir: RunDir) -> int | None:
    """Rows of the training split: from the run's data summary, else its split file."""
    for summary in recorded.get("data", []):
        if summary.get("name") == "train":
            return summary["rows"]
    train = read_split(run_dir, "train")
    return None if train is None else len(train.texts)


def class_examples(data: LabelledTexts, labels: LabelMap, max_chars: int) -> list[dict]:
    """One text of each class (multi-label: with that label), in class order: the first in the
    file of at most ``EXAMPLE_CHARS`` characters, else the shortest; none for a class whose
    texts are all longer than ``max_chars`` (the service would refuse them)."""
    targets = np.asarray(labels.targets(data.labels, data.source))
    examples = []
    for class_id, name in enumerate(labels.names):
        rows = np.flatnonzero(targets[:, class_id] if labels.multi_label else targets == class_id)
        sizes = {int(i): _size(data, int(i)) for i in rows}
        fitting = [i for i, size in sizes.items() if size <= max_chars]
        if not fitting:
            continue
        short = [i for i in fitting if sizes[i] <= EXAMPLE_CHARS]
        chosen = short[0] if short else min(fitting, key=lambda i: sizes[i])
        pair = None if data.pairs is None else data.pairs[chosen]
        examples.append({"label": name, "text": data.texts[chosen], "pair": pair})
    return examples


def _size(data: LabelledTexts, i: int) -> int:
    """The characters of example ``i``: its text, or the longer of its text and pair."""
    return max(len(data.texts[i]), 0 if data.pairs is None else len(data.pairs[i]))
