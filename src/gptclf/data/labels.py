"""Class ids for label values: a stable order, display names, and lookup by value or name; for
multi-label data, each text's set of labels as a 0/1 row over the label ids."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from gptclf.errors import GptclfError

SHOWN_LABELS = 10


@dataclass(frozen=True)
class LabelMap:
    """Class id ``i`` stands for label value ``values[i]``, shown as ``names[i]``. With
    ``multi_label`` a text carries any number of the labels (each decided on its own)."""

    values: tuple[int | str, ...]
    names: tuple[str, ...]
    multi_label: bool = False

    @classmethod
    def from_labels(
        cls,
        labels: Iterable[int | str] | Iterable[tuple[int | str, ...]],
        names: Mapping | None = None,
        source: str = "the labels",
        multi_label: bool = False,
    ) -> LabelMap:
        """The distinct labels in order (ints numerically, then strings), so the same set of
        labels always gets the same ids; ``names`` maps a value (or its string) to a name. With
        ``multi_label``, each of ``labels`` is a tuple of labels."""
        flat = [label for row in labels for label in row] if multi_label else labels
        values = tuple(sorted(set(flat), key=_order_key))
        if len(values) < 2:
            found = f"only one class ({values[0]!r})" if values else "no class"
            raise GptclfError(f"{found} in {source}; a classifier needs at least two")
        _check_distinct_as_strings(values, source)
        names = names or {}
        shown = tuple(str(names.get(value, names.get(str(value), value))) for value in values)
        _check_distinct_names(shown)
        return cls(values, shown, multi_label)

    def targets(
        self, labels: Iterable[int | str] | Iterable[tuple[int | str, ...]], source: str
    ) -> list[int] | np.ndarray:
        """What training learns for each text: its class id, or with ``multi_label`` a float32
        row with 1 at the id of each of its labels."""
        if not self.multi_label:
            return self.ids(labels, source)
        sets = list(labels)
        if sets and not all(isinstance(row, tuple) for row in sets):
            raise GptclfError(f"{source}: one label per text, where this model gives several")
        ids = self.ids([label for row in sets for label in row], source)
        rows = np.repeat(np.arange(len(sets)), [len(row) for row in sets])
        indicators = np.zeros((len(sets), len(self)), dtype=np.float32)
        indicators[rows, ids] = 1.0
        return indicators

    def ids(self, labels: Iterable[int | str], source: str) -> list[int]:
        """The id of each label, matched by value, by the value's string, or by name."""
        by_key = {name: i for i, name in enumerate(self.names)}
        by_key.update({str(value): i for i, value in enumerate(self.values)})
        labels = list(labels)
        unseen = {label for label in labels if str(label) not in by_key}
        if unseen:
            raise GptclfError(
                f"{source}: labels not seen in training: "
                f"{_listed([repr(label) for label in sorted(unseen, key=_order_key)])}; "
                f"known labels: {self._known()}"
            )
        return [by_key[str(label)] for label in labels]

    def require_single(self, what: str) -> None:
        """Refuse multi-label data where ``what`` handles one label per text."""
        if self.multi_label:
            raise GptclfError(f"{what} handles one label per text, not multi-label data")

    def to_json(self) -> dict:
        stored = {"values": list(self.values), "names": list(self.names)}
        return stored | ({"multi_label": True} if self.multi_label else {})

    @classmethod
    def from_json(cls, stored: dict) -> LabelMap:
        """The map that ``to_json`` stored; a damaged one is an error."""
        try:
            values, names = tuple(stored["values"]), tuple(stored["names"])
            multi_label = stored.get("multi_label", False)
        except (AttributeError, KeyError, TypeError) as exc:
            raise GptclfError(f"stored label map is damaged: {stored!r}") from exc
        if len(values) != len(names) or not isinstance(multi_label, bool):
            raise GptclfError(f"stored label map is damaged: {stored!r}")
        return cls(values, names, multi_label)

    def __len__(self) -> int:
        return len(self.values)

    def _known(self) -> str:
        shown = [
            repr(value) if name == str(value) else f"{value!r} ({name})"
            for value, name in zip(self.values, self.names, strict=True)
        ]
        return _listed(shown)


def _order_key(value: int | str) -> tuple[int, int | str]:
    return (0, value) if isinstance(value, int) else (1, value)


def _check_distinct_as_strings(values: tuple[int | str, ...], source: str) -> None:
    """Refuse e.g. 1 and "1" together: files differ in how they store labels, so they match."""
    seen: dict[str, int | str] = {}
    for value in values:
        if str(value) in seen:
            raise GptclfError(
                f"{source}: labels {seen[str(value)]!r} and {value!r} "
                "are the same label stored differently"
            )
        seen[str(value)] = value


def _check_distinct_names(names: tuple[str, ...]) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise GptclfError(f"label names {repeated} are given to more than one label")


def _listed(items: list[str]) -> str:
    """The first ``SHOWN_LABELS`` items, comma-separated, then "and N more"."""
    shown = ", ".join(items[:SHOWN_LABELS])
    more = len(items) - SHOWN_LABELS
    return shown + (f" and {more} more" if more > 0 else "")
