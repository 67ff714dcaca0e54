"""The export round trip on a real run: the offline default model finetuned on the SMS book split
with a recipe Hugging Face can express, exported (``gptclf export --format hf``) and run by
``transformers.pipeline``, imported back (``gptclf import``) and evaluated, and exported as an
ONNX graph run by ONNX Runtime. Reports how far each copy's probabilities on the test split are
from gptclf's, and the test metrics of the run and of its imported copy.

    .venv/bin/python benchmarks/interop.py [--out benchmarks/results]

Writes ``interop.json`` and ``interop.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import onnx_probabilities, pipeline_probabilities, run

from gptclf.atomic import write_text_atomic
from gptclf.data.readers import read_labelled
from gptclf.data.sms_spam import prepare_sms_spam
from gptclf.predict import Classifier

EXPORTABLE = ["--pooling=last-token", "--ensemble=none", "--no-head-bias", "--quiet"]
METRICS = ("accuracy", "macro_f1", "roc_auc", "confusion_matrix")


def evaluated(run_dir: Path, test: Path) -> dict:
    printed = run("eval", str(run_dir), f"--data={test}", "--json")
    return {k: v for k, v in json.loads(printed).items() if k in METRICS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    splits = prepare_sms_spam("book")
    texts = read_labelled(splits["test"]).texts
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        trained, hf, back, onnx = (work / n for n in ("run", "hf", "back", "onnx"))
        start = time.perf_counter()
        run("train", "--dataset=sms-spam", f"--out={trained}", *EXPORTABLE)
        train_seconds = time.perf_counter() - start
        run("export", str(trained), "--format=hf", f"--out={hf}")
        run("import", str(hf), f"--out={back}")
        run("export", str(trained), "--format=onnx", f"--out={onnx}")
        classifier = Classifier.from_pretrained(trained)
        ours = classifier.predict_proba(texts)
        copies = {
            "transformers pipeline (export hf)": pipeline_probabilities(
                hf, texts, classifier.labels.names
            ),
            "gptclf import of the export": Classifier.from_pretrained(back).predict_proba(texts),
            "ONNX Runtime (export onnx)": onnx_probabilities(onnx, classifier, texts),
        }
        metrics = {
            "run": evaluated(trained, splits["test"]),
            "imported": evaluated(back, splits["test"]),
        }
    rows = [
        {
            "copy": name,
            "max_abs_probability_diff": float(np.abs(theirs - ours).max()),
            "same_decisions": int((theirs.argmax(1) == ours.argmax(1)).sum()),
        }
        for name, theirs in copies.items()
    ]
    results = {"n_test": len(texts), "train_seconds": round(train_seconds, 1), "copies": rows}
    results["metrics"] = metrics
    lines = [
        f"SMS book split, {len(texts)} test messages; training took {train_seconds:.0f} s.",
        "",
        "| copy | max abs probability diff | same decisions |",
        "| --- | --- | --- |",
        *(
            f"| {r['copy']} | {r['max_abs_probability_diff']:.1e} | "
            f"{r['same_decisions']}/{len(texts)} |"
            for r in rows
        ),
        "",
        "| test metrics | accuracy | macro F1 | ROC AUC | confusion matrix |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {who} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['roc_auc']:.4f} | "
            f"{m['confusion_matrix']} |"
            for who, m in metrics.items()
        ),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "interop.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(args.out / "interop.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
