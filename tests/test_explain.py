"""Explanations: the token scores follow from the network (integrated gradients add up to the
logit's change from all-zero embeddings; gradient x input is the derivative along the text's
embeddings), the tokens shown are the text, and the CLI shows them safely."""

import json

import numpy as np
import pytest
import torch

from gptclf.cli import main
from gptclf.errors import GptclfError
from gptclf.explain import (
    Explanation,
    attributions,
    deletion_curve,
    explanation_html,
    format_explanation,
    token_pieces,
)
from gptclf.predict import Classifier
from gptclf.tokenizers import gpt2_tokenizer

from conftest import SPAM


@pytest.fixture(scope="module")
def classifier(trained_run) -> Classifier:
    return Classifier.from_pretrained(trained_run)


def logit_at_scale(
    network, ids: list[int], target: int, scale: float, where: slice = slice(None)
) -> float:
    """Class ``target``'s logit with the token embeddings at ``where`` multiplied by ``scale``."""
    embedding = network.language_model.tok_emb
    scales = torch.ones(len(ids), 1)
    scales[where] = scale
    hook = embedding.register_forward_hook(lambda module, args, out: out * scales)
    try:
        with torch.no_grad():
            inputs = torch.tensor([ids])
            return float(network(inputs, torch.ones_like(inputs))[0, target])
    finally:
        hook.remove()


def test_integrated_gradients_add_up_to_the_logits_change_from_zero_embeddings(classifier):
    network, ids = classifier.network, classifier.token_ids([SPAM[0]])[0]
    scores = attributions(network, ids, target=1, method="integrated-gradients")
    change = logit_at_scale(network, ids, 1, 1.0) - logit_at_scale(network, ids, 1, 0.0)
    assert len(scores) == len(ids)
    assert scores.sum() == pytest.approx(change, rel=0.02, abs=1e-3)


def test_start_and_template_tokens_stay_put_so_the_texts_scores_add_up(classifier):
    network, ids = classifier.network, [50256, 3, 4, *classifier.token_ids([SPAM[0]])[0], 5]
    text = slice(3, len(ids) - 1)  # a start token and a template around the text
    scores = attributions(network, ids, 1, "integrated-gradients", text=text)
    change = logit_at_scale(network, ids, 1, 1.0) - logit_at_scale(network, ids, 1, 0.0, text)
    assert scores[text].sum() == pytest.approx(change, rel=0.02, abs=1e-3)


def test_control_characters_of_a_text_reach_the_terminal_escaped():
    explanation = Explanation(
        "spam", 0.9, "spam", "gradient-x-input", ["a\x1b[2J\r", "\x9bb"], [1.0, -1.0], False
    )
    shaded = format_explanation(explanation, colour=True).splitlines()[1]
    assert "\r" not in shaded and "\x9b" not in shaded and "\x1b[2J" not in shaded
    assert "\\x1b[2J\\r" in shaded and "\\x9bb" in shaded


def test_gradient_x_input_is_the_derivative_along_the_texts_embeddings(classifier):
    network, ids = classifier.network, classifier.token_ids([SPAM[1]])[0]
    scores = attributions(network, ids, target=0, method="gradient-x-input")
    step = 1e-3
    slope = logit_at_scale(network, ids, 0, 1 + step) - logit_at_scale(network, ids, 0, 1 - step)
    assert scores.sum() == pytest.approx(slope / (2 * step), rel=0.01, abs=1e-4)


def test_a_padded_sequence_is_scored_on_its_real_tokens_as_prediction_reads_it(classifier):
    network, ids = classifier.network, classifier.token_ids([SPAM[2]])[0]
    alone = attributions(network, ids, 1, "gradient-x-input")
    padded = attributions(network, ids, 1, "gradient-x-input", padding=(50256, len(ids) + 5))
    assert len(padded) == len(ids)
    np.testing.assert_allclose(padded, alone, atol=1e-5)


@pytest.mark.parametrize("text", ["WIN a prize", "naïve café 🙂 ok", "  spaced\n\nout  "])
def test_the_tokens_shown_put_together_are_the_text(text):
    tokenizer = gpt2_tokenizer()
    pieces = token_pieces(tokenizer, tokenizer.encode(text))
    assert "".join(pieces) == text and len(pieces) == len(tokenizer.encode(text))


def test_removing_the_tokens_a_method_ranks_first_is_the_deletion_curve(classifier):
    network, ids = classifier.network, classifier.token_ids([SPAM[0]])[0]
    curve = deletion_curve(network, ([], []), ids, np.arange(len(ids)), target=1)
    inputs = torch.tensor([ids])
    with torch.no_grad():
        whole = network(inputs, torch.ones_like(inputs)).softmax(-1)[0, 1]
    assert len(curve) == 10 and curve[0] == pytest.approx(float(whole), abs=1e-6)


def test_explain_prints_the_decision_and_the_tokens_that_pushed_it(trained_run, capsys):
    assert main(["explain", str(trained_run), SPAM[0], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["label"] == "spam" and shown["explained"] == "spam"
    assert shown["method"] == "integrated-gradients" and not shown["truncated"]
    assert "".join(t["text"] for t in shown["tokens"]) == SPAM[0]
    assert main(["explain", str(trained_run), SPAM[0], "--colour=always"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("spam (") and "\x1b[38;2;0;0;0;48;2;" in printed


def test_the_html_page_escapes_the_text(trained_run, tmp_path, capsys):
    page = tmp_path / "why.html"
    text = "<script>alert(1)</script> WIN a FREE prize"
    assert main(["explain", str(trained_run), text, f"--html={page}"]) == 0
    written = page.read_text()
    assert "<script" not in written and written.count("&lt;") == 2 and "alert" in written
    assert explanation_html(Classifier.from_pretrained(trained_run).explain(text)) == written


@pytest.mark.parametrize(
    ("label", "message"), [("eggs", "label 'eggs' is not one of ham, spam"), (None, "no text")]
)
def test_an_unknown_label_or_empty_text_is_one_line_error(classifier, label, message):
    with pytest.raises(GptclfError, match=message):
        classifier.explain("" if label is None else "hello", label=label)
