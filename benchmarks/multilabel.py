"""Multi-label classification on real data: 20 Newsgroups posts labelled with the parts of their
newsgroup's name (comp.sys.mac.hardware: comp, sys, mac, hardware; "misc" left out as no
topic), so a post carries two to five labels and labels are shared across groups (comp, sci,
politics, religion, hardware, sport, ...). The offline default model is trained on it with a
threshold per label chosen on validation (``--decide f1``), evaluated once on the by-date test
posts, served over HTTP by ``gptclf serve``, and exported to transformers, ONNX and back.
Beside it, in the same run, a TF-IDF one-vs-rest logistic regression on the same splits (C and
one threshold chosen on validation micro-F1).

    .venv/bin/python benchmarks/multilabel.py [--per-group T V E] [--compared N] [--out DIR]

Writes ``multilabel.json``, ``multilabel.md`` and ``multilabel-precision-recall.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from common import onnx_probabilities, pipeline_probabilities, run
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.multiclass import OneVsRestClassifier

from gptclf.atomic import write_text_atomic
from gptclf.data.labels import LabelMap
from gptclf.data.newsgroups import newsgroups_pkz, newsgroups_splits
from gptclf.data.readers import read_labelled, write_labelled
from gptclf.metrics import compute_metrics
from gptclf.predict import Classifier

EXPORTABLE = [
    "--max-length=128",
    "--pooling=last-token",
    "--no-head-bias",
    "--decide=f1",
    "--quiet",
]
CANDIDATES = [  # compared on the validation split by --choose (multilabel-choice.md): chose RECIPE
    [],
    ["--epochs=12"],
    ["--epochs=8", "--lr=2e-3"],
    ["--epochs=16", "--lr=2e-3"],
    ["--epochs=24", "--lr=2e-3"],
    ["--epochs=16", "--lr=5e-3"],
    ["--epochs=12", "--lr=2e-3", "--class-weights=balanced"],
    ["--epochs=16", "--lr=3e-3", "--class-weights=balanced"],
    ["--epochs=24", "--lr=3e-3", "--class-weights=balanced"],
]
RECIPE = [*EXPORTABLE, "--epochs=16", "--lr=3e-3", "--class-weights=balanced"]
SPLIT_FILES = {"train": "train", "validation": "val", "test": "test"}


def name_labels(group: str) -> tuple[str, ...]:
    """The labels of a post in ``group``: the parts of its name, "misc" left out."""
    return tuple(part for part in group.split(".") if part != "misc")


def write_data(folder: Path, per_group: tuple[int, int, int]) -> dict[str, Path]:
    """The by-date splits (train and validation from train, test from test), ``per_group`` posts
    of each group, written as JSONL with a list of labels per post."""
    splits, names = newsgroups_splits(newsgroups_pkz(), per_group)
    paths = {}
    for split, frame in splits.items():
        paths[split] = folder / f"{SPLIT_FILES[split]}.jsonl"
        labels = [name_labels(names[i]) for i in frame["Label"]]
        write_labelled(paths[split], frame["Text"].tolist(), labels, label_column="labels")
    return paths


def baseline(paths: dict[str, Path]) -> dict:
    """TF-IDF + one-vs-rest logistic regression; C and one threshold for every label chosen by
    validation micro-F1, then measured on test once."""
    data = {name: read_labelled(path) for name, path in paths.items()}
    labels = LabelMap.from_labels(data["train"].labels, multi_label=True)
    truth = {name: labels.targets(d.labels, d.source).astype(int) for name, d in data.items()}
    began = time.perf_counter()
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2))
    features = {"train": vectorizer.fit_transform(data["train"].texts)}
    features |= {name: vectorizer.transform(data[name].texts) for name in ("validation", "test")}
    best = None
    for c in (1.0, 10.0, 100.0):
        model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000))
        model.fit(features["train"], truth["train"])
        p = model.predict_proba(features["validation"])
        for threshold in np.arange(0.1, 0.7, 0.05):
            score = f1_score(truth["validation"], p >= threshold, average="micro")
            if best is None or score > best[0]:
                best = (score, c, float(threshold), model)
    _, c, threshold, model = best
    probabilities = model.predict_proba(features["test"])
    measured = compute_metrics(truth["test"], probabilities, labels.names, threshold)
    return {
        "C": c,
        "threshold": round(threshold, 2),
        "seconds": round(time.perf_counter() - began, 1),
        "subset_accuracy": measured["accuracy"],
        **{k: measured[k] for k in ("hamming_loss", "micro_f1", "macro_f1")},
    }


def choose(paths: dict[str, Path], work: Path, out: Path) -> None:
    """Each candidate's validation figures (thresholds chosen on that split too, so they are
    optimistic, alike for all), written to ``multilabel-choice.md``; the test split is not
    read."""
    data = [f"--{SPLIT_FILES[n]}={p}" for n, p in paths.items() if n != "test"]
    lines = [
        "Candidates on the validation split (thresholds chosen on it too), test unread.",
        "",
        "| options beside the exportable ones | subset accuracy | Hamming loss | micro F1 | "
        "macro F1 | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, options in enumerate(CANDIDATES):
        began = time.perf_counter()
        run("train", *data, *EXPORTABLE, *options, f"--out={work / f'candidate-{i}'}")
        seconds = time.perf_counter() - began
        m = json.loads((work / f"candidate-{i}" / "metrics.json").read_text())["validation"]
        lines.append(
            f"| {' '.join(options) or '(defaults)'} | {m['accuracy']:.4f} | "
            f"{m['hamming_loss']:.4f} | {m['micro_f1']:.4f} | {m['macro_f1']:.4f} | "
            f"{seconds:.0f} |"
        )
        print(lines[-1], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "multilabel-choice.md", "\n".join(lines) + "\n")


def served(run_dir: Path, texts: list[str]) -> tuple[list[dict], float]:
    """The answers of ``gptclf serve`` on ``texts`` over HTTP, and the seconds they took."""
    command = [sys.executable, "-m", "gptclf", "serve", str(run_dir), "--port=8765"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get("http://127.0.0.1:8765/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        began = time.perf_counter()
        answers = []
        for start in range(0, len(texts), 16):
            body = {"texts": texts[start : start + 16]}
            reply = httpx.post("http://127.0.0.1:8765/v1/classify", json=body, timeout=120)
            reply.raise_for_status()
            answers += reply.json()["predictions"]
        return answers, time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-group", type=int, nargs=3, default=(30, 10, 20))
    parser.add_argument(
        "--compared", type=int, default=200, help="test posts the exported copies compute"
    )
    parser.add_argument(
        "--choose",
        action="store_true",
        help="train every candidate recipe and compare them on the validation split only",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        paths = write_data(work, tuple(args.per_group))
        if args.choose:
            choose(paths, work, args.out)
            return
        trained, hf, back, onnx = (work / n for n in ("run", "hf", "back", "onnx"))
        data = [f"--{SPLIT_FILES[n]}={p}" for n, p in paths.items()]
        began = time.perf_counter()
        run("train", *data, f"--out={trained}", *RECIPE)
        train_seconds = time.perf_counter() - began
        metrics = json.loads((trained / "metrics.json").read_text())
        evaluated = json.loads(run("eval", str(trained), "--json"))
        tfidf = baseline(paths)
        classifier = Classifier.from_pretrained(trained)
        sizes = {name: len(read_labelled(path).texts) for name, path in paths.items()}
        texts = read_labelled(paths["test"]).texts[: args.compared]
        ours = classifier.predict_proba(texts)
        decided = [p.labels for p in classifier.predict(texts)]
        answers, serve_seconds = served(trained, texts[:32])
        run("export", str(trained), "--format=hf", f"--out={hf}")
        run("import", str(hf), f"--out={back}")
        run("export", str(trained), "--format=onnx", f"--out={onnx}")
        names = classifier.labels.names
        copies = {
            "transformers pipeline (export hf)": pipeline_probabilities(hf, texts, names),
            "gptclf import of the export": Classifier.from_pretrained(back).predict_proba(texts),
            "ONNX Runtime (export onnx, fp32)": onnx_probabilities(onnx, classifier, texts),
        }
        thresholds = np.asarray(classifier.config.decision_rule.threshold)
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(
            trained / "eval" / "test_precision_recall.png",
            args.out / "multilabel-precision-recall.png",
        )
    test = metrics["test"]
    results = {
        "sizes": sizes,
        "per_group": list(args.per_group),
        "labels": list(names),
        "train_seconds": round(train_seconds, 1),
        "test": {k: test[k] for k in ("n", "accuracy", "hamming_loss", "micro_f1", "macro_f1")},
        "test_ece": test["ece"],
        "per_label": test["per_class"],
        "thresholds": thresholds.tolist(),
        "eval_equals_training": all(evaluated[k] == test[k] for k in ("micro_f1", "n_errors")),
        "tfidf_ovr_baseline": tfidf,
        "served": {
            "texts": len(answers),
            "seconds": round(serve_seconds, 2),
            "same_label_sets": sum(
                set(a["labels"]) == set(d) for a, d in zip(answers, decided, strict=False)
            ),
            "example": answers[0],
        },
        "copies": [
            {
                "copy": name,
                "max_abs_probability_diff": float(np.abs(theirs - ours).max()),
                "same_label_sets": int(
                    ((theirs >= thresholds) == (ours >= thresholds)).all(1).sum()
                ),
            }
            for name, theirs in copies.items()
        ],
    }
    lines = report(results, len(texts))
    write_text_atomic(args.out / "multilabel.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(args.out / "multilabel.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def report(results: dict, n_test: int) -> list[str]:
    test, tfidf = results["test"], results["tfidf_ovr_baseline"]
    sizes = "/".join(str(n) for n in results["sizes"].values())
    return [
        f"20 Newsgroups, labels = newsgroup name parts ({len(results['labels'])} labels), "
        f"{sizes} posts (train/validation/test, by date); "
        f"SmolLM2-135M, `{' '.join(RECIPE)}`; training {results['train_seconds']:.0f} s.",
        "",
        "| test, once | subset accuracy | Hamming loss | micro F1 | macro F1 |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| gptclf | {test['accuracy']:.4f} | {test['hamming_loss']:.4f} | "
        f"{test['micro_f1']:.4f} | {test['macro_f1']:.4f} |",
        f"| TF-IDF one-vs-rest LR (C={tfidf['C']:g}, threshold {tfidf['threshold']}) | "
        f"{tfidf['subset_accuracy']:.4f} | {tfidf['hamming_loss']:.4f} | "
        f"{tfidf['micro_f1']:.4f} | {tfidf['macro_f1']:.4f} |",
        "",
        "| label | precision | recall | F1 | ROC-AUC | PR-AUC | support | threshold |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
            f"{m['roc_auc']:.3f} | {m['pr_auc']:.3f} | {m['support']} | {t:.3f} |"
            for (name, m), t in zip(
                results["per_label"].items(), results["thresholds"], strict=True
            )
        ),
        "",
        f"Served by `gptclf serve`: {results['served']['texts']} test posts in "
        f"{results['served']['seconds']:.1f} s over HTTP, {results['served']['same_label_sets']} "
        "with the label sets of `Classifier.predict`.",
        "",
        "| copy | max abs probability diff | same label sets |",
        "| --- | --- | --- |",
        *(
            f"| {r['copy']} | {r['max_abs_probability_diff']:.1e} | "
            f"{r['same_label_sets']}/{n_test} |"
            for r in results["copies"]
        ),
    ]


if __name__ == "__main__":
    main()
