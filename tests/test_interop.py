import json

import numpy as np
import pytest
import torch
import transformers

from gptclf.cli import main
from gptclf.data.readers import read_labelled, write_labelled
from gptclf.onnx_runtime import OnnxNetwork
from gptclf.predict import Classifier
from gptclf.tokenizers import gpt2_hf_tokenizer

from conftest import HAM, SPAM, TAGGED, byte_tokenizer_json, save_llama_like, split_options

EXPORTABLE = ["--pooling=last-token", "--ensemble=none", "--lr=3e-3", "--epochs=2"]
TEXTS = [*SPAM, *HAM, "a longer message, " * 6]
START = {"gemma3": 1}  # the start token a kind's tokenizer puts before every text, as Gemma's


def trained(spam_data, model_folder, out, *options) -> None:
    argv = ["train", *split_options(spam_data), f"--model={model_folder}", f"--out={out}"]
    assert main([*argv, "--precision=fp32", "--quiet", *options]) == 0


@pytest.fixture(scope="module")
def numbered_spam_data(spam_data, tmp_path_factory):
    """``spam_data`` labelled 0 (ham) and 1 (spam), with those names in ``labels.json``."""
    folder = tmp_path_factory.mktemp("numbered")
    for name in ("train", "val", "test"):
        data = read_labelled(spam_data / f"{name}.csv")
        numbers = [int(label == "spam") for label in data.labels]
        write_labelled(folder / f"{name}.csv", data.texts, numbers)
    (folder / "labels.json").write_text(json.dumps({"0": "ham", "1": "spam"}))
    return folder


@pytest.fixture(scope="module")
def gpt2_run(numbered_spam_data, tiny_gpt2_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "gpt2"
    cut = ["--max-length=12", "--truncate=tail"]  # the long text loses its start
    trained(numbered_spam_data, tiny_gpt2_base, out, *EXPORTABLE, *cut, "--trainable=all")
    return out


@pytest.fixture(scope="module")
def llama_like_run(spam_data, tmp_path_factory):
    """Runs on tiny Llama-like models, made once each: Qwen3's norms, Llama 3's rope scaling,
    Phi-3's fused tensors and window (exported as the Mistral it equals)."""
    made = {}

    def run(kind: str):
        if kind not in made:
            base = tmp_path_factory.mktemp(kind)
            save_llama_like(kind, base)
            (base / "tokenizer.json").write_text(byte_tokenizer_json(bos=START.get(kind)))
            made[kind] = base.parent / f"{kind}-run"
            head = ["--no-head-bias", "--trainable=last-block"]
            trained(spam_data, base, made[kind], *EXPORTABLE, *head)
        return made[kind]

    return run


def pipeline_probabilities(folder, texts) -> np.ndarray:
    classify = transformers.pipeline("text-classification", model=str(folder), top_k=None)
    labels = json.loads((folder / "config.json").read_text())["id2label"]
    scores = [{r["label"]: r["score"] for r in row} for row in classify(texts, truncation=True)]
    return np.array([[row[labels[str(i)]] for i in range(len(labels))] for row in scores])


@pytest.mark.parametrize("kind", ["gpt2", "qwen3", "llama3", "phi3", "olmo2", "gemma3"])
def test_hf_export_gives_our_probabilities_in_the_transformers_pipeline(
    kind, gpt2_run, llama_like_run, tmp_path
):
    run_dir = gpt2_run if kind == "gpt2" else llama_like_run(kind)
    assert main(["export", str(run_dir), "--format=hf", f"--out={tmp_path / 'hf'}"]) == 0
    classifier = Classifier.from_pretrained(run_dir)
    ours = classifier.predict_proba(TEXTS)
    np.testing.assert_allclose(pipeline_probabilities(tmp_path / "hf", TEXTS), ours, atol=1e-5)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")(TEXTS[0]).input_ids
    assert theirs == classifier.token_ids(TEXTS[:1])[0]
    if kind in START:
        assert theirs[0] == START[kind]
    card = (tmp_path / "hf" / "README.md").read_text()
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert f"| test | {test['n']} | {test['accuracy']:.4f} |" in card
    assert "Labels: ham, spam." in card and "pooling: 'last-token'" in card


def test_gpt2_head_bias_is_folded_into_the_final_norm(gpt2_run, tmp_path):
    network = Classifier.from_pretrained(gpt2_run).network
    assert network.head.bias.abs().max() > 1e-3  # a bias that matters
    main(["export", str(gpt2_run), "--format=hf", f"--out={tmp_path / 'hf'}"])
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf")
    added = model.transformer.ln_f.bias - network.language_model.final_norm.shift
    with torch.no_grad():
        torch.testing.assert_close(model.score.weight @ added, network.head.bias)
    stored = json.loads((tmp_path / "hf" / "tokenizer.json").read_text())
    assert stored["post_processor"] is None


def test_onnx_export_computes_the_networks_logits_at_any_batch(gpt2_run, tmp_path):
    assert main(["export", str(gpt2_run), "--format=onnx", f"--out={tmp_path / 'onnx'}"]) == 0
    classifier = Classifier.from_pretrained(gpt2_run)
    ids = classifier.token_ids(TEXTS)
    width = max(map(len, ids))
    batch = torch.tensor([x + [classifier.tokenizer.pad_id] * (width - len(x)) for x in ids])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    with torch.no_grad():
        expected = classifier.network(batch, mask)
    logits = OnnxNetwork(tmp_path / "onnx" / "model.onnx")(batch, mask)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    config = json.loads((tmp_path / "onnx" / "config.json").read_text())
    assert config["id2label"] == {"0": "ham", "1": "spam"}
    assert (tmp_path / "onnx" / "tokenizer.json").is_file()


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ("trained_run", "cannot export to hf: it blends with a TF-IDF baseline"),
        ("qwen3_with_head_bias", "its class head has a bias"),
    ],
)
def test_what_transformers_cannot_express_is_refused_in_one_line(
    run, message, request, tmp_path, capsys
):
    run_dir = request.getfixturevalue(run)
    capsys.readouterr()  # what training the run printed
    assert main(["export", str(run_dir), "--format=hf", f"--out={tmp_path / 'hf'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "hf").exists() and list(tmp_path.iterdir()) == []


@pytest.fixture
def qwen3_with_head_bias(spam_data, tmp_path):
    base = tmp_path.parent / f"{tmp_path.name}-base"
    save_llama_like("qwen3", base)
    (base / "tokenizer.json").write_text(byte_tokenizer_json())
    out = tmp_path.parent / f"{tmp_path.name}-run"
    trained(spam_data, base, out, *EXPORTABLE, "--trainable=head")
    return out


def test_export_never_writes_into_an_existing_folder(gpt2_run, tmp_path, capsys):
    (tmp_path / "hf").mkdir()
    assert main(["export", str(gpt2_run), "--format=hf", f"--out={tmp_path / 'hf'}"]) == 2
    assert "already exists" in capsys.readouterr().err


def saved_sequence_classifier(kind: str, folder):
    """A tiny random ``*ForSequenceClassification`` of ``kind`` (gpt2 or a Llama-like model)
    saved with labels, a pad token and a tokenizer, as a user's finetuned checkpoint would be."""
    torch.manual_seed(3)
    labels = {"id2label": {0: "pos", 1: "neg", 2: "neutral"}, "pad_token_id": 0}
    if kind == "gpt2":
        config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, **labels)
        model = transformers.GPT2ForSequenceClassification(config)
        labels["pad_token_id"] = config.eos_token_id
        model.config.pad_token_id = config.eos_token_id
    else:
        _, classifier_class = save_llama_like(kind, folder)
        model = classifier_class.from_pretrained(folder, **labels)
        (folder / "tokenizer.json").write_text(byte_tokenizer_json(bos=START.get(kind)))
        settings = {"tokenizer_class": "PreTrainedTokenizerFast"}  # not the family's own
        (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    model.save_pretrained(folder)
    if kind == "gpt2":  # transformers' own GPT-2 tokenizer files, as the hub has them
        tokenizer = gpt2_hf_tokenizer().backend
        (folder / "tokenizer.json").write_text(tokenizer.to_str())
        settings = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}
        (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    return folder


@pytest.mark.parametrize("kind", ["gpt2", "qwen2", "gemma3"])
def test_imported_classifier_answers_as_the_transformers_pipeline(kind, tmp_path):
    folder = saved_sequence_classifier(kind, tmp_path / "hf")
    assert main(["import", str(folder), f"--out={tmp_path / 'run'}"]) == 0
    classifier = Classifier.from_pretrained(tmp_path / "run")
    assert classifier.labels.names == ("pos", "neg", "neutral")
    assert classifier.labels.ids([2, "neg", "0"], "data") == [2, 1, 0]  # by class or name
    assert classifier.tokenizer.prefix_ids == ([START[kind]] if kind in START else [])
    texts = [*SPAM, *HAM]  # within the context: the saved tokenizer has no length to cut at
    ours = classifier.predict_proba(texts)
    np.testing.assert_allclose(ours, pipeline_probabilities(folder, texts), atol=1e-5)


@pytest.mark.parametrize("labelled", ["by-value", "by-name"])
def test_export_then_import_gives_the_same_metrics(
    labelled, gpt2_run, numbered_spam_data, spam_data, tmp_path, capsys
):
    main(["export", str(gpt2_run), "--format=hf", f"--out={tmp_path / 'hf'}"])
    assert main(["import", str(tmp_path / "hf"), f"--out={tmp_path / 'back'}"]) == 0
    test_file = (numbered_spam_data if labelled == "by-value" else spam_data) / "test.csv"
    capsys.readouterr()
    for run in (gpt2_run, tmp_path / "back"):
        assert main(["eval", str(run), f"--data={test_file}", "--json"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    for metric in ("accuracy", "macro_f1", "confusion_matrix", "roc_auc"):
        assert first[metric] == second[metric], metric
    back = Classifier.from_pretrained(tmp_path / "back").predict_proba(TEXTS)
    ours = Classifier.from_pretrained(gpt2_run).predict_proba(TEXTS)
    np.testing.assert_allclose(back, ours, atol=1e-5)


def test_a_calibrated_thresholded_run_keeps_its_probabilities_and_decisions_through_export(
    noisy_spam_data, tiny_gpt2_base, tmp_path
):
    run_dir = tmp_path / "run"
    decided = ["--decide=precision@1", "--calibrate=temperature", "--trainable=head"]
    trained(noisy_spam_data, tiny_gpt2_base, run_dir, *EXPORTABLE, *decided)
    decision = Classifier.from_pretrained(run_dir).config.decision_rule
    assert decision.temperature != 1.0 and decision.threshold is not None
    assert main(["export", str(run_dir), "--format=hf", f"--out={tmp_path / 'hf'}"]) == 0
    assert main(["import", str(tmp_path / "hf"), f"--out={tmp_path / 'back'}"]) == 0
    ours, back = (Classifier.from_pretrained(d) for d in (run_dir, tmp_path / "back"))
    expected = ours.predict_proba(TEXTS)
    np.testing.assert_allclose(pipeline_probabilities(tmp_path / "hf", TEXTS), expected, atol=1e-5)
    np.testing.assert_allclose(back.predict_proba(TEXTS), expected, atol=1e-5)
    assert back.config.decision_rule.threshold == decision.threshold
    assert [p.label for p in back.predict(TEXTS)] == [p.label for p in ours.predict(TEXTS)]
    assert f"p(spam) >= {decision.threshold:.6g}" in (tmp_path / "hf" / "README.md").read_text()


def test_a_multi_label_run_exports_each_labels_sigmoid_and_thresholds(multi_label_run, tmp_path):
    """transformers reads the export as multi-label (each label's sigmoid, as gptclf); the import
    is multi-label again with the same thresholds and label sets. (The ONNX export writes the
    same labels config beside a graph of the logits; benchmarks/multilabel.py runs it.)"""
    hf, back = tmp_path / "hf", tmp_path / "back"
    assert main(["export", str(multi_label_run), "--format=hf", f"--out={hf}"]) == 0
    assert main(["import", str(hf), f"--out={back}"]) == 0
    texts = [text for text, _ in TAGGED]
    ours, imported = (Classifier.from_pretrained(d) for d in (multi_label_run, back))
    expected = ours.predict_proba(texts)
    np.testing.assert_allclose(pipeline_probabilities(hf, texts), expected, atol=1e-5)
    np.testing.assert_allclose(imported.predict_proba(texts), expected, atol=1e-5)
    assert imported.labels.multi_label
    assert imported.config.decision_rule.threshold == ours.config.decision_rule.threshold
    assert [p.labels for p in imported.predict(texts)] == [p.labels for p in ours.predict(texts)]
    config = json.loads((hf / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert "subset accuracy" in (hf / "README.md").read_text()


def test_a_tokenizer_that_adds_end_tokens_is_refused_on_import(tmp_path, capsys):
    folder = saved_sequence_classifier("qwen2", tmp_path / "hf")
    stored = json.loads((folder / "tokenizer.json").read_text())
    stored["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "!", "type_id": 0}},
        ],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"!": {"id": "!", "ids": [0], "tokens": ["!"]}},
    }
    (folder / "tokenizer.json").write_text(json.dumps(stored))
    assert main(["import", str(folder), f"--out={tmp_path / 'run'}"]) == 2
    assert "adds end tokens after every text" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_folder_that_is_not_a_sequence_classifier_is_refused(tiny_gpt2_base, tmp_path, capsys):
    assert main(["import", str(tiny_gpt2_base), f"--out={tmp_path / 'run'}"]) == 2
    assert "not a *ForSequenceClassification" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c, t: c.update(id2label={"0": "neg", "2": "pos"}), "id2label must name classes"),
        (lambda c, t: t.update(truncation_side="middle"), "truncation_side must be left or right"),
        (
            lambda c, t: c.update(id2label={"0": "a", "1": "b"}),
            "score.weight must be the class head",
        ),
        (
            lambda c, t: c.update(id2label={"0": "1", "1": "0", "2": "x"}),
            "id2label names class 0 '1', the label of class 1",
        ),
        (
            lambda c, t: c.update(gptclf_label_values=["b", "a", "c"]),
            "gptclf_label_values or id2label: labels are damaged",
        ),
    ],
    ids=["label-gap", "truncation-side", "head-shape", "name-of-another", "values-unordered"],
)
def test_an_edited_checkpoint_is_a_one_line_import_error(edit, message, tmp_path, capsys):
    folder = saved_sequence_classifier("qwen2", tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    reading = {}
    edit(config, reading)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer_config.json").write_text(json.dumps(reading))
    capsys.readouterr()
    assert main(["import", str(folder), f"--out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "run").exists()
