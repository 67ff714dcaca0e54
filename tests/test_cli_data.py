"""``gptclf data``: every kind of bad input is one line naming the problem, with exit code 2."""

import json

from gptclf.cli import main

FAST = ["--model", "gpt2-small"]  # GPT-2's tokenizer loads instantly


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def expect_error(capsys, message, *argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("gptclf: error: ") and err.count("\n") == 1, err
    assert message in err, err
    return err


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return str(path)


ROWS = "win cash now,spam\nsee you at 5,ham\nfree prize,spam\nok lunch?,ham\n"
GOOD_CSV = "text,label\n" + ROWS


def csv_repeating_rows(times: int) -> str:
    return "text,label\n" + ROWS * times


def test_inspect_summarises_a_good_file(tmp_path, capsys):
    code, out, _ = run(capsys, "data", "inspect", write(tmp_path / "d.csv", GOOD_CSV), *FAST)
    assert code == 0
    assert "text column 'text', label column 'label'" in out
    assert "ham 2 (50.0%), spam 2 (50.0%)" in out


def test_missing_file(tmp_path, capsys):
    expect_error(
        capsys,
        f"{tmp_path / 'no.csv'}: file not found",
        "data",
        "inspect",
        str(tmp_path / "no.csv"),
    )


def test_unreadable_file(tmp_path, capsys):
    (tmp_path / "dir.csv").mkdir()
    expect_error(capsys, "dir.csv: is a directory", "data", "inspect", str(tmp_path / "dir.csv"))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    expect_error(capsys, str(broken), "data", "inspect", str(broken))


def test_unknown_format(tmp_path, capsys):
    err = expect_error(capsys, "d.xlsx", "data", "inspect", write(tmp_path / "d.xlsx", GOOD_CSV))
    assert ".csv" in err and ".jsonl" in err and ".parquet" in err


def test_missing_column_lists_the_columns_that_exist(tmp_path, capsys):
    path = write(tmp_path / "d.csv", GOOD_CSV)
    err = expect_error(capsys, "'body'", "data", "inspect", path, "--text-column", "body")
    assert "'text'" in err and "'label'" in err


def test_undetectable_columns_ask_for_the_options(tmp_path, capsys):
    path = write(tmp_path / "d.csv", "a,b\nx,1\ny,2\n")
    err = expect_error(capsys, "--text-column", "data", "inspect", path)
    assert "'a'" in err and "'b'" in err


def test_empty_texts_are_dropped_and_counted(tmp_path, capsys):
    path = write(tmp_path / "d.csv", GOOD_CSV + ",ham\n   ,spam\n")
    code, out, _ = run(capsys, "data", "inspect", path, *FAST)
    assert code == 0
    assert "dropped 2 row(s) with empty text: 5, 6" in out


def test_strict_makes_empty_text_an_error_naming_the_rows(tmp_path, capsys):
    path = write(tmp_path / "d.csv", GOOD_CSV + ",ham\n   ,spam\n")
    expect_error(capsys, "5", "data", "inspect", path, "--strict", *FAST)


def test_missing_label_names_the_rows(tmp_path, capsys):
    path = write(tmp_path / "d.csv", GOOD_CSV + "hello,\nbye,\n")
    err = expect_error(capsys, "label", "data", "inspect", path, *FAST)
    assert "5" in err and "6" in err


def test_only_one_class(tmp_path, capsys):
    path = write(tmp_path / "d.csv", "text,label\na,x\nb,x\n")
    expect_error(capsys, "only one class ('x')", "data", "inspect", path, *FAST)


def test_a_class_too_small_to_split(tmp_path, capsys):
    path = write(tmp_path / "d.csv", csv_repeating_rows(20) + "lonely,rare\n")
    expect_error(capsys, "'rare'", "data", "split", path, "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_split_writes_a_reusable_stratified_split(tmp_path, capsys):
    path = write(tmp_path / "d.csv", csv_repeating_rows(10))
    code, out, _ = run(capsys, "data", "split", path, "--out", str(tmp_path / "out"))
    assert code == 0 and "train" in out
    code, out, _ = run(capsys, "data", "inspect", str(tmp_path / "out" / "train.csv"), *FAST)
    assert code == 0 and "ham 14 (50.0%), spam 14 (50.0%)" in out


def test_invalid_utf8_names_the_byte_offset_and_row(tmp_path, capsys):
    path = write(tmp_path / "d.csv", "text,label\nok,ham\ncaf\u00e9,spam\n", encoding="latin-1")
    err = expect_error(capsys, "d.csv", "data", "inspect", path, *FAST)
    assert "byte offset 21" in err and "row 2" in err and "--encoding" in err
    code, out, _ = run(capsys, "data", "inspect", path, "--encoding", "latin-1", *FAST)
    assert code == 0 and "ham 1 (50.0%), spam 1 (50.0%)" in out


def test_malformed_jsonl_names_the_line(tmp_path, capsys):
    rows = [
        json.dumps({"text": "a", "label": 1}),
        "{not json",
        json.dumps({"text": "b", "label": 0}),
    ]
    path = write(tmp_path / "d.jsonl", "\n".join(rows) + "\n")
    expect_error(capsys, "line 2", "data", "inspect", path, *FAST)


def test_truncation_is_counted_keeping_the_head_or_the_tail(tmp_path, capsys):
    path = write(tmp_path / "d.csv", GOOD_CSV)
    for side in ("head", "tail"):
        code, out, _ = run(
            capsys, "data", "inspect", path, "--max-length", "2", "--truncate", side, *FAST
        )
        assert code == 0 and "3 (> 2 tokens)" in out


def test_text_the_tokenizer_cannot_represent_is_an_error(tmp_path, capsys, monkeypatch):
    from gptclf.tokenizers import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    monkeypatch.setattr(
        tokenizer, "encode_batch", lambda texts: [[] if t == "\x04" else [1] for t in texts]
    )
    path = write(tmp_path / "d.csv", GOOD_CSV + "\x04,ham\n")
    expect_error(capsys, "row(s) 5 into no tokens", "data", "inspect", path, *FAST)


def test_bad_split_fractions(tmp_path, capsys):
    path = write(tmp_path / "d.csv", csv_repeating_rows(10))
    expect_error(
        capsys,
        "must sum to 1",
        "data",
        "split",
        path,
        "--out",
        str(tmp_path / "o"),
        "--fractions",
        "0.7",
        "0.2",
        "0.2",
    )
