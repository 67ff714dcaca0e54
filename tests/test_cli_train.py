"""``gptclf train``, ``eval``, ``predict`` and ``baseline`` as scripts use them."""

import csv
import json

import pytest

from gptclf.cli import main
from gptclf.data.readers import write_labelled

SPAM = ["WIN a FREE prize now, call 0800", "Free entry: text WIN to 8007", "URGENT! cash prize"]
HAM = ["see you at lunch", "are you home yet?", "ok thanks, talk later"]


@pytest.fixture(scope="module")
def spam_files(tmp_path_factory):
    """A small two-class dataset with string labels, in separate files."""
    folder = tmp_path_factory.mktemp("spam")
    for name, repeat in {"train": 8, "val": 2, "test": 2}.items():
        labels = (["spam"] * 3 + ["ham"] * 3) * repeat
        write_labelled(folder / f"{name}.csv", (SPAM + HAM) * repeat, labels)
    return folder


def split_files(folder) -> list[str]:
    return [f"--{n}={folder / f'{n}.csv'}" for n in ("train", "val", "test")]


@pytest.fixture(scope="module")
def trained_run(spam_files, tmp_path_factory):
    """A run folder trained through the CLI on a tiny GPT-2."""
    import torch
    import transformers

    torch.manual_seed(0)
    base = tmp_path_factory.mktemp("base")
    transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64)
    ).save_pretrained(base)
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    code = main(
        [
            "train",
            *split_files(spam_files),
            "--model",
            str(base),
            "--trainable",
            "all",
            "--lr",
            "3e-3",
            "--epochs",
            "4",
            "--out",
            str(run_dir),
            "--quiet",
        ]
    )
    assert code == 0
    return run_dir


def test_train_prints_the_run_folder_last(trained_run, capsys):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == 1.0
    assert metrics["trainable_parameters"] == metrics["total_parameters"]


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
    assert (
        "not a trained model" in capsys.readouterr().err
        or "no test split" in capsys.readouterr().err
    )


def test_baseline_reports_the_same_metrics(spam_files, capsys):
    code = main(["baseline", *split_files(spam_files), "--json"])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == 1.0 and metrics["split"] == "test"
