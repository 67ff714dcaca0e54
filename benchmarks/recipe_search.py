"""How the default recipe was chosen: train candidate settings on the SMS book split and rank
them by VALIDATION accuracy only (the test split is reported for the record, never used to
choose). The frozen bottom blocks are run once and shared by every candidate.

    .venv/bin/python benchmarks/recipe_search.py [--model smollm2-135m] [--out results.jsonl]
        [--candidates candidates.json]

Candidates are ranked by validation accuracy, then validation loss (accuracy saturates on the
149 validation messages). Every candidate shares the prepared data, so all must use the same
template, and none may train more than ``--deepest`` top blocks.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gptclf.classifier import set_trainable, trainable_blocks
from gptclf.data.batching import TokenDataset
from gptclf.data.dataset import DataSource
from gptclf.train import Logger, Trainer, config_from, prepare

CANDIDATES = [
    {"trainable": "head", "lr": 1e-3, "epochs": 10},
    {"trainable": "last-block", "lr": 5e-5, "epochs": 5},
    {"trainable": "last-block", "lr": 2e-4, "epochs": 8},
    {"trainable": "last-block", "lr": 5e-4, "epochs": 8},
    {"trainable": "last-blocks:2", "lr": 2e-4, "epochs": 8},
    {"trainable": "last-blocks:4", "lr": 1e-4, "epochs": 8},
    {"trainable": "last-blocks:4", "lr": 2e-4, "epochs": 8},
    {"trainable": "last-block", "lr": 2e-4, "epochs": 8, "pooling": "mean"},
    {"trainable": "last-blocks:4", "lr": 2e-4, "epochs": 8, "pooling": "mean"},
]


def states_from(prepared, start: int, stop: int) -> dict[str, TokenDataset]:
    """Datasets of hidden states entering block ``stop``, from those entering ``start``."""
    model = prepared.classifier.model
    out = {}
    with torch.inference_mode():
        for name, data in prepared.datasets.items():
            states = [model.run_blocks(x.unsqueeze(0), start=start, stop=stop)[0] for x in data.ids]
            out[name] = TokenDataset(states, data.labels)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", type=Path, default=Path("recipe_search.jsonl"))
    parser.add_argument("--candidates", type=Path, help="JSON list of settings to try")
    parser.add_argument("--template", help="text around every message, with a {text} slot")
    parser.add_argument(
        "--deepest", type=int, default=4, help="most top blocks any candidate trains"
    )
    args = parser.parse_args()
    candidates = json.loads(args.candidates.read_text()) if args.candidates else CANDIDATES
    work = Path(tempfile.mkdtemp())
    base_config = config_from(
        None, model=args.model, trainable=f"last-blocks:{args.deepest}", template=args.template
    )
    start = time.perf_counter()
    prepared = prepare(base_config, DataSource(dataset="sms-spam"), work / "base")
    print(
        f"prepared (frozen prefix to block {prepared.start_block}) in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    model = prepared.classifier.model
    top = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    boundaries = {prepared.start_block: prepared.datasets}
    for i, candidate in enumerate(candidates):
        config = config_from(None, model=args.model, template=args.template, **candidate)
        with torch.no_grad():
            for name, value in top.items():
                model.get_parameter(name).copy_(value)
        torch.manual_seed(config.seed)
        model.out_head = nn.Linear(model.cfg.emb_dim, model.out_head.out_features)
        prepared.classifier.pooling = config.pooling
        set_trainable(prepared.classifier, config.trainable)
        boundary = len(model.trf_blocks) - trainable_blocks(config.trainable, len(model.trf_blocks))
        if boundary not in boundaries:
            boundaries[boundary] = states_from(prepared, prepared.start_block, boundary)
        run = replace(prepared, datasets=boundaries[boundary], start_block=boundary)
        run_dir = work / f"run{i}"
        run_dir.mkdir()
        trainer = Trainer(config, run, run_dir, quiet=True)
        began = time.perf_counter()
        trainer.run(Logger(run_dir, True, trainer.state))
        result = {
            **candidate,
            "template": args.template,
            "best_epoch": trainer.state.best_epoch,
            "seconds": round(time.perf_counter() - began, 1),
        }
        for split in ("validation", "test"):
            data = run.datasets[split]
            logits, labels = trainer.logits(data), torch.tensor(data.labels)
            result[f"{split}_accuracy"] = round(
                float((logits.argmax(-1) == labels).float().mean()), 4
            )
            result[f"{split}_loss"] = round(float(F.cross_entropy(logits, labels)), 4)
        print(json.dumps(result), flush=True)
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
