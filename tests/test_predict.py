"""``gptclf predict`` on hostile input: a bad input or output file is one line and exit status
2 before the model loads; rows with no text are an error, skipped or marked (--on-empty), with
row numbers right across chunks; SIGTERM leaves no partial output behind."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptclf.cli import main
from gptclf.predict import Classifier

from conftest import HAM, SPAM


@pytest.fixture
def model_never_loads(monkeypatch):
    """Loading the model fails the test: what is checked must be checked before it loads."""

    def refuse(cls, run_dir):
        raise AssertionError("the model loaded before the input and output were checked")

    monkeypatch.setattr(Classifier, "from_pretrained", classmethod(refuse))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("gptclf: error: ") and err.count("\n") == 1, err
    return err


def predict_file(run_dir: Path, source: Path, output: Path, *options: str) -> int:
    return main(["predict", str(run_dir), f"--input={source}", f"--output={output}", *options])


BAD_INPUTS = [
    ("empty.csv", b"", "file is empty"),
    ("empty.tsv", b"", "file is empty"),
    ("empty.jsonl", b"", "file is empty"),
    ("binary.csv", bytes(range(256)) * 4, "byte offset 128 (row 1); it holds NUL bytes"),
    ("binary.tsv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00", "not valid utf-8 at byte offset 0"),
    ("binary.jsonl", b"\x1f\x8b\x08\x00\xb7\xac\x00\x00", "not valid utf-8 at byte offset 1"),
    ("utf16.csv", "text\nhé\n".encode("utf-16"), "pass --encoding utf-16"),
    ("utf16.jsonl", '{"text": "hé"}\n'.encode("utf-16-le"), "pass --encoding utf-16-le"),
    ("header.csv", b"text,text\na,b\n", "the header names 'text' more than once"),
    ("header.jsonl", b'{"text": "a", "text": "b"}\n', "line 1: key 'text' appears more than once"),
    ("wide.csv", b"text\na\nb,c\n", "cannot parse the file: Error tokenizing data"),
    ("blank.csv", b"text\nhello\n\n", "row 2: no text to classify"),
    ("data.parquet", b"PAR1", "--input must be .csv, .tsv or .jsonl"),
    ("absent.csv", None, "file not found"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_a_bad_input_is_one_line_before_the_model_loads(
    tmp_path, model_never_loads, capsys, name, content, message
):
    source = tmp_path / name
    if content is not None:
        source.write_bytes(content)
    assert predict_file(tmp_path / "run", source, tmp_path / "out.csv") == 2
    err = one_line_error(capsys)
    assert f"{source}: " in err and message in err
    assert not (tmp_path / "out.csv").exists()


def output_in_a_folder(tmp_path: Path) -> Path:
    (tmp_path / "out.csv").mkdir()
    return tmp_path / "out.csv"


def output_under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text("a file")
    return tmp_path / "notes.txt" / "out.csv"


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (output_in_a_folder, "out.csv: is a directory; give the path of a file to write"),
        (output_under_a_file, "notes.txt is not a folder"),
        (lambda tmp_path: tmp_path / "out.txt", "out.txt: --output must be .csv or .jsonl"),
        pytest.param(
            lambda tmp_path: Path("/proc/gptclf/out.csv"),
            "cannot write in /proc",
            marks=pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux /proc"),
        ),
    ],
)
def test_an_output_that_cannot_be_written_is_one_line_before_the_model_loads(
    tmp_path, model_never_loads, capsys, output, message
):
    source = tmp_path / "in.csv"
    source.write_text("text\nhello\n")
    assert predict_file(tmp_path / "run", source, output(tmp_path)) == 2
    assert message in one_line_error(capsys)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--chunk-rows=0"], "--chunk-rows must be at least 1, not 0"),
        (["--batch-size=0"], "--batch-size must be at least 1, not 0"),
        (["--encoding=klingon"], "unknown encoding 'klingon' given with --encoding"),
        (["--text-column=body"], "in.csv: no column 'body'; the columns are 'text'"),
    ],
)
def test_bad_options_are_one_line_before_the_model_loads(
    tmp_path, model_never_loads, capsys, options, message
):
    source = tmp_path / "in.csv"
    source.write_text("text\nhello\n")
    assert predict_file(tmp_path / "run", source, tmp_path / "out.csv", *options) == 2
    assert message in one_line_error(capsys)


def test_an_empty_text_on_the_command_line_fails_before_the_model_loads(
    tmp_path, model_never_loads, capsys
):
    assert main(["predict", str(tmp_path / "run"), "hello", ""]) == 2
    assert "text 2: no text to classify" in one_line_error(capsys)


def test_a_missing_output_folder_is_made(trained_run, tmp_path, capsys):
    source = tmp_path / "in.csv"
    source.write_text("text\nhello\n")
    output = tmp_path / "new" / "folders" / "out.jsonl"
    assert predict_file(trained_run, source, output) == 0
    assert [json.loads(line)["text"] for line in output.read_text().splitlines()] == ["hello"]


def test_a_utf16_input_is_read_with_its_encoding(trained_run, tmp_path, capsys):
    source = tmp_path / "in.tsv"
    source.write_bytes(f"id\ttext\n1\t{SPAM[0]}\n2\t{HAM[0]}\n".encode("utf-16"))
    assert predict_file(trained_run, source, tmp_path / "out.csv", "--encoding=utf-16") == 0
    assert [row["label"] for row in read_csv(tmp_path / "out.csv")] == ["spam", "ham"]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


BLANKS = "text\n" + f"{SPAM[1]}\n{HAM[1]}\n\n{HAM[0]}\n" + '""\n' + f"{SPAM[2]}\n"  # 3 and 5


def test_a_row_without_text_in_a_later_chunk_names_its_row(trained_run, tmp_path, capsys):
    source = tmp_path / "in.csv"
    source.write_text(BLANKS)
    assert predict_file(trained_run, source, tmp_path / "out.csv", "--chunk-rows=2") == 2
    err = one_line_error(capsys)
    assert f"{source}: row 3: no text to classify" in err and "--on-empty" in err
    assert list(tmp_path.iterdir()) == [source]


def test_on_empty_skip_leaves_the_rows_out_and_counts_them(trained_run, tmp_path, capsys):
    source = tmp_path / "in.csv"
    source.write_text(BLANKS)
    output = tmp_path / "out.csv"
    assert predict_file(trained_run, source, output, "--chunk-rows=2", "--on-empty=skip") == 0
    rows = read_csv(output)
    assert [r["text"] for r in rows] == [SPAM[1], HAM[1], HAM[0], SPAM[2]]
    assert [r["label"] for r in rows] == ["spam", "ham", "ham", "spam"]
    err = capsys.readouterr().err
    assert "4 rows classified" in err
    assert "2 rows with nothing to classify skipped: rows 3, 5" in err


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_on_empty_mark_writes_the_rows_with_an_empty_label(trained_run, tmp_path, capsys, suffix):
    source = tmp_path / "in.jsonl"
    lines = [{"text": SPAM[0]}, {"text": None}, {}, {"text": HAM[0]}]
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    output = tmp_path / f"out{suffix}"
    assert predict_file(trained_run, source, output, "--chunk-rows=3", "--on-empty=mark") == 0
    if suffix == ".csv":
        rows = read_csv(output)
        assert [r["label"] for r in rows] == ["spam", "", "", "ham"]
        assert rows[1] == {"text": "", "label": "", "probability": "", "p_ham": "", "p_spam": ""}
    else:
        rows = [json.loads(line) for line in output.read_text().splitlines()]
        assert [r["label"] for r in rows] == ["spam", None, None, "ham"]
        assert rows[2] == {"text": "", "label": None, "probability": None, "probabilities": {}}
    assert "2 rows with nothing to classify written with an empty label: rows 2, 3" in (
        capsys.readouterr().err
    )


def test_on_empty_applies_to_texts_given_on_the_command_line(trained_run, capsys):
    texts = [SPAM[0], "", HAM[0]]
    assert main(["predict", str(trained_run), *texts, "--on-empty=skip"]) == 0
    captured = capsys.readouterr()
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == ["spam", "ham"]
    assert "1 text with nothing to classify skipped: text 2" in captured.err
    assert main(["predict", str(trained_run), *texts, "--on-empty=mark", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["spam", None, "ham"]
    assert main(["predict", str(trained_run), *texts, "--on-empty=mark"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "\t\t"


def test_sigterm_is_handled_only_while_a_command_runs():
    before = signal.getsignal(signal.SIGTERM)
    assert main(["models"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_sigterm_mid_run_leaves_no_partial_output_and_exits_143(trained_run, tmp_path):
    source = tmp_path / "in.csv"
    with open(source, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["text"], *([text] for text in (SPAM + HAM) * 20_000)])
    output = tmp_path / "out" / "predictions.csv"
    command = [sys.executable, "-m", "gptclf", "predict", str(trained_run)]
    process = subprocess.Popen(
        [*command, f"--input={source}", f"--output={output}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("out/.predictions.csv.*.tmp")):  # classifying has begun
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no temporary output appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.splitlines()[-1] == "gptclf: terminated (SIGTERM)"
    assert not (tmp_path / "out").exists()  # the temporary file, and the folder made for it
