"""gptclf inside scikit-learn: ``cross_val_score(GPTClassifier(), texts, labels, cv=3)`` on the SMS
book train split (1,045 messages), the offline default model and recipe, against the TF-IDF
baseline's pipeline cross-validated on the same folds in the same run. Reports each fold's
accuracy, the mean, and the wall time of each, from an empty frozen-prefix store (its own, in a
temporary folder): the second and third folds read the states the first fold stored where their
texts overlap.

    .venv/bin/python benchmarks/sklearn_cv.py [--out benchmarks/results]

Writes ``sklearn_cv.json`` and ``sklearn_cv.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, cross_val_score

from gptclf.atomic import write_text_atomic
from gptclf.baseline import make_pipeline
from gptclf.data.dataset import DataSource, prepare_built_in
from gptclf.data.readers import read_labelled
from gptclf.sklearn import GPTClassifier

FOLDS = 3
SEED = 123


def timed_scores(estimator, texts: list[str], labels: list[str]) -> dict:
    """Accuracy of each of the folds, and the seconds the whole cross-validation took."""
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED)
    began = time.perf_counter()
    scores = cross_val_score(estimator, texts, labels, cv=folds)
    seconds = time.perf_counter() - began
    return {"accuracy": scores.tolist(), "mean": float(np.mean(scores)), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    train = read_labelled(prepare_built_in(DataSource(dataset="sms-spam"))["train"])
    texts, labels = train.texts, [str(label) for label in train.labels]
    baseline = timed_scores(make_pipeline(1.0, SEED), texts, labels)
    with tempfile.TemporaryDirectory() as work:
        os.environ["GPTCLF_STORE"] = str(Path(work, "store"))  # cold, as a first run is
        model = timed_scores(GPTClassifier(run_root=Path(work, "runs")), texts, labels)
    results = {"texts": len(texts), "folds": FOLDS, "gptclf": model, "tfidf": baseline}
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "sklearn_cv.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(args.out / "sklearn_cv.md", report(results))
    print(report(results))


def report(results: dict) -> str:
    rows = [
        f"| {name} | {' / '.join(f'{a:.4f}' for a in r['accuracy'])} | {r['mean']:.4f} | "
        f"{r['seconds']:.1f} |"
        for name, r in (("GPTClassifier()", results["gptclf"]), ("TF-IDF + LR", results["tfidf"]))
    ]
    ratio = results["gptclf"]["seconds"] / results["tfidf"]["seconds"]
    return "\n".join(
        [
            f"# cross_val_score on the SMS book train split ({results['texts']} messages, "
            f"{results['folds']} stratified folds)",
            "",
            "| estimator | accuracy per fold | mean | seconds |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
            f"GPTClassifier took {ratio:.0f}x the baseline's time on this machine.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
