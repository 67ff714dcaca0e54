"""A trained classifier computed by ONNX Runtime (``--runtime onnx``): its float32 network
exported once as an ONNX graph (dynamic batch and length; padded batches masked), the linear
layers' weights made int8 by ONNX Runtime's dynamic quantization, and the graph kept on disk,
addressed by the run's config (which names its weights by SHA-256) and the runtime's version.

The feed-forward's down projection and the class head stay float32: one int8 scale per input
vector cannot hold the outliers of the feed-forward's wide activations (quantizing every layer
cost 4 test errors of 300 on the SMS demo; leaving these two float32, none)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from gptclf.classifier import SequenceClassifier
from gptclf.errors import GptclfError
from gptclf.home import home_dir
from gptclf.options import option
from gptclf.precision import cpu_has_int8_dot

RUNTIMES = ("torch", "onnx")
FORMAT = "gptclf-onnx-1"
GRAPH = "classifier.onnx"


def runtime_option() -> Any:
    """The ``runtime`` option of the commands that classify with a trained run."""
    help_text = "onnx: ONNX Runtime on the run's int8 graph (exported on first use, then cached)"
    return option("torch", help_text, choices=RUNTIMES)


def require_cpu(device: str | torch.device) -> None:
    """ONNX Runtime computes here on the CPU only."""
    if torch.device(device).type != "cpu":
        raise GptclfError("--runtime onnx computes on the CPU; use --runtime torch on a GPU")


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise GptclfError("--runtime onnx needs ONNX Runtime; pip install 'gptclf[onnx]'") from exc
    return onnxruntime


def export_graph(network: SequenceClassifier, path: Path) -> None:
    """Write ``network`` (float32) to ``path`` as an ONNX graph taking ``ids`` and
    ``attention_mask`` (batch, length), both dynamic, and giving ``logits``."""
    ids = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]])
    mask = (torch.arange(5) < torch.tensor([[5], [3]])).long()
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=1 << 16)
    dims = {0: batch, 1: length}
    with torch.no_grad(), _quiet():
        torch.onnx.export(
            network.eval(),
            (ids, mask),
            str(path),
            input_names=["ids", "attention_mask"],
            output_names=["logits"],
            dynamic_shapes=(dims, dims),
            dynamo=True,
            optimize=True,
            external_data=True,
            verbose=False,
        )


def int8_layers(network: SequenceClassifier) -> set[str]:
    """The names of ``network``'s linear layers whose weights the graph holds in int8: those
    reading vectors of the model's width (not the feed-forward's down projection, which reads
    its wide activations, nor the class head)."""
    width = network.language_model.cfg.emb_dim
    return {
        name
        for name, module in network.named_modules()
        if isinstance(module, nn.Linear)
        and module.in_features <= width
        and module is not network.head
    }


def quantize_graph(source: Path, target: Path, network: SequenceClassifier) -> None:
    """``source`` with int8 weights (per output channel; inputs quantized as they come) in the
    matrix products of :func:`int8_layers`. Without VNNI or AMX the weights keep 7 bits: the
    CPU's 8-bit products then add pairs in 16 bits, which full-range weights overflow (ONNX
    Runtime's advice, ``reduce_range``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=not cpu_has_int8_dot(),
            nodes_to_quantize=_nodes_of(source, int8_layers(network)),
            use_external_data_format=True,
        )


def _nodes_of(path: Path, modules: set[str]) -> list[str]:
    """The matrix-product nodes of the graph at ``path`` that compute one of ``modules``,
    found by the module path the exporter records on each node."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    found = []
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        scopes = next((p.value for p in node.metadata_props if p.key.endswith("name_scopes")), "")
        names = {s.strip(" '").removeprefix("network.") for s in scopes.strip("[]").split(",")}
        if names & modules:
            found.append(node.name)
    return found


def graph_key(config_bytes: bytes) -> str:
    """What a run's graph depends on: the run's config (its weights' SHA-256, base model,
    recipe), this module's ``FORMAT`` (raise it when the graph's making changes), the ONNX
    Runtime version and whether the CPU has int8 dot products."""
    making = f"{FORMAT}\0{_onnxruntime().__version__}\0{cpu_has_int8_dot()}\0"
    return hashlib.sha256(making.encode() + config_bytes).hexdigest()


def cached_graph(config_bytes: bytes, network: SequenceClassifier) -> OnnxNetwork:
    """A session on the int8 graph of the run whose config is ``config_bytes`` and whose
    float32 network is ``network``: read from the cache, or exported, quantized and written
    there whole (one process at a time; the others wait and read it)."""
    folder = home_dir("onnx", graph_key(config_bytes))
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.with_suffix(".lock")):
        graph = _session_or_none(folder / GRAPH)
        if graph is not None:
            return graph
        print(f"gptclf: making the ONNX graph of this run, once, in {folder}", file=sys.stderr)
        with tempfile.TemporaryDirectory(dir=folder.parent) as work:
            exported, built = Path(work, "float32", GRAPH), Path(work, "int8", GRAPH)
            exported.parent.mkdir()
            built.parent.mkdir()
            export_graph(network, exported)
            quantize_graph(exported, built, network)
            if folder.exists():  # a damaged graph: moved into the work folder, removed with it
                folder.rename(Path(work, "damaged"))
            built.parent.rename(folder)
        return OnnxNetwork(folder / GRAPH)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without the exporter's and the quantizer's warnings and log lines (advice for their
    own developers, not for gptclf's users)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def _session_or_none(path: Path) -> OnnxNetwork | None:
    """A session on the graph at ``path``, or None where there is none that ONNX Runtime
    takes."""
    if not path.is_file():
        return None
    try:
        return OnnxNetwork(path)
    except Exception:  # damaged or foreign, whatever ONNX Runtime says of it
        return None


class OnnxNetwork:
    """An ONNX Runtime session on a classifier's graph, on the CPU: class logits of a batch."""

    def __init__(self, path: Path):
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = {"ids": ids.numpy(), "attention_mask": attention_mask.numpy()}
        (logits,) = self.session.run(["logits"], feeds)
        return torch.from_numpy(np.asarray(logits, dtype=np.float32))
