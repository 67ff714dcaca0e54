"""What each of gptclf's training optimisations gains, added one at a time, on the offline default
model (smollm2-135m) with the default recipe and the SMS book split, all in one run.

    .venv/bin/python benchmarks/ablation.py [--out benchmarks/results] [--measured-epochs 1]

Steps, each on top of the one before, each in its own process:
1. the book's mechanics: every text padded to the longest training text, random batches, float32,
   no cache, PyTorch's own attention kernel, the unfused AdamW step, every position through the
   last block;
2. every batch padded to its own longest text;
3. length bucketing: batches of similar lengths;
4. bfloat16 autocast;
5. the frozen-prefix cache: the frozen blocks run once, the epochs train the top on their output;
6. the plain attention kernel for short sequences under autograd and the fused AdamW step;
7. the last block computes the one position the classifier reads: gptclf's default.
Then gptclf's default in float32, to see that bfloat16 costs no accuracy.

Each step measures the matmul peak of its precision first; where the prefix is cached, the
epochs' share of it counts the FLOPs of the linear layers that train (as ``speed.py`` does).
Uncached steps cost the same every epoch: they run ``--measured-epochs`` epochs and their loop
time is scaled to the recipe's count (their test accuracy is then not reported). Cached steps run
every epoch. Evaluation batches are sorted by length in every step. Writes ``ablation.md`` and
``ablation.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from speed import FlopCounter, full_count, in_child, peak_rss_mb, peaks_here

MODEL = "smollm2-135m"
STEPS = [
    {
        "change": "the book's mechanics: padded to the longest training text, random batches, fp32",
        "config": {"pad_to": "longest", "precision": "fp32", "cache": False},
        "random_batches": True,
        "stock_kernels": True,
        "whole_last_block": True,
    },
    {
        "change": "+ each batch padded to its longest text",
        "config": {"precision": "fp32", "cache": False},
        "random_batches": True,
        "stock_kernels": True,
        "whole_last_block": True,
    },
    {
        "change": "+ length bucketing",
        "config": {"precision": "fp32", "cache": False},
        "stock_kernels": True,
        "whole_last_block": True,
    },
    {
        "change": "+ bfloat16 autocast",
        "config": {"cache": False},
        "stock_kernels": True,
        "whole_last_block": True,
    },
    {
        "change": "+ frozen-prefix cache",
        "config": {},
        "stock_kernels": True,
        "whole_last_block": True,
    },
    {"change": "+ plain attention kernel, fused AdamW", "config": {}, "whole_last_block": True},
    {"change": "+ last block computes the read position only (gptclf's default)", "config": {}},
    {"change": "gptclf's default in float32 (accuracy check)", "config": {"precision": "fp32"}},
]


def phase_step(spec: dict, work: Path) -> dict:
    from gptclf.data.dataset import DataSource
    from gptclf.precision import resolve_precision
    from gptclf.recipe import recipe
    from gptclf.training.train import Mechanics, train

    step = STEPS[spec["step"]]
    mechanics = Mechanics(
        bucketing=not step.get("random_batches", False),
        fused_adamw=not step.get("stock_kernels", False),
        tuned_kernel=not step.get("stock_kernels", False),
        read_positions_only=not step.get("whole_last_block", False),
    )
    config = recipe(model=MODEL, epochs=spec["epochs"], **step["config"])
    precision = resolve_precision(config.precision)
    peak = peaks_here()[precision]
    counter = FlopCounter()
    began = time.perf_counter()
    source = DataSource(dataset="sms-spam")
    metrics = train(config, source, Path(spec["run_dir"]), quiet=True, mechanics=mechanics)
    cached = metrics["frozen_prefix_blocks"] > 0  # then the epochs run nothing but what trains
    epochs_gflops = counter.trained_with_grad / metrics["train_seconds"] / 1e9
    return {
        "wall_s": time.perf_counter() - began,
        "precision": precision,
        "peak": peak,
        "epochs_share": epochs_gflops / peak if cached else None,
        "loop_s": metrics["train_seconds"],
        "prepare_s": metrics["prepare_seconds"],
        "cached_blocks": metrics["frozen_prefix_blocks"],
        "test_accuracy": metrics["test"]["accuracy"],
        "peak_rss_mb": peak_rss_mb(),
    }


def run_all(measured_epochs: int, work: Path) -> dict:
    from gptclf.recipe import recipe

    epochs = recipe().epochs
    rows = []
    for index, step in enumerate(STEPS):
        cached = recipe(model=MODEL, **step["config"]).caches_prefix()
        measured = epochs if cached else min(epochs, measured_epochs)
        spec = {"step": index, "epochs": measured, "run_dir": str(work / f"step{index}")}
        result = full_count(in_child("step", spec, work, script=__file__), measured, epochs)
        rows.append({**result, "change": step["change"], "epochs": epochs})
    return {"model": MODEL, "threads": torch.get_num_threads(), "steps": rows}


def table(results: dict) -> str:
    steps = results["steps"]
    lines = [
        f"{results['model']}, default recipe, SMS book split, {results['threads']} threads; each "
        "step adds one optimisation to the step before.",
        "",
        "| step | change | epochs (measured) | prepare | per epoch | epochs' share of the matmul "
        "peak | wall | faster than the step before | faster than step 1 | test acc | peak RSS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for number, row in enumerate(steps, 1):
        before = steps[number - 2] if 1 < number < len(steps) else None
        accuracy = "—" if row["test_accuracy"] is None else f"{row['test_accuracy']:.2%}"
        share = "—"
        if row["epochs_share"] is not None:
            share = f"{row['epochs_share']:.0%} of {row['precision']} ({row['peak']:.0f} GFLOP/s)"
        lines.append(
            f"| {number} | {row['change']} | {row['epochs']} ({row['epochs_measured']}) | "
            f"{row['prepare_s']:.0f} s | {row['loop_s'] / row['epochs']:.1f} s | " + share + " | "
            f"{row['wall_s']:.0f} s | "
            + (f"{before['wall_s'] / row['wall_s']:.2f}x" if before else "")
            + f" | {steps[0]['wall_s'] / row['wall_s']:.1f}x | {accuracy} | "
            f"{row['peak_rss_mb']:.0f} MB |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--measured-epochs",
        type=int,
        default=1,
        help="epochs run by the uncached steps, whose loop time is scaled to the full count",
    )
    parser.add_argument("--phase", choices=["step"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=json.loads, default={}, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase_step(args.spec, args.work)))
        return
    with tempfile.TemporaryDirectory() as work:
        results = run_all(args.measured_epochs, Path(work))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "ablation.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
