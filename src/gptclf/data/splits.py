"""Stratified train/validation/test splits of one labelled file, and writing them out."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from gptclf.data.labels import LabelMap
from gptclf.data.readers import LabelledTexts, write_labelled
from gptclf.errors import GptclfError

SPLIT_NAMES = ("train", "validation", "test")
MIN_STRATUM = 6  # multi-label texts of a rarest label this rare are stratified together


def stratified_split(
    data: LabelledTexts,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 123,
) -> dict[str, LabelledTexts]:
    """Train, validation and test parts with each class in the same proportions, deterministic
    in ``seed``; a split whose fraction is 0 is left out. Each part keeps the file's row order.
    Multi-label texts are stratified by their rarest label."""
    if data.labels is None:
        raise GptclfError(f"{data.source}: no labels to split by")
    label_map = LabelMap.from_labels(data.labels, source=data.source, multi_label=data.multi_label)
    class_ids = _strata(data, label_map)
    sizes = _split_sizes(fractions, len(class_ids), len(label_map), data.source)
    used = [name for name in SPLIT_NAMES if sizes[name] > 0]
    _check_class_sizes(_label_list(data), len(used), data.source)
    positions = {}
    remaining = list(range(len(class_ids)))
    for name in ("test", "validation"):
        if name in used:
            remaining, positions[name] = _split_off(
                remaining, class_ids, sizes[name], seed, data.source
            )
    positions["train"] = remaining
    parts = {name: _take(data, sorted(positions[name])) for name in used}
    _check_every_class_present(parts, data)
    return parts


def write_split(
    splits: dict[str, LabelledTexts], out_dir: Path, fmt: str = "csv"
) -> dict[str, Path]:
    """Write ``<split>.<fmt>`` per split with the source's column names; return the paths."""
    paths = {}
    for name, part in splits.items():
        if part.labels is None:
            raise GptclfError(f"{part.source}: the {name} split has no labels to write")
        paths[name] = Path(out_dir) / f"{name}.{fmt}"
        write_labelled(
            paths[name],
            part.texts,
            part.labels,
            part.text_column,
            part.label_column or "label",
            label_separator=part.label_separator,
            label_columns=part.label_columns,
            pairs=part.pairs,
            pair_column=part.pair_column or "pair",
        )
    return paths


def _strata(data: LabelledTexts, labels: LabelMap) -> list[int]:
    """The class id of each text; for multi-label texts, that of its rarest label (the number
    of labels for a text with none), texts whose stratum would be too small to share out
    (fewer than ``MIN_STRATUM``) pooled in one."""
    if not data.multi_label:
        return labels.ids(data.labels, data.source)
    counts = Counter(_label_list(data))
    rarest = [
        min(row, key=lambda label: (counts[label], str(label))) if row else None
        for row in data.labels
    ]
    present = [label for label in rarest if label is not None]
    ids = iter(labels.ids(present, data.source))
    strata = [len(labels) if label is None else next(ids) for label in rarest]
    sizes = Counter(strata)
    return [s if sizes[s] >= MIN_STRATUM else len(labels) + 1 for s in strata]


def _label_list(data: LabelledTexts) -> list[int | str]:
    """Every label of every text, one entry per text and label."""
    return [label for row in data.labels for label in row] if data.multi_label else data.labels


def _split_sizes(
    fractions: tuple[float, float, float], rows: int, classes: int, source: str
) -> dict[str, int]:
    """Rows per split (0 where its fraction is 0): validation and test are rounded, train takes
    the rest; each split in use needs at least one row per class."""
    if len(fractions) != 3 or fractions[0] <= 0 or min(fractions) < 0:
        raise GptclfError(
            f"split fractions {tuple(fractions)} must be train > 0, validation >= 0 and test >= 0"
        )
    if not math.isclose(sum(fractions), 1.0):
        raise GptclfError(f"split fractions {tuple(fractions)} must sum to 1")
    sizes = {
        name: round(fraction * rows) for name, fraction in zip(SPLIT_NAMES, fractions, strict=True)
    }
    sizes["train"] = rows - sizes["validation"] - sizes["test"]
    for name, fraction in zip(SPLIT_NAMES, fractions, strict=True):
        if fraction > 0 and sizes[name] < classes:
            raise GptclfError(
                f"{source}: a {name} fraction of {fraction} gives {max(sizes[name], 0)} of "
                f"{rows} rows, fewer than the {classes} classes; use more data or a larger fraction"
            )
    return sizes


def _check_class_sizes(labels: list[int | str], splits: int, source: str) -> None:
    """Every split needs a member of every class, so a class needs a row per split."""
    label, count = min(Counter(labels).items(), key=lambda item: item[1])
    if count < splits:
        raise GptclfError(
            f"{source}: class {label!r} has only {count} row(s); a stratified split into "
            f"{splits} parts needs at least {splits} per class"
        )


def _split_off(
    positions: list[int], class_ids: list[int], size: int, seed: int, source: str
) -> tuple[list[int], list[int]]:
    """``positions`` minus ``size`` of them drawn stratified by class, and those drawn."""
    from sklearn.model_selection import train_test_split  # loads in seconds: only to split

    try:
        kept, drawn = train_test_split(
            positions,
            test_size=size,
            stratify=[class_ids[position] for position in positions],
            random_state=seed,
        )
    except ValueError as exc:
        raise GptclfError(f"{source}: cannot split stratified by class: {exc}") from exc
    return kept, drawn


def _take(data: LabelledTexts, positions: list[int]) -> LabelledTexts:
    """The examples at ``positions``, with their row numbers in the source."""
    return LabelledTexts(
        source=data.source,
        texts=[data.texts[position] for position in positions],
        labels=[data.labels[position] for position in positions],
        rows=[data.rows[position] for position in positions],
        dropped_empty=[],
        text_column=data.text_column,
        label_column=data.label_column,
        multi_label=data.multi_label,
        label_separator=data.label_separator,
        label_columns=data.label_columns,
        pairs=None if data.pairs is None else [data.pairs[position] for position in positions],
        pair_column=data.pair_column,
    )


def _check_every_class_present(parts: dict[str, LabelledTexts], data: LabelledTexts) -> None:
    totals = Counter(_label_list(data))
    for name, part in parts.items():
        absent = sorted(set(totals) - set(_label_list(part)), key=str)
        if absent:
            label = absent[0]
            raise GptclfError(
                f"{data.source}: the {name} split would have no row of class {label!r} "
                f"({totals[label]} rows in all); use more data or other split fractions"
            )
