"""gptclf as a scikit-learn estimator: ``GPTClassifier(**recipe).fit(texts, y)`` trains a run as
``gptclf train`` does and keeps it in a run folder; ``predict``, ``predict_proba``,
``decision_function`` and ``score`` load the classifier from that folder. Its parameters are the
recipe's options (``gptclf train -h``), by their Python names, and ``preset``; so it works in
``clone``, ``cross_val_score``, ``GridSearchCV`` and ``Pipeline``. The frozen prefix's states are
kept in gptclf's on-disk store, so fits of the same texts after the first read them.

A fitted estimator pickles as its parameters and the path of its run folder, never its tensors:
it loads the classifier from the folder again when next asked."""

from __future__ import annotations

import dataclasses
import inspect
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from gptclf.data.dataset import DataSource
from gptclf.decision import decide
from gptclf.options import default_of, meta_of
from gptclf.recipe import TrainConfig, recipe

RECIPE_PARAMETERS = {
    f.name: default_of(f) for f in dataclasses.fields(TrainConfig) if meta_of(f).cli
}
# The estimator's own: a preset under the options, where run folders are made (default: the
# system's temporary folder; a fitted estimator needs its folder), and training's progress shown.
# A validation split held out of X (stratified), for the options that choose on one
# (--decide, --calibrate, --early-stopping, --keep best, the blend's weight).
OWN_PARAMETERS = {
    "preset": None,
    "run_root": None,
    "verbose": False,
    "validation_fraction": None,
}
PARAMETERS = {**OWN_PARAMETERS, **RECIPE_PARAMETERS}
LABEL_COLUMN = "label_{:05d}"  # the 0/1 column of label i of multi-label y, in label order


class GPTClassifier(ClassifierMixin, BaseEstimator):
    """A pretrained language model finetuned into a classifier of texts, as ``gptclf train``.

    ``y`` holds one label per text (ints or strings), or for multi-label data a 0/1 indicator
    matrix (n_texts, n_labels), as ``MultiLabelBinarizer`` makes; ``X`` is a sequence of texts.
    ``run_dir_`` is the fitted run folder, usable by ``gptclf eval``, ``predict`` and ``serve``.
    """

    def __init__(self, **params: object) -> None:
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise TypeError(f"GPTClassifier has no parameter(s) {', '.join(unknown)}")
        for name, default in PARAMETERS.items():
            setattr(self, name, params.get(name, default))

    __init__.__signature__ = inspect.Signature(  # what get_params and clone read
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
            for name, default in PARAMETERS.items()
        ]
    )

    def fit(self, X: Sequence[str], y: Sequence | np.ndarray) -> GPTClassifier:
        """Train on texts ``X`` with labels ``y``; the run folder is ``run_dir_`` (removed
        again where training fails)."""
        from gptclf.training.train import train

        texts = _texts(X)
        targets, classes = _encoded(y, len(texts))
        config = self.recipe()
        run_dir = _new_run_folder(self.run_root)
        try:
            with tempfile.TemporaryDirectory() as folder:
                parts = _split(texts, targets, self.validation_fraction, config.seed)
                source = _training_files(parts, classes, Path(folder))
                train(config, source, run_dir, quiet=not self.verbose)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        self.run_dir_, self.classes_, self.multi_label_ = run_dir, classes, targets.ndim == 2
        self._classifier = None
        return self

    def predict_proba(self, X: Sequence[str]) -> np.ndarray:
        """Each class's probability (n_texts, n_classes), columns in ``classes_`` order, as the
        run gives them (blended, calibrated); multi-label: each label's."""
        return self._label_order(self._loaded().predict_proba(_texts(X)))

    def predict(self, X: Sequence[str]) -> np.ndarray:
        """The class of each text as the run decides it (multi-label: a 0/1 row per text)."""
        classifier = self._loaded()
        probabilities = self._label_order(classifier.predict_proba(_texts(X)))
        threshold = classifier.config.decision_rule.threshold
        decided = decide(probabilities, threshold, self.multi_label_)
        return decided if self.multi_label_ else self.classes_[decided]

    def decision_function(self, X: Sequence[str]) -> np.ndarray:
        """Log-odds of ``classes_[1]`` for two classes (n_texts,), else the log-probability of
        each class (multi-label: each label's log-odds)."""
        p = np.clip(self.predict_proba(X), 1e-12, 1 - 1e-12)
        if self.multi_label_:
            return np.log(p) - np.log1p(-p)
        if len(self.classes_) == 2:
            return np.log(p[:, 1]) - np.log(p[:, 0])
        return np.log(p)

    def __getstate__(self) -> dict:
        """Parameters and the run folder's path; the classifier loads again from the folder."""
        state = super().__getstate__()
        state.pop("_classifier", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._classifier = None

    def recipe(self) -> TrainConfig:
        """The recipe ``fit`` trains with: ``preset`` (if any) under the options set to other
        than their defaults."""
        changed = {
            name: getattr(self, name)
            for name, default in RECIPE_PARAMETERS.items()
            if getattr(self, name) != default
        }
        return recipe(self.preset, "GPTClassifier", **changed)

    def _loaded(self):
        """The fitted run's classifier, loaded (and verified) once."""
        from sklearn.utils.validation import check_is_fitted

        from gptclf.predict import Classifier

        check_is_fitted(self, "run_dir_")
        if self._classifier is None:
            self._classifier = Classifier.from_pretrained(self.run_dir_)
        return self._classifier

    def _label_order(self, columns: np.ndarray) -> np.ndarray:
        """Columns in the run's label-id order put in ``classes_`` order (the run's labels are
        the classes' positions, or for multi-label data the names of their 0/1 columns)."""
        values = self._loaded().labels.values
        names = [LABEL_COLUMN.format(i) if self.multi_label_ else i for i in range(len(values))]
        return columns[:, [values.index(name) for name in names]]


def _texts(X: object) -> list[str]:
    """``X`` as a list of texts: a sequence of strings, or an array or frame of one column."""
    array = np.asarray(X, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"X must be a sequence of texts, not an array of shape {array.shape}")
    for i, text in enumerate(array):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"X[{i}] is {text!r}: every X must be a text with a word in it")
    return [str(text) for text in array]


def _encoded(y: object, n_texts: int) -> tuple[np.ndarray, np.ndarray]:
    """``y`` as class positions (n,) and ``classes_``, or for a 0/1 matrix (n, n_labels) the
    matrix and the label positions; a column vector counts as one label a text."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if len(y) != n_texts:
        raise ValueError(f"X has {n_texts} texts and y {len(y)} labels")
    if y.ndim == 1:
        classes, positions = np.unique(y, return_inverse=True)
        return positions, classes
    if y.ndim != 2 or not np.isin(y, (0, 1)).all():
        raise ValueError("y must hold one label a text, or be a 0/1 matrix (texts, labels)")
    unused = np.flatnonzero(y.sum(axis=0) == 0)
    if len(unused):
        raise ValueError(f"label column {unused[0]} of y marks no text: each needs at least one")
    return y.astype(int), np.arange(y.shape[1])


def _new_run_folder(root: str | Path | None) -> Path:
    """A new, empty run folder under ``root`` (default: the system's temporary folder)."""
    if root is not None:
        Path(root).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="gptclf-fit-", dir=root)).resolve()


def _split(
    texts: list[str], targets: np.ndarray, validation_fraction: float | None, seed: int
) -> dict[str, tuple[list[str], np.ndarray]]:
    """The training texts, and with ``validation_fraction`` a stratified validation split."""
    if validation_fraction is None:
        return {"train": (texts, targets)}
    from sklearn.model_selection import train_test_split

    stratify = targets if targets.ndim == 1 else None
    train_texts, validation_texts, train_targets, validation_targets = train_test_split(
        texts, targets, test_size=validation_fraction, random_state=seed, stratify=stratify
    )
    return {
        "train": (train_texts, train_targets),
        "validation": (validation_texts, validation_targets),
    }


def _training_files(
    parts: dict[str, tuple[list[str], np.ndarray]], classes: np.ndarray, folder: Path
) -> DataSource:
    """Each split as a JSONL file of a run: a text and its class position (named by
    ``labels.json`` beside it), or a 0/1 column per label, a line."""
    multi_label = parts["train"][1].ndim == 2
    columns = [LABEL_COLUMN.format(i) for i in range(len(classes))]
    for name, (texts, targets) in parts.items():
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as out:
            for text, target in zip(texts, targets, strict=True):
                labels = (
                    {c: int(on) for c, on in zip(columns, target, strict=True)}
                    if multi_label
                    else {"label": int(target)}
                )
                out.write(json.dumps({"text": text, **labels}, ensure_ascii=False) + "\n")
    if multi_label:
        reading = {"label_columns": ",".join(columns)}
    else:
        names = {str(i): str(c) for i, c in enumerate(classes)}
        (folder / "labels.json").write_text(json.dumps(names, ensure_ascii=False), "utf-8")
        reading = {"label_column": "label"}
    files = {name: folder / f"{name}.jsonl" for name in parts}
    return DataSource(**files, text_column="text", **reading)
