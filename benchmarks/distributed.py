"""Wall time of ``gptclf train`` and ``gptclf predict --input`` in one process against two
processes under torchrun on this machine, with a small random GPT-2 on synthetic topic texts.

    .venv/bin/python benchmarks/distributed.py [--train-rows 600] [--predict-rows 6000]
        [--epochs 3] [--width 256] [--layers 6] [--trainable last-blocks:2]

The one process uses torch's default thread count; torchrun gives each of its processes one
thread (``OMP_NUM_THREADS=1``) unless the variable is set. Times include starting Python and
loading the model, as a user of the command sees them. Both trainings use the same seed and
global batch, so their test accuracy is printed too: it should be the same.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

from gptclf.data.readers import write_labelled

TOPICS = {
    "sports": ["goal", "match", "team", "coach", "league", "score", "season", "striker"],
    "politics": ["vote", "senate", "law", "party", "election", "minister", "budget", "policy"],
    "tech": ["chip", "code", "cloud", "robot", "software", "laptop", "network", "startup"],
}
FILLER = ["the", "a", "of", "to", "in", "and", "on", "for", "with", "at", "by", "from", "about"]


def topic_texts(n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` messages of 8 to 40 words, mostly filler, whose topic words give the class away."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = list(TOPICS)[i % len(TOPICS)]
        length = rng.randint(8, 40)
        words = [rng.choice(TOPICS[label] if rng.random() < 0.3 else FILLER) for _ in range(length)]
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def make_inputs(folder: Path, args: argparse.Namespace) -> tuple[Path, list[str], Path]:
    """The base model folder, the data options of ``train``, and the file to classify."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_positions=128,
        n_embd=args.width,
        n_layer=args.layers,
        n_head=4,
        resid_pdrop=0,
        embd_pdrop=0,
        attn_pdrop=0,
    )
    model = folder / "model"
    transformers.GPT2LMHeadModel(config).save_pretrained(model)
    sizes = {"train": args.train_rows, "val": args.train_rows // 5, "test": args.train_rows // 5}
    for seed, (name, n) in enumerate(sizes.items()):
        write_labelled(folder / f"{name}.csv", *topic_texts(n, seed))
    texts, _ = topic_texts(args.predict_rows, seed=9)
    write_labelled(folder / "predict.csv", texts, ["?"] * len(texts))
    return model, [f"--{name}={folder / name}.csv" for name in sizes], folder / "predict.csv"


def timed(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - began


def launcher(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "gptclf"]
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*run, f"--nproc-per-node={processes}", "-m", "gptclf"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=600)
    parser.add_argument("--predict-rows", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--trainable", default="last-blocks:2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gptclf-distributed-") as work:
        compare(Path(work), args)


def compare(folder: Path, args: argparse.Namespace) -> None:
    """Train and predict with 1 and with 2 processes; print the times and test accuracies."""
    model, data, to_classify = make_inputs(folder, args)
    train = [
        "train",
        *data,
        f"--model={model}",
        f"--trainable={args.trainable}",
        f"--epochs={args.epochs}",
        "--precision=fp32",
        "--quiet",
    ]
    print(f"{args.train_rows} training texts, {args.epochs} epochs, {args.trainable} of a")
    print(f"{args.layers}-block GPT-2 of width {args.width}; {args.predict_rows} rows to classify")
    print(f"{'':<10}{'train s':>10}{'predict s':>11}{'test accuracy':>15}")
    for processes in (1, 2):
        run_dir = folder / f"run-{processes}"
        train_s = timed([*launcher(processes), *train, f"--out={run_dir}"])
        predict = ["predict", str(run_dir), f"--input={to_classify}"]
        predict_s = timed([*launcher(processes), *predict, f"--output={run_dir}/out.csv"])
        accuracy = json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"]
        label = "1 process" if processes == 1 else f"{processes} processes"
        print(f"{label:<10}{train_s:>10.1f}{predict_s:>11.1f}{accuracy:>15.4f}")


if __name__ == "__main__":
    main()
