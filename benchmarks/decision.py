"""Thresholds and calibration on real data: the offline default model finetuned on the SMS book
split with the default recipe, its probabilities calibrated by a temperature fitted on the
validation split and spam decided by the threshold with the best precision at recall >= 0.99
there (``--calibrate temperature --decide precision@0.99``). Reports the threshold, what it gives
on validation and, once, on test (against the most probable class), and the calibration error and
Brier score before and after the temperature; copies the test split's reliability diagram and
precision-recall curve.

    .venv/bin/python benchmarks/decision.py [--out benchmarks/results]

Writes ``decision.json``, ``decision.md``, ``decision-reliability.png`` and
``decision-precision-recall.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from common import run

from gptclf.atomic import write_text_atomic

RULE = "precision@0.99"


def spam_figures(metrics: dict) -> dict:
    spam = metrics["per_class"]["spam"]
    keys = ("accuracy", "n_errors", "ece", "brier")
    return {"precision": spam["precision"], "recall": spam["recall"]} | {
        k: metrics[k] for k in keys
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        trained = Path(work, "run")
        options = [f"--decide={RULE}", "--calibrate=temperature", "--quiet"]
        run("train", "--dataset=sms-spam", f"--out={trained}", *options)
        recorded = json.loads((trained / "metrics.json").read_text())
        decided = json.loads(run("eval", str(trained), "--json"))
        args.out.mkdir(parents=True, exist_ok=True)
        for picture in ("reliability", "precision_recall"):
            name = f"decision-{picture.replace('_', '-')}.png"
            shutil.copyfile(trained / "eval" / f"test_{picture}.png", args.out / name)
        argmax = json.loads(run("eval", str(trained), "--json", "--threshold=0.5"))
    decision, calibration = recorded["decision"], recorded["calibration"]
    results = {
        "rule": RULE,
        "threshold": decision["threshold"],
        "temperature": calibration["temperature"],
        "validation": decision["on_validation"],
        "test_at_threshold": spam_figures(decided),
        "test_at_argmax": spam_figures(argmax),
        "calibration": {
            split: {"before": calibration["uncalibrated"][split]}
            | {"after": {k: recorded[split][k] for k in ("ece", "brier")}}
            for split in ("validation", "test")
        },
    }
    lines = [
        f"SMS book split, default recipe, `--calibrate temperature --decide {RULE}`: "
        f"temperature {results['temperature']:.3f}, threshold on p(spam) "
        f"{results['threshold']:.4g} (validation: precision "
        f"{results['validation']['precision']:.4f}, recall "
        f"{results['validation']['recall']:.4f}).",
        "",
        "| test split (300) | spam precision | spam recall | accuracy | errors |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {who} | {m['precision']:.4f} | {m['recall']:.4f} | {m['accuracy']:.4f} | "
            f"{m['n_errors']} |"
            for who, m in (
                ("threshold chosen on validation", results["test_at_threshold"]),
                ("most probable class (p >= 0.5)", results["test_at_argmax"]),
            )
        ),
        "",
        "| calibration | ECE before | ECE after | Brier before | Brier after |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {split} | {c['before']['ece']:.4f} | {c['after']['ece']:.4f} | "
            f"{c['before']['brier']:.4f} | {c['after']['brier']:.4f} |"
            for split, c in results["calibration"].items()
        ),
    ]
    write_text_atomic(args.out / "decision.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(args.out / "decision.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
