"""The summary shown before training and by ``gptclf data inspect``: rows, dropped rows, class
balance, token-length percentiles and how many texts will be truncated, per split."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from gptclf.data.labels import LabelMap
from gptclf.data.readers import LabelledTexts
from gptclf.data.tokenized import TokenizedTexts

PERCENTILES = (50, 90, 99)


@dataclass
class SplitSummary:
    name: str
    rows: int
    dropped_empty: int
    class_counts: dict[str, int] | None  # display name -> rows, in label-id order
    token_percentiles: dict[str, int]  # p50, p90, p99, max of the untruncated lengths
    truncated: int
    max_length: int


def summarize_split(
    name: str, data: LabelledTexts, tokens: TokenizedTexts, labels: LabelMap | None
) -> SplitSummary:
    lengths = tokens.full_lengths
    percentiles = (
        {f"p{p}": int(np.percentile(lengths, p)) for p in PERCENTILES} if len(lengths) else {}
    )
    percentiles["max"] = int(lengths.max()) if len(lengths) else 0
    counts = None
    if labels is not None and data.labels is not None:
        targets = labels.targets(data.labels, data.source)
        per_id = Counter(targets) if not labels.multi_label else dict(enumerate(targets.sum(0)))
        counts = {labels.names[i]: int(per_id.get(i, 0)) for i in range(len(labels))}
    return SplitSummary(
        name=name,
        rows=len(data.texts),
        dropped_empty=len(data.dropped_empty),
        class_counts=counts,
        token_percentiles=percentiles,
        truncated=tokens.n_truncated,
        max_length=tokens.max_length,
    )


def class_balance(counts: dict[str, int] | None, rows: int) -> str:
    """Each class's rows and share, e.g. "ham 70 (47.0%), spam 79 (53.0%)" ("-" unlabelled)."""
    if counts is None:
        return "-"
    return ", ".join(f"{name} {n} ({100 * n / max(rows, 1):.1f}%)" for name, n in counts.items())


def format_summary(summaries: list[SplitSummary]) -> str:
    """A plain-text table, one line per split."""
    header = ("split", "rows", "dropped empty", "tokens p50/p90/p99/max", "truncated", "classes")
    rows = [header]
    for s in summaries:
        p = s.token_percentiles
        lengths = "/".join(str(p.get(k, 0)) for k in ("p50", "p90", "p99", "max"))
        rows.append(
            (
                s.name,
                str(s.rows),
                str(s.dropped_empty),
                lengths,
                f"{s.truncated} (> {s.max_length} tokens)",
                class_balance(s.class_counts, s.rows),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
