"""The one place that knows the layout of a run folder."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gptclf.errors import GptclfError

EVALUATION_PICTURES = ("confusion_matrix", "reliability", "precision_recall")


def _inside(name: str, doc: str) -> property:
    """A path in the run folder, named ``name``."""
    return property(lambda run_dir: run_dir.root / name, doc=doc)


@dataclass(frozen=True)
class RunDir:
    """A run folder: the options it was trained with, the trained model, its figures and plots,
    the split it used, the checkpoint of an unfinished run and later evaluations."""

    root: Path

    @classmethod
    def new(cls, model: str) -> RunDir:
        """A new folder under ``runs/``, named by the time and the base model."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return cls(Path("runs") / f"{stamp}-{Path(model).name}")

    def __str__(self) -> str:
        return str(self.root)

    options = _inside("run.yaml", "every option, resolved: ``gptclf train --config`` reads it")
    model_config = _inside("config.json", "what loading needs; written last, so a whole model")
    weights = _inside("classifier.safetensors", "the tensors training changed (or all of them)")
    baseline_arrays = _inside("baseline.safetensors", "the blended baseline's IDF and weights")
    baseline_vocabulary = _inside("baseline.json", "the blended baseline's vocabulary and C")
    tokenizer = _inside("tokenizer.json", "the tokenizer of a standalone Hugging Face model")
    metrics = _inside("metrics.json", "the run's figures and its validation and test metrics")
    metrics_log = _inside("metrics.jsonl", "every figure logged during training")
    confusion_matrix = _inside("confusion_matrix.png", "the test split's confusion matrix")
    report = _inside("report.html", "the run's story in one page: data, recipe, curves, mistakes")
    split = _inside("split", "the train/validation/test files the run used")
    checkpoint = _inside("checkpoint", "an unfinished run's state; removed when it completes")

    @property
    def curves(self) -> dict[str, Path]:
        """The training-curve PNG of each plotted metric."""
        return {metric: self.root / f"{metric}.png" for metric in ("loss", "accuracy")}

    def split_file(self, name: str) -> Path | None:
        """The file of split ``name`` (train, validation, test) the run used, if it has one."""
        found = sorted(self.split.glob(f"{name}.*"))
        return found[0] if found else None

    def test_split(self) -> Path:
        found = self.split_file("test")
        if found is None:
            raise GptclfError(f"{self.root}: the run has no test split; pass --data FILE")
        return found

    def evaluation(self, data: Path) -> tuple[Path, dict[str, Path]]:
        """Where ``gptclf eval`` writes the metrics of ``data``, and each of its pictures."""
        folder = self.root / "eval"
        pictures = {name: folder / f"{data.stem}_{name}.png" for name in EVALUATION_PICTURES}
        return folder / f"{data.stem}.json", pictures

    def create(self, resume: bool) -> None:
        """Make the folder for a new run (it must be empty) or check it holds one to resume."""
        if resume:
            if not self.options.is_file():
                raise GptclfError(f"{self.root}: not a gptclf run folder (no {self.options.name})")
            return
        if self.root.exists() and any(self.root.iterdir()):
            raise GptclfError(
                f"{self.root} already exists and is not empty; "
                "choose another --out or continue it with --resume"
            )
        self.root.mkdir(parents=True, exist_ok=True)
