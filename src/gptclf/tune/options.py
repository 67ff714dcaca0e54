"""The options of ``gptclf tune`` besides the data and the base recipe."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gptclf.errors import GptclfError
from gptclf.options import at_least, option

UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "10m" or "1.5h"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if match is None:
        raise GptclfError(f"--budget {text!r}: give a duration such as 90s, 10m or 1h")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


@dataclass
class TuneOptions:
    budget: float = option(
        600.0,
        "time for the search and the final run, e.g. 90s, 10m, 1h",
        parse=parse_duration,
        valid=lambda v: v > 0,
        rule="positive",
        metavar="DURATION",
    )
    folds: int = option(5, "cross-validation folds", **at_least(2))
