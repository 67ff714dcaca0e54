"""``gptclf train`` (with ``--config``), ``eval``, ``predict`` and ``baseline`` as scripts use
them; most use the run folder ``trained_run`` of tests/conftest.py."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gptclf.cli import main
from gptclf.data.readers import read_labelled, write_labelled
from gptclf.decision import calibration_metrics, with_temperature
from gptclf.metrics import log_loss
from gptclf.precision import cpu_has_int8_dot
from gptclf.predict import Classifier
from gptclf.recipe import PRESETS, TrainConfig

from conftest import HAM, PAIRED, SPAM, TAGGED, split_options

TIMINGS = ("prepare_seconds", "train_seconds", "finished_at")  # differ between equal runs


def without_timings(metrics_file: Path) -> dict:
    metrics = json.loads(metrics_file.read_text())
    return {k: v for k, v in metrics.items() if k not in TIMINGS}


def test_the_trained_run_classifies_every_test_text_right_with_every_parameter_trained(
    trained_run,
):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == 1.0 and metrics["test"]["n"] == 12
    assert metrics["trainable_parameters"] == metrics["total_parameters"]
    assert metrics["epochs_run"] == 4


def test_train_shows_the_baseline_beside_the_model_then_its_report_then_the_run_folder_last(
    spam_data, tiny_gpt2_base, tmp_path, capsys
):
    out = tmp_path / "run"
    options = ["--trainable=head", "--epochs=1", "--precision=fp32", "--compare-baseline"]
    argv = ["train", *split_options(spam_data), f"--model={tiny_gpt2_base}", *options]
    assert main([*argv, f"--out={out}"]) == 0  # not --quiet
    shown = capsys.readouterr().out
    lines = shown.splitlines()
    assert lines[-2:] == [f"report: {out / 'report.html'}", str(out)]
    assert (out / "config.json").is_file() and (out / "report.html").is_file()
    recorded = json.loads((out / "metrics.json").read_text())
    baseline = recorded["baseline"]
    assert baseline["selection"]["C"] > 0 and baseline["model"].startswith("TF-IDF")
    assert baseline["test"]["n"] == baseline["validation"]["n"] == 12
    table = lines[lines.index("test set:") + 1 :]
    assert table[0].split() == ["metric", "model", "baseline"]
    accuracy = next(line.split() for line in table if line.startswith("accuracy"))
    expected = [f"{recorded['test']['accuracy']:.2%}", f"{baseline['test']['accuracy']:.2%}"]
    assert accuracy == ["accuracy", *expected]


def test_compare_baseline_refuses_multi_label_data_before_training(
    multi_label_data, tiny_gpt2_base, tmp_path, capsys
):
    data = [f"--{n}={multi_label_data / n}.jsonl" for n in ("train", "val", "test")]
    argv = ["train", *data, "--compare-baseline", f"--model={tiny_gpt2_base}"]
    assert main([*argv, f"--out={tmp_path / 'run'}"]) == 2
    assert "the TF-IDF baseline" in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.fixture(scope="module")
def head_run(spam_data, tiny_gpt2_base, tmp_path_factory) -> Path:
    """A quick run of ``gptclf train`` that trains the head only, for two epochs, with options
    other than the defaults."""
    out = tmp_path_factory.mktemp("head-run") / "run"
    options = ["--trainable=head", "--epochs=2", "--lr=1e-2", "--precision=fp32", "--quiet"]
    options += ["--batch-size=4", "--seed=7", "--schedule=linear", "--warmup=0.2"]
    argv = ["train", *split_options(spam_data), f"--model={tiny_gpt2_base}", *options]
    assert main([*argv, f"--out={out}"]) == 0
    return out


def test_train_with_the_config_of_a_run_reproduces_its_metrics(head_run, tmp_path):
    again = tmp_path / "again"
    argv = ["train", "--config", str(head_run / "run.yaml"), "--out", str(again), "--quiet"]
    assert main(argv) == 0
    assert without_timings(again / "metrics.json") == without_timings(head_run / "metrics.json")
    assert (again / "metrics.jsonl").read_text() == (head_run / "metrics.jsonl").read_text()
    assert (again / "run.yaml").read_text() == (head_run / "run.yaml").read_text()


def test_flags_given_with_config_override_the_file(head_run, tmp_path):
    import yaml

    other = tmp_path / "other"
    argv = ["train", "--config", str(head_run / "run.yaml"), "--out", str(other), "--quiet"]
    assert main([*argv, "--epochs", "1", "--lr", "0.02"]) == 0
    assert json.loads((other / "metrics.json").read_text())["epochs_run"] == 1
    ran, original = (yaml.safe_load((d / "run.yaml").read_text()) for d in (other, head_run))
    assert (original["epochs"], original["lr"]) == (2, 0.01)
    assert (ran["epochs"], ran["lr"]) == (1, 0.02)
    unchanged = {k: v for k, v in original.items() if k not in ("epochs", "lr")}
    assert {k: ran[k] for k in unchanged} == unchanged


@pytest.fixture
def settings_of_train(monkeypatch) -> list[tuple]:
    """What ``gptclf train`` would train (recipe, data, run folder), without training."""
    import gptclf.training

    calls = []

    def record(config, source, out, **_):
        calls.append((config, source, out))

    monkeypatch.setattr(gptclf.training, "train", record)
    return calls


def test_flags_win_over_the_config_file_which_wins_over_the_preset(settings_of_train, tmp_path):
    (tmp_path / "options.yaml").write_text("lr: 1e-3\nepochs: 3\ntrain: from-file.csv\n")
    argv = ["train", "--preset", "book", "--config", str(tmp_path / "options.yaml")]
    assert main([*argv, "--epochs", "2", "--out", str(tmp_path / "run")]) == 0
    ((config, source, out),) = settings_of_train
    assert (config.epochs, config.lr) == (2, 1e-3)  # the flag, then the file
    book = PRESETS["book"]
    assert config.pooling == book["pooling"] and config.schedule == book["schedule"]  # the preset
    assert config.weight_decay == TrainConfig().weight_decay  # the default
    assert source.train == Path("from-file.csv") and out == tmp_path / "run"


def test_a_data_flag_overrides_the_data_of_the_config_file(settings_of_train, tmp_path):
    (tmp_path / "options.json").write_text(json.dumps({"train": "a.csv", "test": "t.csv"}))
    argv = ["train", "--config", str(tmp_path / "options.json"), "--train", "b.csv"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    ((_, source, _),) = settings_of_train
    assert (source.train, source.test) == (Path("b.csv"), Path("t.csv"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs: 2\nlearning_rate: 0.1\n", "unknown option(s) learning_rate"),
        ("epochs: x\n", "epochs = 'x' is not an integer"),
        ("epochs: 8.5\n", "epochs = 8.5 is not an integer"),
        ("schedule: exp\n", "schedule must be one of constant, linear, cosine, not 'exp'"),
        ("protocol: weird\n", "protocol must be one of book, full, not 'weird'"),
        ("fractions: [0.5, 0.5]\n", "fractions = [0.5, 0.5] is not a list of 3 numbers"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_file_and_key(
    settings_of_train, tmp_path, text, message, capsys
):
    (tmp_path / "options.yaml").write_text(text)
    argv = ["train", "--config", str(tmp_path / "options.yaml"), "--train", "t.csv"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == f"gptclf: error: {tmp_path / 'options.yaml'}: {message}\n"
    assert settings_of_train == []


@pytest.mark.parametrize("other", [["--epochs", "2"], ["--preset", "book"], ["--train", "t.csv"]])
def test_resume_with_other_options_is_an_error(settings_of_train, tmp_path, other, capsys):
    assert main(["train", "--resume", str(tmp_path), *other]) == 2
    assert "--resume continues a run with its own options" in capsys.readouterr().err
    assert settings_of_train == []


def test_eval_json_has_the_promised_fields(trained_run, capsys):
    assert main(["eval", str(trained_run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"accuracy", "macro_f1", "mcc", "n", "confusion_matrix"} <= set(metrics)
    assert metrics["n"] == 12 and metrics["accuracy"] == 1.0
    assert (trained_run / "eval" / "test.json").is_file()
    assert (trained_run / "eval" / "test_confusion_matrix.png").is_file()


def test_eval_with_a_threshold_reports_it(trained_run, capsys):
    assert main(["eval", str(trained_run), "--threshold", "0.99"]) == 0
    assert "threshold" in capsys.readouterr().out


def flipped_file(folder: Path) -> Path:
    """The trained run's texts labelled the other way: the run gets every one wrong."""
    path = folder / "flipped.csv"
    write_labelled(path, SPAM + HAM, ["ham"] * len(SPAM) + ["spam"] * len(HAM))
    return path


def test_eval_errors_lists_the_most_confident_mistakes_first(trained_run, tmp_path, capsys):
    data = flipped_file(tmp_path)
    assert main(["eval", str(trained_run), f"--data={data}", "--errors=4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("the 4 most confident of 6 mistakes:")
    table = [line.split() for line in lines[start + 1 :]]
    assert table[0] == ["row", "true", "predicted", "p", "text"]
    assert len(table) == 5
    shown = [float(row[3]) for row in table[1:]]
    assert shown == sorted(shown, reverse=True)
    probabilities = Classifier.from_pretrained(trained_run).predict(SPAM + HAM)
    assert shown[0] == pytest.approx(max(p.probability for p in probabilities), abs=1e-4)
    assert main(["eval", str(trained_run), f"--data={data}", "--errors=2", "--json"]) == 0
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert [set(e) for e in errors] == [
        {"row", "text", "pair", "truth", "predicted", "probability", "margin"}
    ] * 2
    assert all(e["truth"] != e["predicted"] and e["text"] in SPAM + HAM for e in errors)


def test_eval_compare_baseline_is_the_baseline_command_on_the_runs_own_split(trained_run, capsys):
    split = trained_run / "split"
    files = [f"--{flag}={split / name}.csv" for flag, name in SPLIT_FLAGS]
    assert main(["baseline", *files, "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert main(["eval", str(trained_run), "--compare-baseline", "--json"]) == 0
    baseline = json.loads(capsys.readouterr().out)["baseline"]
    for figure in ("accuracy", "n_errors", "brier", "ece"):  # brier: the same probabilities
        assert baseline[figure] == pytest.approx(expected[figure]), figure
    assert main(["eval", str(trained_run), "--compare-baseline"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.split() == ["metric", "model", "baseline"]


SPLIT_FLAGS = [("train", "train"), ("val", "validation"), ("test", "test")]


@pytest.mark.parametrize(
    ("errors", "message"),
    [("0", "--errors must be at least 1"), ("two", "--errors: invalid int value")],
)
def test_eval_errors_must_be_a_count(trained_run, errors, message, capsys):
    try:
        code = main(["eval", str(trained_run), f"--errors={errors}"])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2 and message in capsys.readouterr().err


def test_eval_errors_says_so_when_there_are_none(trained_run, capsys):
    assert main(["eval", str(trained_run), "--errors=3"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "no mistakes"


@pytest.fixture(scope="module")
def decided_run(noisy_spam_data, tiny_gpt2_base, tmp_path_factory) -> Path:
    """A run that calibrates its probabilities and decides spam by the threshold with the best
    precision at recall 1 on validation."""
    out = tmp_path_factory.mktemp("decided-run") / "run"
    options = ["--trainable=head", "--epochs=2", "--lr=1e-2", "--precision=fp32", "--quiet"]
    options += ["--decide=precision@1", "--calibrate=temperature", "--ensemble=none"]
    argv = ["train", *split_options(noisy_spam_data), f"--model={tiny_gpt2_base}", *options]
    assert main([*argv, f"--out={out}"]) == 0
    return out


def test_the_threshold_chosen_on_validation_decides_predict_and_eval(
    decided_run, noisy_spam_data, capsys
):
    decision = json.loads((decided_run / "metrics.json").read_text())["decision"]
    threshold = decision["threshold"]
    assert decision["rule"] == "precision@1" and decision["on_validation"]["recall"] == 1.0
    validation = read_labelled(noisy_spam_data / "val.csv")
    classifier = Classifier.from_pretrained(decided_run)
    p_spam = classifier.predict_proba(validation.texts)[:, 1]
    assert [p.label for p in classifier.predict(validation.texts)] == [
        "spam" if p >= threshold else "ham" for p in p_spam
    ]
    assert min(p_spam[np.array(validation.labels) == "spam"]) >= threshold
    capsys.readouterr()
    val = noisy_spam_data / "val.csv"
    assert main(["eval", str(decided_run), f"--data={val}", "--json"]) == 0
    assert main(["eval", str(decided_run), "--threshold=0.5", "--json"]) == 0
    by_run, given = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert by_run["threshold"] == threshold and by_run["per_class"]["spam"]["recall"] == 1.0
    assert given["threshold"] == 0.5
    for picture in ("val_reliability", "val_precision_recall", "test_reliability"):
        assert (decided_run / "eval" / f"{picture}.png").is_file()


def test_the_temperature_fitted_on_validation_lowers_its_log_loss(decided_run, noisy_spam_data):
    metrics = json.loads((decided_run / "metrics.json").read_text())
    temperature = json.loads((decided_run / "config.json").read_text())["decision"]["temperature"]
    assert metrics["calibration"]["temperature"] == temperature != 1.0
    validation = read_labelled(noisy_spam_data / "val.csv")
    truth = [int(label == "spam") for label in validation.labels]
    calibrated = Classifier.from_pretrained(decided_run).predict_proba(validation.texts)
    as_trained = with_temperature(calibrated, 1 / temperature)
    for other in (as_trained, with_temperature(as_trained, temperature * 1.5)):
        assert log_loss(truth, calibrated) <= log_loss(truth, other) + 1e-9
    uncalibrated = metrics["calibration"]["uncalibrated"]["validation"]
    assert uncalibrated["ece"] == pytest.approx(calibration_metrics(truth, as_trained)["ece"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--decide=f1"], "--decide f1 needs two classes or multi-label data, not 3 classes"),
        (["--calibrate=temperature", "--no-validation"], "--calibrate chooses on the validation"),
    ],
)
def test_a_decision_that_cannot_be_chosen_is_refused_before_training(
    options, message, tiny_gpt2_base, tmp_path, capsys
):
    texts = [*SPAM, *HAM, "a third kind"] * 2
    for name in ("train", "val", "test"):
        write_labelled(tmp_path / f"{name}.csv", texts, (["spam"] * 3 + ["ham"] * 3 + ["x"]) * 2)
    splits = split_options(tmp_path)
    if "--no-validation" in options:
        options, splits = options[:-1], [s for s in splits if not s.startswith("--val")]
    argv = ["train", *splits, f"--model={tiny_gpt2_base}", "--epochs=1", *options]
    assert main([*argv, f"--out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "config.json").exists()


def test_eval_on_labels_the_model_never_saw_lists_them(trained_run, tmp_path, capsys):
    write_labelled(tmp_path / "other.csv", ["hi", "buy", "yo"], ["ham", "promo", "chat"])
    assert main(["eval", str(trained_run), "--data", str(tmp_path / "other.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "labels not seen in training: 'chat', 'promo'" in err


def test_predict_prints_label_probability_and_text_per_line(trained_run, capsys):
    texts = [SPAM[0], HAM[0]]
    assert main(["predict", str(trained_run), *texts]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["spam", "ham"]
    assert [line.split("\t")[2] for line in lines] == texts
    assert all(0.5 < float(line.split("\t")[1]) <= 1 for line in lines)


def test_predict_json_lines(trained_run, capsys):
    assert main(["predict", str(trained_run), "--json", SPAM[1]]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["label"] == "spam" and set(row["probabilities"]) == {"ham", "spam"}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_predict_file_keeps_input_order_in_chunks(trained_run, tmp_path, suffix, capsys):
    texts = [(HAM + SPAM)[i % 6] for i in range(2500)]
    write_labelled(tmp_path / "in.csv", texts, ["?"] * len(texts))
    out = tmp_path / f"out{suffix}"
    assert (
        main(
            ["predict", str(trained_run), "--input", str(tmp_path / "in.csv"), "--output", str(out)]
        )
        == 0
    )
    if suffix == ".csv":
        with open(out, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert set(rows[0]) == {"text", "label", "probability", "p_ham", "p_spam"}
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == texts
    assert [r["label"] for r in rows[:6]] == ["ham"] * 3 + ["spam"] * 3


def test_predict_file_names_a_row_without_text(trained_run, tmp_path, capsys):
    (tmp_path / "in.csv").write_text("text\nhello\n\nbye\n")
    assert (
        main(
            [
                "predict",
                str(trained_run),
                "--input",
                str(tmp_path / "in.csv"),
                "--output",
                str(tmp_path / "out.csv"),
            ]
        )
        == 2
    )
    assert "in.csv: row 2: no text to classify" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


def test_predict_needs_texts_or_files(trained_run, capsys):
    assert main(["predict", str(trained_run)]) == 2
    assert "nothing to classify" in capsys.readouterr().err


def test_eval_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"gptclf: error: {tmp_path}: not a trained model (no config.json)\n"
    )


def test_baseline_reports_the_same_metrics(spam_data, capsys):
    code = main(["baseline", *split_options(spam_data), "--json"])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == 1.0 and metrics["split"] == "test"


def test_a_run_with_depth_pooling_decay_smoothing_and_head_tail_evaluates_as_it_trained(
    spam_data, tiny_gpt2_base, tmp_path, capsys
):
    """Trained at depth 1 of 2 on texts cut to 6 tokens (head and tail), the saved run is
    rebuilt the same way: ``eval`` reproduces the test metrics training wrote."""
    from gptclf.data.tokenized import frame
    from gptclf.predict import Classifier

    out = tmp_path / "run"
    options = ["--depth=1", "--pooling=last-token+mean", "--decay=matrices"]
    options += ["--label-smoothing=0.1", "--truncate=head+tail", "--max-length=6"]
    options += ["--epochs=2", "--batch-size=16", "--lr=1e-2", "--precision=fp32", "--quiet"]
    argv = ["train", *split_options(spam_data), f"--model={tiny_gpt2_base}", *options]
    assert main([*argv, f"--out={out}"]) == 0
    trained = json.loads((out / "metrics.json").read_text())["test"]

    classifier = Classifier.from_pretrained(out)
    network = classifier.network.language_model
    assert len(network.trf_blocks) == 1 and classifier.network.head.in_features == 2 * 32
    long_text = SPAM[0]
    ids = classifier.tokenizer.encode_batch([long_text])
    assert len(ids[0]) > 6  # cut: its first 3 and last 3 tokens are read
    assert classifier.token_ids([long_text]) == frame(ids, 6, "head+tail").ids

    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for key in ("n", "n_errors", "confusion_matrix", "labels"):
        assert evaluated[key] == trained[key], key
    for key in ("accuracy", "macro_f1", "roc_auc", "pr_auc"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key


def test_eval_reads_the_frozen_prefix_states_its_training_stored(
    spam_data, tiny_gpt2_base, tmp_path, monkeypatch, capsys
):
    from gptclf import store

    monkeypatch.setenv("GPTCLF_STORE", str(tmp_path / "store"))
    out = tmp_path / "run"
    options = ["--epochs=2", "--lr=1e-2", "--precision=fp32", "--ensemble=none", "--quiet"]
    argv = ["train", *split_options(spam_data), f"--model={tiny_gpt2_base}", *options]
    assert main([*argv, f"--out={out}"]) == 0
    trained = json.loads((out / "metrics.json").read_text())
    assert trained["frozen_prefix_blocks"] == 1 and trained["prefix_states"]["computed"] > 0

    def no_pass(*_, **__):
        raise AssertionError("frozen-prefix states computed again")

    monkeypatch.setattr(store, "states_at_depths", no_pass)
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for key in ("n", "n_errors", "confusion_matrix"):
        assert evaluated[key] == trained["test"][key], key
    assert evaluated["roc_auc"] == pytest.approx(trained["test"]["roc_auc"], abs=1e-6)


@pytest.mark.skipif(not cpu_has_int8_dot(), reason="no VNNI or AMX on this CPU")
def test_an_int8_run_evaluates_as_it_trained_and_cannot_be_standalone(
    spam_data, tiny_gpt2_base, tmp_path, capsys
):
    from gptclf.precision import Int8Linear
    from gptclf.predict import Classifier

    out = tmp_path / "run"
    options = ["--epochs=2", "--lr=1e-2", "--precision=int8", "--ensemble=none", "--quiet"]
    argv = ["train", *split_options(spam_data), f"--model={tiny_gpt2_base}", *options]
    assert main([*argv, f"--out={out}"]) == 0
    trained = json.loads((out / "metrics.json").read_text())["test"]
    blocks = Classifier.from_pretrained(out).network.language_model.trf_blocks
    assert isinstance(blocks[0].att.W_query, Int8Linear)  # frozen: int8
    assert type(blocks[1].att.W_query) is torch.nn.Linear  # trained: as it trained
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["n_errors"] == trained["n_errors"]
    assert evaluated["roc_auc"] == pytest.approx(trained["roc_auc"], abs=1e-6)

    assert main([*argv, "--full", f"--out={tmp_path / 'full'}"]) == 2
    assert "--precision int8 keeps no float copy" in capsys.readouterr().err
    assert not (tmp_path / "full").exists()


def test_a_multi_label_run_decides_every_label_of_every_test_text_right(multi_label_run):
    test = json.loads((multi_label_run / "metrics.json").read_text())["test"]
    assert test["multi_label"] and test["n_errors"] == 0 and test["hamming_loss"] == 0.0
    assert set(test["per_class"]) == {"money", "social", "urgent"}
    assert len(test["threshold"]) == 3  # one per label, chosen on validation by --decide f1


def test_predict_of_a_multi_label_run_gives_each_text_its_set_of_labels(multi_label_run, capsys):
    texts = [text for text, _ in TAGGED]
    assert main(["predict", str(multi_label_run), *texts, "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [set(r["labels"]) for r in records] == [set(labels) for _, labels in TAGGED]
    assert all(set(r["probabilities"]) == {"money", "social", "urgent"} for r in records)
    assert main(["predict", str(multi_label_run), TAGGED[0][0]]) == 0
    assert capsys.readouterr().out.split("\t")[0] == "money|urgent"


def test_predict_file_of_a_multi_label_run_writes_labels_and_every_probability(
    multi_label_run, tmp_path
):
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_labelled(source, [t for t, _ in TAGGED], ["?"] * len(TAGGED))
    assert main(["predict", str(multi_label_run), f"--input={source}", f"--output={out}"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["text", "labels", "p_money", "p_social", "p_urgent"]
    assert [set(filter(None, r["labels"].split("|"))) for r in rows] == [
        set(labels) for _, labels in TAGGED
    ]


@pytest.mark.parametrize("layout", ["separator", "columns"])
def test_eval_of_a_multi_label_run_reads_labels_in_every_layout(
    multi_label_run, multi_label_data, tmp_path, layout, capsys
):
    """The test split as labels joined by "|" in one CSV column, or as a 0/1 column per label,
    evaluates as the JSONL lists do; the pictures are the reliability diagram and every label's
    precision-recall curve."""
    data = read_labelled(multi_label_data / "test.jsonl")
    path = tmp_path / f"{layout}.csv"
    names = ("money", "social", "urgent")
    if layout == "separator":
        write_labelled(path, data.texts, data.labels, label_column="tags", label_separator="|")
        reading = ["--label-column=tags", "--label-separator=|"]
    else:
        write_labelled(path, data.texts, data.labels, label_columns=names)
        reading = [f"--label-columns={','.join(names)}"]
    assert main(["eval", str(multi_label_run), f"--data={path}", *reading, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    expected = json.loads((multi_label_run / "metrics.json").read_text())["test"]
    assert metrics["micro_f1"] == expected["micro_f1"] and metrics["n"] == expected["n"]
    pictures = sorted(p.name for p in (multi_label_run / "eval").glob(f"{layout}_*.png"))
    assert pictures == [f"{layout}_precision_recall.png", f"{layout}_reliability.png"]


def test_eval_of_a_multi_label_run_reads_its_own_split_as_it_trained(multi_label_run, capsys):
    assert main(["eval", str(multi_label_run)]) == 0
    report = capsys.readouterr().out
    rows = [line.split() for line in report.split("\n\n")[0].splitlines()]
    assert ["subset", "accuracy", "100.00%"] in rows and ["Hamming", "loss", "0.0000"] in rows


@pytest.mark.parametrize(
    "options",
    [
        ["--trainable=lora", "--lr=1e-2", "--chunks=mean", "--max-length=6"],
        ["--class-weights=balanced", "--label-smoothing=0.1", "--calibrate=temperature"],
    ],
    ids=["lora-chunks", "frozen-prefix-cache-weighted-calibrated"],
)
def test_multi_label_training_works_with_the_trainable_options(
    multi_label_data, tiny_gpt2_base, tmp_path, options
):
    data = [f"--{n}={multi_label_data / n}.jsonl" for n in ("train", "val", "test")]
    argv = ["train", *data, f"--model={tiny_gpt2_base}", "--epochs=6", "--precision=fp32"]
    assert main([*argv, *options, f"--out={tmp_path / 'run'}", "--quiet"]) == 0
    test = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert test["multi_label"] and test["micro_f1"] > 0.6
    classifier = Classifier.from_pretrained(tmp_path / "run")
    p = classifier.predict_proba([t for t, _ in TAGGED])
    assert p.shape == (len(TAGGED), 3) and not np.allclose(p.sum(axis=1), 1.0)  # not a softmax


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["baseline"], "the TF-IDF baseline handles one label per text"),
        (["train", "--ensemble=baseline"], "--ensemble baseline handles one label per text"),
        (["data", "audit"], "one label per text"),
    ],
)
def test_what_handles_one_label_per_text_refuses_multi_label_data_in_one_line(
    multi_label_data, tiny_gpt2_base, tmp_path, argv, message, capsys
):
    train = multi_label_data / "train.jsonl"
    if argv[0] == "data":
        argv = [*argv, str(train)]
    else:
        argv = [*argv, f"--train={train}", f"--val={multi_label_data / 'val.jsonl'}"]
        argv += [f"--model={tiny_gpt2_base}", f"--out={tmp_path / 'run'}"] * (argv[0] == "train")
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_run_on_text_pairs_reads_each_text_with_its_pair_joined_by_the_template(pair_run):
    config = json.loads((pair_run / "config.json").read_text())
    assert config["train"]["template"] == "{text}\n\n{pair}"  # the default join, recorded
    test = json.loads((pair_run / "metrics.json").read_text())["test"]
    assert test["n_errors"] == 0
    classifier = Classifier.from_pretrained(pair_run)
    questions, answers, labels = zip(*PAIRED, strict=True)
    assert [p.label for p in classifier.predict(questions, pairs=answers)] == list(labels)
    assert classifier.classify(questions[1], answers[1]) == "no"
    # the same question with another answer is another example
    assert classifier.classify(questions[0], answers[0]) == "yes"


def test_predict_and_eval_of_a_pair_run_take_pairs_from_flags_and_columns(
    pair_run, pair_data, tmp_path, capsys
):
    question, answer, label = PAIRED[3]
    assert main(["predict", str(pair_run), question, f"--pair={answer}", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["text"], record["pair"], record["label"]) == (question, answer, label)
    out = tmp_path / "out.csv"
    columns = ["--text-column=question", "--text-pair-column=answer"]
    test = pair_data / "test.csv"
    assert main(["predict", str(pair_run), f"--input={test}", f"--output={out}", *columns]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0])[:3] == ["text", "pair", "label"]
    assert [r["label"] for r in rows] == read_labelled(test, text_column="question").labels
    assert main(["eval", str(pair_run), "--json"]) == 0  # its own split, read as it trained
    assert json.loads(capsys.readouterr().out)["n_errors"] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["what is the capital of France?"], "this model classifies pairs of texts"),
        (["a", "b", "--pair=x"], "2 texts need 2 --pair, not 1"),
        (["q", "--pair="], "text 1: no text to classify"),
    ],
)
def test_predicting_pairs_wrongly_is_one_line(pair_run, argv, message, capsys):
    assert main(["predict", str(pair_run), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_single_text_model_refuses_pairs(trained_run, capsys):
    assert main(["predict", str(trained_run), SPAM[0], "--pair=x"]) == 2
    assert "this model classifies single texts, not pairs" in capsys.readouterr().err


def test_an_empty_pair_in_training_data_names_its_row(pair_data, tmp_path, capsys):
    data = read_labelled(pair_data / "train.csv", text_pair_column="answer", text_column="question")
    answers = list(data.pairs)
    answers[4] = " "
    bad = tmp_path / "train.csv"
    write_labelled(bad, data.texts, data.labels, "question", pairs=answers, pair_column="answer")
    argv = ["train", f"--train={bad}", "--text-column=question", "--text-pair-column=answer"]
    assert main([*argv, f"--out={tmp_path / 'run'}"]) == 2
    assert "empty text in pair column 'answer' at row 5" in capsys.readouterr().err
