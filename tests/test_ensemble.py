"""The blend of the language model's probabilities with the TF-IDF baseline's: its arithmetic,
the weight chosen on held-out probabilities, the baseline written without pickle and verified
when read, and a run trained with ``--ensemble baseline`` answering the same through ``eval``,
``predict``, the Python API and ``serve``."""

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gptclf.baseline import make_pipeline
from gptclf.cli import main
from gptclf.ensemble import WEIGHTS, Ensemble, blend, choose_weight
from gptclf.errors import GptclfError
from gptclf.predict import Classifier
from gptclf.serve import ServeSettings, create_app

from conftest import HAM, SPAM, split_options

LM = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
CLASSIC = np.array([[0.6, 0.4], [0.7, 0.3], [0.5, 0.5]])


def test_a_blend_is_the_normalised_weighted_geometric_mean_of_the_two():
    blended = blend(LM, CLASSIC, 0.25)
    expected = LM**0.25 * CLASSIC**0.75
    np.testing.assert_allclose(blended, expected / expected.sum(1, keepdims=True))
    np.testing.assert_allclose(blend(LM, CLASSIC, 1.0), LM)
    np.testing.assert_allclose(blend(LM, CLASSIC, 0.0), CLASSIC)


def test_the_weight_chosen_is_the_most_accurate_blend_ties_to_the_lower_log_loss():
    truth = [0, 0, 1]  # the model is right on rows 0 and 2, the baseline on rows 0 and 1
    weight = choose_weight(truth, LM, CLASSIC)
    accuracy = {w: (blend(LM, CLASSIC, w).argmax(1) == truth).mean() for w in WEIGHTS}
    assert accuracy[weight] == max(accuracy.values()) == 1.0
    assert 0 < weight < 1  # neither alone gets all three


def test_a_model_that_is_always_right_keeps_all_the_weight():
    truth = [0, 1, 1]
    assert choose_weight(truth, LM, CLASSIC) == 1.0


TEXTS = ["win cash now", "free prize call", "hello friend", "see you at dinner"] * 4
IDS = [1, 1, 0, 0] * 4
THREE_CLASSES = [
    "a late goal scored in the derby",
    "match won",
    "new laptop with a fast chip",
    "chip shortage",
    "vote today",
    "the senate passed a law on taxes",
]


def fitted(tmp_path: Path, texts=TEXTS, ids=IDS) -> tuple[Ensemble, dict, Path, Path]:
    ensemble = Ensemble.fit(texts, ids, n_classes=max(ids) + 1, seed=0)
    ensemble.weight = 0.35
    arrays, vocabulary = tmp_path / "baseline.safetensors", tmp_path / "baseline.json"
    return ensemble, ensemble.save(arrays, vocabulary), arrays, vocabulary


@pytest.mark.parametrize(
    ("texts", "ids"), [(TEXTS, IDS), (THREE_CLASSES * 4, [0, 0, 1, 1, 2, 2] * 4)], ids=["2", "3"]
)
def test_the_saved_baseline_reads_back_to_the_same_probabilities(tmp_path, texts, ids):
    ensemble, record, arrays, vocabulary = fitted(tmp_path, texts, ids)
    loaded = Ensemble.load(arrays, vocabulary, record)
    probes = [*texts[:6], "words never seen"]
    np.testing.assert_array_equal(
        loaded.baseline_probabilities(probes), ensemble.baseline_probabilities(probes)
    )
    assert loaded.weight == 0.35
    assert b"pickle" not in arrays.read_bytes()[:200] and json.loads(vocabulary.read_text())


def test_the_fitted_baseline_predicts_as_sklearn_fitting_the_chosen_c_does():
    ensemble = Ensemble.fit(TEXTS, IDS, n_classes=2, seed=0)
    c = ensemble.baseline.named_steps["logreg"].C
    again = make_pipeline(c, 0).fit(TEXTS, IDS)
    np.testing.assert_allclose(ensemble.baseline.predict_proba(TEXTS), again.predict_proba(TEXTS))


@pytest.mark.parametrize("which", ["arrays", "vocabulary"])
def test_a_changed_or_missing_baseline_file_is_an_error_naming_it(tmp_path, which):
    _, record, arrays, vocabulary = fitted(tmp_path)
    path = arrays if which == "arrays" else vocabulary
    path.write_bytes(path.read_bytes()[:-1] + b" ")
    with pytest.raises(GptclfError, match=f"{path.name}: SHA-256 differs"):
        Ensemble.load(arrays, vocabulary, record)
    path.unlink()
    with pytest.raises(GptclfError, match=f"{path.name}: file not found"):
        Ensemble.load(arrays, vocabulary, record)


@pytest.fixture(scope="module")
def blended_run(spam_data, tiny_gpt2_base, tmp_path_factory) -> Path:
    """A run of the tiny GPT-2 trained for one epoch (so it is far from perfect), blended with
    the baseline at a fixed weight."""
    out = tmp_path_factory.mktemp("ensemble") / "run"
    options = ["--trainable=head", "--epochs=1", "--precision=fp32", "--quiet"]
    blend_options = ["--ensemble=baseline", "--ensemble-weight=0.5"]
    argv = ["train", *split_options(spam_data), f"--model={tiny_gpt2_base}", *options]
    assert main([*argv, *blend_options, f"--out={out}"]) == 0
    return out


def test_a_blended_run_records_the_blend_and_the_model_alone(blended_run):
    metrics = json.loads((blended_run / "metrics.json").read_text())
    assert metrics["ensemble"]["weight"] == 0.5
    assert set(metrics["ensemble"]["model_alone"]) == {"validation", "test"}
    config = json.loads((blended_run / "config.json").read_text())
    assert set(config["ensemble"]["sha256"]) == {"baseline.safetensors", "baseline.json"}


def test_eval_predict_and_serve_give_the_blend_training_measured(blended_run, spam_data, capsys):
    metrics = json.loads((blended_run / "metrics.json").read_text())
    assert main(["eval", str(blended_run), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == metrics["test"]["accuracy"]
    assert evaluated["roc_auc"] == pytest.approx(metrics["test"]["roc_auc"])
    classifier = Classifier.from_pretrained(blended_run)
    texts = SPAM + HAM
    network_alone = classifier.probabilities_of_ids(classifier.token_ids(texts))
    expected = blend(network_alone, classifier.ensemble.baseline_probabilities(texts), 0.5)
    np.testing.assert_allclose(classifier.predict_proba(texts), expected, rtol=1e-6)
    with TestClient(create_app(classifier, ServeSettings())) as client:
        answer = client.post("/v1/classify", json={"texts": texts}).json()
    served = [
        [p["probabilities"][n] for n in classifier.labels.names] for p in answer["predictions"]
    ]
    np.testing.assert_allclose(served, expected, rtol=1e-5)


def test_a_blend_weighed_on_validation_needs_a_validation_split(
    spam_data, tiny_gpt2_base, tmp_path, capsys
):
    argv = ["train", f"--train={spam_data / 'train.csv'}", f"--model={tiny_gpt2_base}"]
    assert main([*argv, "--ensemble=baseline", "--epochs=1", f"--out={tmp_path / 'r'}"]) == 2
    assert (
        "--ensemble baseline chooses its weight on the validation split" in capsys.readouterr().err
    )
