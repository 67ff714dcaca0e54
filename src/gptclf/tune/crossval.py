"""One candidate recipe measured by stratified k-fold cross-validation on the pooled training and
validation texts: trained on each fold's complement, its held-out probabilities kept, every fold
reading the frozen-prefix states from one shared store."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace

import numpy as np
from sklearn.model_selection import StratifiedKFold

from gptclf.data.dataset import Splits
from gptclf.data.readers import LabelledTexts
from gptclf.ensemble import Ensemble
from gptclf.metrics import compute_metrics, log_loss
from gptclf.recipe import TrainConfig
from gptclf.registry import Pretrained
from gptclf.store import PrefixStore
from gptclf.training.log import Logger
from gptclf.training.prepare import prepare_loaded
from gptclf.training.train import build_trainer


@dataclass
class Measured:
    """A candidate's out-of-fold figures."""

    probabilities: np.ndarray  # (n, n_classes), each row from the fold that held it out
    metrics: dict  # compute_metrics of the out-of-fold probabilities
    log_loss: float
    seconds: float


def fold_indices(labels: list[int], folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) positions of each stratified fold, fixed by the seed."""
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def cross_validate(
    config: TrainConfig,
    pooled: Splits,
    pretrained: Pretrained,
    store: PrefixStore,
    folds: list[tuple[np.ndarray, np.ndarray]],
) -> Measured:
    """Train ``config`` once per fold (on a copy of the base model) and keep the held-out
    fold's class probabilities."""
    began = time.perf_counter()
    data = pooled.parts["train"]
    ids = pooled.labels.ids(data.labels, data.source)
    probabilities = np.zeros((len(ids), len(pooled.labels)))
    for train_rows, held_out_rows in folds:
        parts = {"train": _rows(data, train_rows), "validation": _rows(data, held_out_rows)}
        fold = Splits(parts, pooled.labels)
        fresh = replace(pretrained, model=copy.deepcopy(pretrained.model))
        prepared = prepare_loaded(config, fold, fresh, store=store)
        trainer = build_trainer(config, prepared, quiet=True)
        trainer.run(Logger(None, True, trainer.state))
        held_out = prepared.datasets["validation"]
        logits = trainer.step.logits(held_out, prepared.pad_id, prepared.pad_to)
        probabilities[held_out_rows] = logits.softmax(-1).numpy()
    return measured(ids, probabilities, pooled.labels.names, _since(began))


def baseline_out_of_fold(
    pooled: Splits, folds: list[tuple[np.ndarray, np.ndarray]], seed: int
) -> Measured:
    """The TF-IDF baseline's out-of-fold figures on the same folds (its C chosen within each
    fold's training part)."""
    began = time.perf_counter()
    data = pooled.parts["train"]
    ids = pooled.labels.ids(data.labels, data.source)
    probabilities = np.zeros((len(ids), len(pooled.labels)))
    for train_rows, held_out_rows in folds:
        texts = [data.texts[i] for i in train_rows]
        ensemble = Ensemble.fit(texts, [ids[i] for i in train_rows], len(pooled.labels), seed)
        held_out_texts = [data.texts[i] for i in held_out_rows]
        probabilities[held_out_rows] = ensemble.baseline_probabilities(held_out_texts)
    return measured(ids, probabilities, pooled.labels.names, _since(began))


def measured(ids: list[int], probabilities: np.ndarray, names, seconds: float) -> Measured:
    """The figures of out-of-fold ``probabilities``."""
    metrics = compute_metrics(ids, probabilities, names)
    return Measured(probabilities, metrics, log_loss(ids, probabilities), seconds)


def _rows(data: LabelledTexts, rows: np.ndarray) -> LabelledTexts:
    """The examples of ``data`` at positions ``rows``."""
    return replace(
        data,
        texts=[data.texts[i] for i in rows],
        labels=[data.labels[i] for i in rows],
        rows=[data.rows[i] for i in rows],
        dropped_empty=[],
    )


def _since(began: float) -> float:
    return round(time.perf_counter() - began, 1)
