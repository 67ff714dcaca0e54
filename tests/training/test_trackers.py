"""``gptclf train --report-to tensorboard | mlflow``: the figures of metrics.jsonl, the options of
run.yaml, the final metrics and the run folder's plots and report, read back from a TensorBoard
event file and from an MLflow run in a local file store."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from gptclf.cli import main
from gptclf.errors import GptclfError

from conftest import split_options

QUICK = ["--trainable=head", "--epochs=2", "--precision=fp32", "--eval-every=3", "--quiet"]
PLOTS = ("loss", "accuracy", "confusion_matrix")


def train(spam_data: Path, tiny_gpt2_base: Path, out: Path, *options: str) -> int:
    argv = ["train", *split_options(spam_data), f"--model={tiny_gpt2_base}", *QUICK, *options]
    return main([*argv, f"--out={out}"])


def logged_figures(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Each figure of metrics.jsonl as ``KIND/FIGURE``: its (step, value) in order."""
    figures: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for name in ("loss", "accuracy", "macro_f1"):
            if name in record:
                figures.setdefault(f"{record['kind']}/{name}", []).append(
                    (record["step"], record[name])
                )
    return figures


def test_tensorboard_gets_every_figure_of_metrics_jsonl_the_final_metrics_and_the_plots(
    spam_data, tiny_gpt2_base, tmp_path, monkeypatch
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setitem(sys.modules, "mlflow", None)  # not imported unless asked for
    out = tmp_path / "run"
    assert train(spam_data, tiny_gpt2_base, out, "--report-to=tensorboard") == 0
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    expected = logged_figures(out)
    assert {"train/loss", "train/accuracy", "validation/macro_f1"} <= set(expected)
    assert any(len({step for step, _ in points}) > 2 for points in expected.values())
    for tag, points in expected.items():
        read = [(e.step, e.value) for e in events.Scalars(tag)]
        assert read == [(step, pytest.approx(value, rel=1e-6)) for step, value in points], tag
    metrics = json.loads((out / "metrics.json").read_text())
    (final,) = events.Scalars("final/test/accuracy")
    assert final.value == pytest.approx(metrics["test"]["accuracy"])
    assert final.step == max(step for points in expected.values() for step, _ in points)
    assert events.Scalars("final/validation/macro_f1")[0].value == pytest.approx(
        metrics["validation"]["macro_f1"]
    )
    assert set(events.Tags()["images"]) == set(PLOTS)
    assert {"options/text_summary", "report/text_summary"} <= set(events.Tags()["tensors"])
    (report,) = events.Tensors("report/text_summary")
    assert report.tensor_proto.string_val[0].decode() == str((out / "report.html").resolve())


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A local MLflow file store in ``tmp_path``, and an experiment named for these tests."""
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 prefers a database
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "gptclf-tests")
    return uri


def only_run(uri: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("gptclf-tests")
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


def test_mlflow_gets_the_options_every_figure_the_final_metrics_and_the_files(
    spam_data, tiny_gpt2_base, tmp_path, mlflow_store, monkeypatch
):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # not imported unless asked for
    out = tmp_path / "spam-run"
    assert train(spam_data, tiny_gpt2_base, out, "--report-to=mlflow") == 0
    client, run = only_run(mlflow_store)
    assert run.info.run_name == "spam-run" and run.info.status == "FINISHED"
    options = yaml.safe_load((out / "run.yaml").read_text())
    assert options["report_to"] == "mlflow" and options["trainable"] == "head"
    as_text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in options.items()}
    assert run.data.params == as_text
    for tag, points in logged_figures(out).items():
        history = client.get_metric_history(run.info.run_id, tag)
        assert [(m.step, m.value) for m in history] == points, tag
    metrics = json.loads((out / "metrics.json").read_text())
    assert run.data.metrics["final/test/accuracy"] == metrics["test"]["accuracy"]
    assert run.data.metrics["final/validation/n_errors"] == metrics["validation"]["n_errors"]
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert files == {f"{name}.png" for name in PLOTS} | {"report.html"}


def test_a_run_that_fails_after_it_started_reporting_ends_failed_in_mlflow(
    spam_data, tiny_gpt2_base, tmp_path, mlflow_store, monkeypatch, capsys
):
    from mlflow import MlflowClient

    typo = tmp_path / "typo"
    assert train(spam_data, tiny_gpt2_base, typo, "--report-to=mlflow", "--text-column=nope") == 2
    assert "nope" in capsys.readouterr().err
    experiment = MlflowClient(tracking_uri=mlflow_store).get_experiment_by_name("gptclf-tests")
    assert experiment is None  # the data failed its checks before a run was started

    def fail(*_):
        raise GptclfError("the report could not be written")

    training = sys.modules["gptclf.training.train"]
    monkeypatch.setattr(training, "write_report", fail)  # once training is done
    assert train(spam_data, tiny_gpt2_base, tmp_path / "run", "--report-to=mlflow") == 2
    _, run = only_run(mlflow_store)
    assert run.info.status == "FAILED" and run.data.params["text_column"] == "null"


@pytest.mark.parametrize(
    ("tracker", "module", "package"),
    [("tensorboard", "tensorboard", "TensorBoard"), ("mlflow", "mlflow", "MLflow")],
)
def test_a_missing_package_is_one_line_naming_the_extra_before_anything_is_written(
    tracker, module, package, spam_data, tiny_gpt2_base, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    out = tmp_path / "run"
    assert train(spam_data, tiny_gpt2_base, out, f"--report-to={tracker}") == 2
    error = f"gptclf: error: --report-to {tracker} needs {package}: pip install 'gptclf[{tracker}]'"
    assert capsys.readouterr().err == error + "\n"
    assert not out.exists()


@pytest.mark.parametrize("tracker", ["tensorboard", "mlflow"])
def test_a_resumed_run_reports_every_figure_of_metrics_jsonl_once(
    tracker, spam_data, tiny_gpt2_base, tmp_path, mlflow_store, monkeypatch
):
    from gptclf.training import checkpoint

    real_save = checkpoint.save

    def save_then_crash(folder, trainer):
        real_save(folder, trainer)
        raise KeyboardInterrupt

    out = tmp_path / "run"
    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):  # after the first of two epochs
        train(spam_data, tiny_gpt2_base, out, f"--report-to={tracker}")
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert main(["train", f"--resume={out}", "--quiet"]) == 0
    expected = logged_figures(out)
    assert max(step for points in expected.values() for step, _ in points) == 12
    if tracker == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2
        events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
        events.Reload()
        read = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in expected}
        assert read == {
            tag: [(s, pytest.approx(v, rel=1e-6)) for s, v in points]
            for tag, points in expected.items()
        }
        return
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_store)
    experiment = client.get_experiment_by_name("gptclf-tests")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])
    assert [r.info.status for r in runs] == ["KILLED", "FINISHED"]
    resumed = runs[1].info.run_id
    for tag, points in expected.items():
        history = client.get_metric_history(resumed, tag)
        assert [(m.step, m.value) for m in history] == points, tag


def test_a_tracker_failing_mid_run_is_one_line_naming_it_and_the_run_ends_failed(
    spam_data, tiny_gpt2_base, tmp_path, mlflow_store, monkeypatch, capsys
):
    import mlflow

    def server_down(*_, **__):
        raise ConnectionError("API request to http://tracking:5000 failed\nretries exhausted")

    monkeypatch.setattr(mlflow, "log_metrics", server_down)
    assert train(spam_data, tiny_gpt2_base, tmp_path / "run", "--report-to=mlflow") == 2
    expected = "--report-to mlflow: API request to http://tracking:5000 failed"
    assert capsys.readouterr().err == f"gptclf: error: {expected}\n"
    assert only_run(mlflow_store)[1].info.status == "FAILED"
