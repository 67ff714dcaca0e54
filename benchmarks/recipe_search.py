"""How the default recipe was chosen: stratified k-fold cross-validation over the SMS book
split's training and validation messages together (1,194). The test split is never read.

    .venv/bin/python benchmarks/recipe_search.py [--model smollm2-135m] [--folds 5]
        [--out results.jsonl] [--candidates candidates.json] [--template T] [--deepest 4]

The 149 validation messages alone cannot tell good settings apart: many reach 100%. Every
candidate is therefore trained once per fold on the other folds and measured on the held-out fold
after its last epoch; candidates are ranked by mean held-out accuracy, then mean held-out loss.
The frozen bottom blocks are run once and shared by every candidate, so all must use the same
template, and none may train more than ``--deepest`` top blocks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn

from gptclf.data.batching import TokenDataset
from gptclf.data.dataset import DataSource
from gptclf.recipe import recipe
from gptclf.run.folder import RunDir
from gptclf.trainable import set_trainable, trainable_blocks
from gptclf.training.log import Logger
from gptclf.training.prepare import Prepared, prepare
from gptclf.training.train import build_trainer

CANDIDATES = [
    {"trainable": "head", "lr": 1e-3, "epochs": 10, "schedule": "constant", "warmup": 0.0},
    {"trainable": "last-block", "lr": 5e-4, "epochs": 4, "schedule": "constant", "warmup": 0.0},
    {"trainable": "last-block", "lr": 2e-4, "epochs": 8},
    {"trainable": "last-block", "lr": 5e-4, "epochs": 4},
    {"trainable": "last-block", "lr": 5e-4, "epochs": 8},
    {"trainable": "last-block", "lr": 5e-4, "epochs": 8, "batch_size": 32},
    {"trainable": "last-block", "lr": 1e-3, "epochs": 8, "batch_size": 32},
    {"trainable": "last-blocks:2", "lr": 2e-4, "epochs": 6},
]


def states_from(prepared: Prepared, start: int, stop: int) -> dict[str, TokenDataset]:
    """Datasets of hidden states entering block ``stop``, from those entering ``start``."""
    model = prepared.classifier.language_model
    out = {}
    with torch.inference_mode():
        for name, data in prepared.datasets.items():
            states = [model.run_blocks(x.unsqueeze(0), start=start, stop=stop)[0] for x in data.ids]
            out[name] = TokenDataset(states, data.labels)
    return out


def pooled(datasets: dict[str, TokenDataset]) -> TokenDataset:
    """Training and validation examples together; the test split stays out."""
    train, val = datasets["train"], datasets["validation"]
    return TokenDataset(list(train.ids) + list(val.ids), list(train.labels) + list(val.labels))


def subset(data: TokenDataset, indices) -> TokenDataset:
    return TokenDataset([data.ids[i] for i in indices], [data.labels[i] for i in indices])


def cross_validate(candidate: dict, args, prepared: Prepared, pools: dict, top: dict) -> dict:
    """Train ``candidate`` on each fold's complement; its held-out metrics per epoch."""
    model = prepared.classifier.language_model
    config = recipe(model=args.model, template=args.template, keep="last", **candidate)
    boundary = len(model.trf_blocks) - trainable_blocks(config.trainable, len(model.trf_blocks))
    if boundary not in pools:
        pools[boundary] = pooled(states_from(prepared, prepared.start_block, boundary))
    data = pools[boundary]
    folds = StratifiedKFold(args.folds, shuffle=True, random_state=config.seed)
    curves, errors, began = [], 0, time.perf_counter()
    for train_index, held_out_index in folds.split(data.labels, data.labels):
        with torch.no_grad():
            for name, value in top.items():
                model.get_parameter(name).copy_(value)
        torch.manual_seed(config.seed)
        model.out_head = nn.Linear(model.cfg.emb_dim, model.out_head.out_features)
        prepared.classifier.pooling = config.pooling
        set_trainable(prepared.classifier, config.trainable)
        datasets = {"train": subset(data, train_index), "validation": subset(data, held_out_index)}
        run = replace(prepared, datasets=datasets, start_block=boundary)
        trainer = build_trainer(config, run, quiet=True)
        trainer.run(Logger(None, True, trainer.state))
        curves.append([r for r in trainer.state.records if r["kind"] == "validation"])
        errors += round((1 - curves[-1][-1]["accuracy"]) * len(held_out_index))
    per_epoch = [
        {
            "epoch": epoch + 1,
            "accuracy": round(statistics.mean(c[epoch]["accuracy"] for c in curves), 4),
            "loss": round(statistics.mean(c[epoch]["loss"] for c in curves), 4),
        }
        for epoch in range(config.epochs)
    ]
    final = [c[-1]["accuracy"] for c in curves]
    return {
        "settings": candidate,
        "template": args.template,
        "cv_accuracy": per_epoch[-1]["accuracy"],
        "cv_accuracy_std": round(statistics.stdev(final), 4),
        "cv_loss": per_epoch[-1]["loss"],
        "cv_errors": errors,
        "per_epoch": per_epoch,
        "seconds": round(time.perf_counter() - began, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("recipe_search.jsonl"))
    parser.add_argument("--candidates", type=Path, help="JSON list of settings to try")
    parser.add_argument("--template", help="text around every message, with a {text} slot")
    parser.add_argument(
        "--deepest", type=int, default=4, help="most top blocks any candidate trains"
    )
    args = parser.parse_args()
    candidates = json.loads(args.candidates.read_text()) if args.candidates else CANDIDATES
    args.work = Path(tempfile.mkdtemp())
    base_config = recipe(
        model=args.model, trainable=f"last-blocks:{args.deepest}", template=args.template
    )
    start = time.perf_counter()
    prepared = prepare(base_config, DataSource(dataset="sms-spam"), RunDir(args.work / "base"))
    print(
        f"prepared (frozen prefix to block {prepared.start_block}) in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    model = prepared.classifier.language_model
    top = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    pools = {prepared.start_block: pooled(prepared.datasets)}
    results = []
    for candidate in candidates:
        result = cross_validate(candidate, args, prepared, pools, top)
        results.append(result)
        print(json.dumps(result), flush=True)
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
    results.sort(key=lambda r: (-r["cv_accuracy"], r["cv_loss"]))
    print("\nranked by mean held-out accuracy, then loss:")
    for r in results:
        print(
            f"{r['cv_accuracy']:.2%} ±{r['cv_accuracy_std']:.2%}  {r['cv_errors']} errors  "
            f"loss {r['cv_loss']:.4f}  {r['settings']}"
        )


if __name__ == "__main__":
    main()
