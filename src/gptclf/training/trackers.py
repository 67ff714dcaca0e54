"""``--report-to``: a training run also reported to TensorBoard or MLflow: its options as
parameters, every figure of metrics.jsonl at its step, metrics.json's final validation and test
numbers, and the run folder's plots and report. The packages (extras ``gptclf[tensorboard]``,
``gptclf[mlflow]``) are imported only when asked for."""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gptclf.errors import GptclfError

FIGURES = ("loss", "accuracy", "macro_f1")  # of each metrics.jsonl record, by its kind
FINAL_SPLITS = ("validation", "test")  # metrics.json's, reported as final/SPLIT/METRIC


class Tracker:
    """Where a run also reports: ``start`` with its options, ``record`` each record of
    metrics.jsonl, then ``finish`` with metrics.json's results and the run folder's files, or
    ``abort`` where training raised. Each tracker implements ``begin``, ``log``, ``end`` and
    ``abort`` on values already flattened."""

    kind = ""  # as --report-to names it
    step = 0  # of the last record: the final metrics are reported at it

    def start(self, options: dict[str, Any]) -> None:
        """The run's options (run.yaml's values) as text parameters."""
        with self._failing_in_one_line():
            self.begin({name: _text(value) for name, value in options.items()})

    def record(self, entry: dict) -> None:
        """A record of metrics.jsonl: its figures as ``KIND/FIGURE`` (``validation/loss``)."""
        self.step = entry["step"]
        figures = {f"{entry['kind']}/{name}": entry[name] for name in FIGURES if name in entry}
        with self._failing_in_one_line():
            self.log(figures, self.step)

    def finish(self, results: dict, files: list[Path]) -> str:
        """Report metrics.json's final numbers and those of ``files`` that exist, close the run,
        and say where it is."""
        with self._failing_in_one_line():
            return self.end(final_metrics(results), [path for path in files if path.is_file()])

    @contextmanager
    def _failing_in_one_line(self) -> Iterator[None]:
        """The tracker's own errors (a store gone, a server down) as one line naming it."""
        try:
            yield
        except (GptclfError, KeyboardInterrupt):
            raise
        except Exception as error:
            first = (str(error).strip() or repr(error)).splitlines()[0]
            raise GptclfError(f"--report-to {self.kind}: {first}") from error

    def begin(self, params: dict[str, str]) -> None:
        raise NotImplementedError

    def log(self, figures: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def end(self, metrics: dict[str, float], files: list[Path]) -> str:
        raise NotImplementedError

    def abort(self, error: BaseException) -> None:
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """An event file under RUN/tensorboard/: the options as a text table and, at the end, as
    hyperparameters beside the final metrics; the plots as images, the report's path as text."""

    kind = "tensorboard"

    def __init__(self, run_folder: Path):
        _imported("tensorboard", "TensorBoard", "tensorboard")
        self.folder = run_folder / "tensorboard"
        self.writer = None

    def begin(self, params: dict[str, str]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.params = params
        # A resumed run's figures are all logged again (Logger): TensorBoard reads this new
        # event file as a restart at step 0 and drops what the interrupted run's files hold.
        self.writer = SummaryWriter(str(self.folder), purge_step=0)
        rows = "".join(f"| {name} | {_cell(value)} |\n" for name, value in params.items())
        self.writer.add_text("options", "| option | value |\n| --- | --- |\n" + rows)

    def log(self, figures: dict[str, float], step: int) -> None:
        for tag, value in figures.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # a record is rare (an epoch, --eval-every): show it at once

    def end(self, metrics: dict[str, float], files: list[Path]) -> str:
        from matplotlib.image import imread
        from torch.utils.tensorboard.summary import hparams

        self.log(metrics, self.step)
        for summary in hparams(self.params, metrics):  # the HPARAMS tab, without a sub-run
            self.writer.file_writer.add_summary(summary)
        for path in files:
            if path.suffix == ".png":
                pixels = imread(path)[..., :3]
                self.writer.add_image(path.stem, pixels, self.step, dataformats="HWC")
            else:
                self.writer.add_text(path.stem, str(path.resolve()), self.step)
        self.writer.close()
        self.writer = None
        return f"TensorBoard: tensorboard --logdir {self.folder}"

    def abort(self, error: BaseException) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class MLflowTracker(Tracker):
    """An MLflow run named after the run folder, in the store of MLFLOW_TRACKING_URI (MLflow's
    default otherwise) and the experiment of MLFLOW_EXPERIMENT_NAME (or the default one); nested
    in the active run where there is one. It ends FINISHED, FAILED, or KILLED (Ctrl-C)."""

    kind = "mlflow"

    def __init__(self, run_folder: Path):
        self.mlflow = _imported("mlflow", "MLflow", "mlflow")
        self.name = run_folder.resolve().name
        self.run = None

    def begin(self, params: dict[str, str]) -> None:
        from mlflow.exceptions import MlflowException

        mlflow = self.mlflow
        try:
            self.run = mlflow.start_run(run_name=self.name, nested=mlflow.active_run() is not None)
        except (MlflowException, ImportError) as error:
            first = (str(error).strip() or repr(error)).splitlines()[0]
            where = mlflow.get_tracking_uri()
            raise GptclfError(f"--report-to mlflow: no run started at {where}: {first}") from error
        limit = _param_limit()
        mlflow.log_params({k: _shortened(v, limit) for k, v in params.items()})

    def log(self, figures: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(figures, step=step)

    def end(self, metrics: dict[str, float], files: list[Path]) -> str:
        mlflow, info = self.mlflow, self.run.info
        mlflow.log_metrics(metrics, step=self.step)
        for path in files:
            mlflow.log_artifact(str(path))
        mlflow.end_run()
        self.run = None
        return (
            f"MLflow: run {info.run_id} of experiment {info.experiment_id} "
            f"at {mlflow.get_tracking_uri()}"
        )

    def abort(self, error: BaseException) -> None:
        if self.run is not None:
            self.mlflow.end_run("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
            self.run = None


TRACKERS: dict[str, type[Tracker]] = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker}


@contextmanager
def reporting(name: str | None, run_folder: Path) -> Iterator[Tracker | None]:
    """The tracker ``--report-to`` names for ``run_folder`` (None: none), an error naming the
    extra to install where its package is missing; its run is aborted where the body raises."""
    tracker = None if name is None else TRACKERS[name](run_folder)
    try:
        yield tracker
    except BaseException as error:
        if tracker is not None:
            tracker.abort(error)
        raise


def final_metrics(results: dict) -> dict[str, float]:
    """metrics.json's validation and test numbers (accuracy, macro_f1, n_errors, ...) as
    ``final/SPLIT/METRIC``; lists, tables and missing values left out."""
    return {
        f"final/{split}/{name}": float(value)
        for split in FINAL_SPLITS
        for name, value in results.get(split, {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def _text(value: Any) -> str:
    """An option's value as a parameter: text as it is, anything else as JSON (null, true, 5e-4,
    ["qv"])."""
    return value if isinstance(value, str) else json.dumps(value)


def _cell(text: str) -> str:
    """Text in a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", "\\n")


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _param_limit() -> int:
    """The longest parameter value MLflow takes, as it declares it (else 500, older MLflows')."""
    try:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    except ImportError:
        return 500
    return MAX_PARAM_VAL_LENGTH


def _imported(module: str, package: str, extra: str) -> Any:
    """``module``, imported; where it is missing, an error naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise GptclfError(
            f"--report-to {extra} needs {package}: pip install 'gptclf[{extra}]'"
        ) from error
