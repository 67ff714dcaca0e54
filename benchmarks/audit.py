"""The label audit on purposely damaged data: 5% of the SMS book split's training labels flipped
(ham <-> spam, rows drawn under a seed), then ``gptclf data audit`` with the finetuned model's
out-of-fold probabilities (default recipe) and with the TF-IDF baseline's. Reports how many of
the flipped rows each ranks in its top 10%, how many confident learning flags and how many of
those were flipped, and the time each took.

    .venv/bin/python benchmarks/audit.py [--out benchmarks/results] [--seed 0]

Writes ``audit.json`` and ``audit.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import run

from gptclf.atomic import write_text_atomic
from gptclf.data.readers import read_labelled

FLIPPED_SHARE = 0.05
TOP_SHARE = 0.10


def flipped_copy(train: Path, out: Path, seed: int) -> set[int]:
    """``train`` with the labels of 5% of its rows swapped, written to ``out``; the row numbers
    (as the audit reports them) of the rows flipped."""
    table = pd.read_csv(train, dtype=str, keep_default_na=False)
    labels = sorted(set(table["Label"]))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(table), size=round(FLIPPED_SHARE * len(table)), replace=False)
    other = {labels[0]: labels[1], labels[1]: labels[0]}
    table.loc[chosen, "Label"] = table.loc[chosen, "Label"].map(other)
    table.to_csv(out, index=False, lineterminator="\n")
    rows = read_labelled(out).rows
    return {rows[i] for i in chosen}


def audited(path: Path, by: str, flipped: set[int], work: Path) -> dict:
    ranking = work / f"ranking-{by}.csv"
    began = time.perf_counter()
    run("data", "audit", str(path), f"--by={by}", f"--out={ranking}")
    seconds = time.perf_counter() - began
    with ranking.open(newline="", encoding="utf-8") as file:
        records = list(csv.DictReader(file))
    top = records[: math.ceil(TOP_SHARE * len(records))]
    flagged = [r for r in records if r["flagged"] == "True"]
    return {
        "seconds": round(seconds, 1),
        "flipped_in_top_10pct": sum(int(r["row"]) in flipped for r in top),
        "top_10pct_rows": len(top),
        "flagged": len(flagged),
        "flagged_flipped": sum(int(r["row"]) in flipped for r in flagged),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        run("data", "sms-spam", f"--out={work / 'sms'}")
        damaged = work / "train-flipped.csv"
        flipped = flipped_copy(work / "sms" / "train.csv", damaged, args.seed)
        results = {
            "rows": len(read_labelled(damaged).rows),
            "flipped": len(flipped),
            "seed": args.seed,
            "by": {by: audited(damaged, by, flipped, work) for by in ("model", "baseline")},
        }
    lines = [
        f"SMS book split, training part ({results['rows']} rows), {results['flipped']} labels "
        f"flipped (seed {args.seed}); `gptclf data audit` with 5-fold out-of-fold probabilities.",
        "",
        "| probabilities of | flipped in top 10% | flagged | of them flipped | seconds |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {by} | {r['flipped_in_top_10pct']} of {results['flipped']} "
            f"({r['flipped_in_top_10pct'] / results['flipped']:.0%}) | {r['flagged']} | "
            f"{r['flagged_flipped']} | {r['seconds']} |"
            for by, r in results["by"].items()
        ),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "audit.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(args.out / "audit.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
