"""The leaderboard of a recipe search: every candidate's cross-validated figures, ranked, as
JSON and as a Markdown table, beside the winner's final run."""

from __future__ import annotations

import json
from dataclasses import dataclass

from gptclf.atomic import write_text_atomic
from gptclf.recipe import TrainConfig
from gptclf.run.folder import RunDir
from gptclf.tune.crossval import Measured
from gptclf.tune.space import Candidate

LEADERBOARD = "leaderboard"


@dataclass
class Entry:
    """A candidate, its recipe, and its figures (None where the budget left it out)."""

    candidate: Candidate
    config: TrainConfig
    measured: Measured | None
    status: str

    def rank_key(self) -> tuple[float, float]:
        """Higher cross-validated accuracy first, then lower log loss."""
        return (-self.measured.metrics["accuracy"], self.measured.log_loss)

    def row(self) -> dict:
        row = {"candidate": self.candidate.name, "changes": self.candidate.changes}
        if self.measured is not None:
            metrics = self.measured.metrics
            row |= {
                "cv_accuracy": round(metrics["accuracy"], 4),
                "cv_macro_f1": round(metrics["macro_f1"], 4),
                "cv_mcc": None if metrics["mcc"] is None else round(metrics["mcc"], 4),
                "cv_errors": metrics["n_errors"],
                "cv_log_loss": round(self.measured.log_loss, 4),
                "seconds": self.measured.seconds,
            }
        return row | {"status": self.status}


def write_leaderboard(
    run_dir: RunDir, entries: list[Entry], winner: Entry, search: dict, results: dict
) -> dict:
    """``leaderboard.json`` and ``leaderboard.md`` in the run folder; returns the JSON's
    content."""
    measured = sorted((e for e in entries if e.measured), key=Entry.rank_key)
    ranked = [e.row() for e in measured] + [e.row() for e in entries if not e.measured]
    final = {name: results[name] for name in ("test",) if name in results}
    board = {"search": search, "winner": winner.candidate.name, "ranked": ranked, **final}
    write_text_atomic(run_dir.root / f"{LEADERBOARD}.json", json.dumps(board, indent=2))
    write_text_atomic(run_dir.root / f"{LEADERBOARD}.md", _markdown(board))
    return board


def _markdown(board: dict) -> str:
    search = board["search"]
    lines = [
        "# Recipe search",
        "",
        f"{search['folds']}-fold stratified cross-validation on {search['texts']} texts "
        "(train + validation); the test split was not read until the winner's final run.",
        f"Search {search['search_seconds']:.0f} s of a {search['budget_seconds']:.0f} s budget "
        f"(frozen prefix {search['prefix_seconds']:.0f} s, shared by every candidate and fold).",
        "",
        "| rank | candidate | CV accuracy | CV macro-F1 | CV errors | CV log loss | seconds |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for rank, row in enumerate(board["ranked"], start=1):
        if "cv_accuracy" not in row:
            lines.append(f"| | {row['candidate']} | {row['status']} | | | | |")
            continue
        lines.append(
            f"| {rank} | {row['candidate']} | {row['cv_accuracy']:.4f} | {row['cv_macro_f1']:.4f}"
            f" | {row['cv_errors']} | {row['cv_log_loss']:.4f} | {row['seconds']:.0f} |"
        )
    baseline = search["baseline_alone"]
    lines += [
        "",
        f"The TF-IDF baseline alone, on the same folds: CV accuracy {baseline['cv_accuracy']:.4f}"
        f" ({baseline['cv_errors']} errors), log loss {baseline['cv_log_loss']:.4f}. A blend's"
        " weight is chosen on the same out-of-fold probabilities it is measured on.",
        "",
        f"Winner: **{board['winner']}**.",
    ]
    if "test" in board:
        test = board["test"]
        lines.append(
            f"Its final run on the test split: accuracy {test['accuracy']:.4f} "
            f"({test['n_errors']} errors of {test['n']}), macro-F1 {test['macro_f1']:.4f}."
        )
    return "\n".join(lines) + "\n"
