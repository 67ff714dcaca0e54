"""What the benchmark scripts share: running a ``gptclf`` command in-process, and an exported
run's probabilities as transformers' pipeline and ONNX Runtime compute them."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch

from gptclf.cli import main as gptclf
from gptclf.onnx_runtime import OnnxNetwork
from gptclf.predict import Classifier


def run(*argv: str) -> str:
    """What ``gptclf argv...`` prints; an error stops the benchmark."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        if gptclf(list(argv)) != 0:
            raise SystemExit(f"gptclf {' '.join(argv)} failed")
    return printed.getvalue()


def pipeline_probabilities(folder: Path, texts: list[str], names: tuple[str, ...]) -> np.ndarray:
    """The probabilities (columns in ``names``' order) that ``transformers.pipeline`` gives for
    ``texts`` with the exported folder."""
    import transformers

    classify = transformers.pipeline("text-classification", model=str(folder), top_k=None)
    rows = classify(texts, truncation=True, batch_size=16)
    return np.array([[{r["label"]: r["score"] for r in row}[n] for n in names] for row in rows])


def onnx_probabilities(folder: Path, classifier: Classifier, texts: list[str]) -> np.ndarray:
    """The probabilities of the exported ONNX graph, one text at a time (no padding to account
    for): the softmax of its logits, or each label's sigmoid for a multi-label run."""
    graph = OnnxNetwork(folder / "model.onnx")
    rows = []
    for ids in classifier.token_ids(texts):
        ids = torch.tensor([ids])
        logits = graph(ids, torch.ones_like(ids))[0]
        rows.append(
            (logits.sigmoid() if classifier.labels.multi_label else logits.softmax(-1)).numpy()
        )
    return np.array(rows)
