"""The language model's class probabilities blended with the classic baseline's (TF-IDF +
logistic regression): a weighted geometric mean, its weight chosen on held-out probabilities of
both, so the blend is never worse there than either alone. The baseline is kept in the run
folder as JSON and safetensors, verified by SHA-256 when loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.pipeline import Pipeline

from gptclf.assets import sha256_of
from gptclf.atomic import atomic_path, write_text_atomic
from gptclf.baseline import choose_c, class_probabilities, pipeline_from_parts, pipeline_parts
from gptclf.errors import GptclfError
from gptclf.metrics import log_loss

WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 21))  # the language model's share


def blend(lm: np.ndarray, classic: np.ndarray, weight: float) -> np.ndarray:
    """Probabilities proportional to lm^weight * classic^(1 - weight), row by row."""
    logits = weight * np.log(np.clip(lm, 1e-12, 1)) + (1 - weight) * np.log(
        np.clip(classic, 1e-12, 1)
    )
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def choose_weight(ids: list[int], lm: np.ndarray, classic: np.ndarray) -> float:
    """The weight in ``WEIGHTS`` whose blend of held-out probabilities is most accurate, ties
    going to the lower log loss, then to the larger weight."""
    truth = np.asarray(ids)

    def score(weight: float) -> tuple[float, float, float]:
        blended = blend(lm, classic, weight)
        accuracy = float((blended.argmax(1) == truth).mean())
        return (-accuracy, log_loss(ids, blended), -weight)

    return min(WEIGHTS, key=score)


@dataclass
class Ensemble:
    """The fitted baseline and the language model's weight in the blend."""

    baseline: Pipeline
    weight: float
    n_classes: int

    @classmethod
    def fit(cls, texts: list[str], ids: list[int], n_classes: int, seed: int) -> Ensemble:
        """The baseline fitted on ``texts`` (its C chosen by cross-validation on them), with
        weight 1 until ``choose_weight`` gives one."""
        model = choose_c(texts, ids, seed)
        return cls(model, 1.0, n_classes)

    def baseline_probabilities(self, texts: list[str]) -> np.ndarray:
        return class_probabilities(self.baseline, texts, self.n_classes)

    def combine(self, texts: list[str], lm: np.ndarray) -> np.ndarray:
        """The blend of the language model's probabilities ``lm`` of ``texts`` with the
        baseline's."""
        if len(texts) == 0:
            return lm
        return blend(lm, self.baseline_probabilities(texts), self.weight)

    def save(self, tensors_path: Path, vocabulary_path: Path) -> dict:
        """Write the baseline's arrays and vocabulary (each atomically); returns the record
        ``load`` verifies them by."""
        arrays, vocabulary = pipeline_parts(self.baseline)
        with atomic_path(tensors_path) as tmp:
            save_file(arrays, str(tmp))
        write_text_atomic(vocabulary_path, json.dumps(vocabulary))
        return {
            "weight": self.weight,
            "n_classes": self.n_classes,
            "sha256": {
                tensors_path.name: sha256_of(tensors_path),
                vocabulary_path.name: sha256_of(vocabulary_path),
            },
        }

    @classmethod
    def load(cls, tensors_path: Path, vocabulary_path: Path, record: dict) -> Ensemble:
        """The ensemble saved with ``record``, once both files are shown to be those written."""
        for path in (tensors_path, vocabulary_path):
            if not path.is_file():
                raise GptclfError(f"{path}: file not found (the run blends with the baseline)")
            if sha256_of(path) != record["sha256"].get(path.name):
                raise GptclfError(f"{path}: SHA-256 differs from the one training recorded")
        try:
            vocabulary = json.loads(vocabulary_path.read_text(encoding="utf-8"))
            baseline = pipeline_from_parts(load_file(str(tensors_path)), vocabulary)
        except (ValueError, KeyError, TypeError) as exc:
            raise GptclfError(f"{vocabulary_path}: not a gptclf baseline ({exc})") from exc
        return cls(baseline, float(record["weight"]), int(record["n_classes"]))
