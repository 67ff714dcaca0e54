"""What a training run records: progress to the terminal and every figure to ``metrics.jsonl``."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from gptclf.atomic import write_text_atomic
from gptclf.training.trackers import Tracker


@dataclass
class Record:
    kind: str  # "train" or "validation"
    epoch: float
    step: int
    examples_seen: int
    loss: float
    accuracy: float | None = None
    macro_f1: float | None = None


@dataclass
class LoopState:
    """Everything that evolves during training besides the weights and optimizer."""

    epochs_done: int = 0
    step: int = 0
    examples_seen: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    records: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0


class Logger:
    """Progress to the terminal (unless quiet) and every figure to ``path`` (None in the
    processes besides the main one: their figures are kept in the state only) and to
    ``tracker`` (``--report-to``; a resumed run's figures so far first)."""

    def __init__(
        self, path: Path | None, quiet: bool, state: LoopState, tracker: Tracker | None = None
    ):
        self.path = path
        self.quiet = quiet
        self.state = state
        self.tracker = tracker
        if self.path is not None:
            write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in state.records))
        if tracker is not None:
            for entry in state.records:
                tracker.record(entry)

    def say(self, message: str) -> None:
        if not self.quiet:
            tqdm.write(message, file=sys.stdout)

    def record(self, record: Record) -> Record:
        entry = {k: v for k, v in asdict(record).items() if v is not None}
        self.state.records.append(entry)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        if self.tracker is not None:
            self.tracker.record(entry)
        return record
