import builtins
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from gptclf import onnx_runtime
from gptclf.classifier import SequenceClassifier
from gptclf.errors import GptclfError
from gptclf.models.gpt2 import GPTConfig, GPTModel
from gptclf.onnx_runtime import OnnxNetwork, export_graph, int8_layers, quantize_graph
from gptclf.predict import Classifier
from gptclf.weights.huggingface import load_hf_llama

from conftest import HAM, SPAM, padded_batch, save_llama_like, save_tiny_llama

POOLINGS = ("last-token+mean", "last-token")


def tiny_network(family: str, pooling: str, tmp_path) -> SequenceClassifier:
    torch.manual_seed(0)
    if family == "gpt2":
        cfg = GPTConfig(vocab_size=101, context_length=64, emb_dim=16, n_heads=2, n_layers=2)
        model = GPTModel(cfg)
    elif family == "llama":
        save_tiny_llama(tmp_path / "llama", tie_embeddings=True)
        model = load_hf_llama(tmp_path / "llama")
    else:
        save_llama_like(family, tmp_path / family)
        model = load_hf_llama(tmp_path / family)
    return SequenceClassifier(model, n_classes=3, pooling=pooling).eval()


@pytest.mark.parametrize(
    ("family", "pooling"),
    [  # GPT-2 at last-token: tests/test_interop.py's export of a trained run
        ("gpt2", "last-token+mean"),
        ("gemma3", "last-token+mean"),  # the Llama block, windowed layers
    ],
)
def test_exported_graph_gives_the_networks_logits_at_any_batch_size_and_length(
    family, pooling, tmp_path
):
    network = tiny_network(family, pooling, tmp_path)
    export_graph(network, tmp_path / "graph.onnx")
    graph = OnnxNetwork(tmp_path / "graph.onnx")
    for lengths in [(9, 5, 2, 9), (30,), (3, 17, 1, 4, 12, 6, 7)]:  # export saw (5, 3)
        ids, mask = padded_batch(100, lengths)
        with torch.no_grad():
            expected = network(ids, mask)
        torch.testing.assert_close(graph(ids, mask), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_int8_layers_are_all_but_the_down_projections_and_the_head(pooling, tmp_path):
    network = tiny_network("llama", pooling, tmp_path)
    linears = {n for n, m in network.named_modules() if isinstance(m, torch.nn.Linear)}
    kept = {"language_model.out_head", *(n for n in linears if n.endswith("ff.fc3"))}
    assert len(kept) == 3 and int8_layers(network) == linears - kept


def test_quantized_graph_makes_int8_the_layers_reading_the_model_width_not_down_or_head(tmp_path):
    import onnx

    network = tiny_network("llama", "last-token+mean", tmp_path)
    export_graph(network, tmp_path / "graph.onnx")
    quantize_graph(tmp_path / "graph.onnx", tmp_path / "int8.onnx", network)
    nodes = onnx.load(str(tmp_path / "int8.onnx"), load_external_data=False).graph.node
    int8_products = sum(node.op_type == "MatMulInteger" for node in nodes)
    assert int8_products == 6 * 2  # per block: query, key, value, out, gate, up
    ids, mask = padded_batch(100, (9, 5, 2))
    with torch.no_grad():
        expected = network(ids, mask)
    logits = OnnxNetwork(tmp_path / "int8.onnx")(ids, mask)
    assert (logits - expected).abs().max() < 0.05 * expected.abs().max()


@pytest.fixture
def graph_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTCLF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def test_onnx_classifier_answers_as_the_torch_one_and_exports_once(
    trained_run, graph_cache, monkeypatch
):
    texts = [*SPAM, *HAM]
    expected = Classifier.from_pretrained(trained_run).predict_proba(texts)
    actual = Classifier.from_pretrained(trained_run, "onnx").predict_proba(texts)
    np.testing.assert_allclose(actual, expected, atol=0.05)
    assert (actual.argmax(1) == expected.argmax(1)).all()

    def no_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_runtime, "export_graph", no_export)
    again = Classifier.from_pretrained(trained_run, "onnx").predict_proba(texts)
    np.testing.assert_array_equal(again, actual)
    [graph] = graph_cache.glob("*/classifier.onnx")
    assert not list(graph_cache.glob("tmp*"))
    graph.write_bytes(b"damaged")
    monkeypatch.undo()
    monkeypatch.setenv("GPTCLF_CACHE", str(graph_cache.parent))
    rebuilt = Classifier.from_pretrained(trained_run, "onnx").predict_proba(texts)
    np.testing.assert_array_equal(rebuilt, actual)
    assert {p.name for p in graph_cache.iterdir()} == {
        graph.parent.name,
        f"{graph.parent.name}.lock",
    }


def test_processes_loading_one_run_at_once_export_it_once(trained_run, graph_cache, monkeypatch):
    exports = []
    export = onnx_runtime.export_graph

    def counted(*args):
        exports.append(args)
        export(*args)

    monkeypatch.setattr(onnx_runtime, "export_graph", counted)
    with ThreadPoolExecutor(2) as pool:
        loads = [pool.submit(Classifier.from_pretrained, trained_run, "onnx") for _ in range(2)]
        answers = [load.result().predict_proba([SPAM[0], HAM[0]]) for load in loads]
    assert len(exports) == 1
    np.testing.assert_array_equal(*answers)


def test_onnx_runtime_on_a_gpu_is_refused_before_any_export(trained_run, graph_cache, capsys):
    from gptclf.cli import main

    assert main(["predict", str(trained_run), "--runtime", "onnx", "--device", "cuda", "x"]) == 2
    assert "--runtime onnx computes on the CPU" in capsys.readouterr().err
    assert not graph_cache.exists()


def test_onnx_runtime_without_its_extra_is_an_error_naming_it(trained_run, monkeypatch):
    real_import = builtins.__import__

    def without_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnxruntime)
    with pytest.raises(GptclfError, match=r"gptclf\[onnx\]"):
        Classifier.from_pretrained(trained_run, "onnx")


def test_cli_predict_with_onnx_runtime_prints_the_torch_labels(trained_run, graph_cache, capsys):
    from gptclf.cli import main

    texts = [SPAM[0], HAM[0]]
    assert main(["predict", str(trained_run), *texts]) == 0
    by_torch = capsys.readouterr().out
    assert main(["predict", str(trained_run), "--runtime", "onnx", *texts]) == 0
    by_onnx = capsys.readouterr().out
    labels = [[line.split("\t")[0] for line in out.splitlines()] for out in (by_torch, by_onnx)]
    assert labels[0] == labels[1] == ["spam", "ham"]
