import copy

import pytest
import torch
import transformers

from gptclf.classifier import (
    POOLINGS,
    ClassifierSpec,
    SequenceClassifier,
    build_classifier,
    mean_pool,
)
from gptclf.errors import GptclfError
from gptclf.models import GPTConfig, GPTModel
from gptclf.trainable import set_trainable
from gptclf.weights.huggingface import load_hf_gpt2, load_hf_llama

from conftest import LLAMA_LIKE_MODELS, padded_batch, save_llama_like, save_tiny_llama


@pytest.fixture(params=["gpt2", "llama", *LLAMA_LIKE_MODELS])
def tiny_model(request, tmp_path):
    """(loader, folder, sequence classifier class) of a tiny random model saved by
    ``transformers``: GPT-2, Llama, and the Llama-like models (Llama 3, Qwen2, Qwen3, Mistral)."""
    if request.param == "gpt2":
        _, folder = request.getfixturevalue("tiny_gpt2")
        return load_hf_gpt2, folder, transformers.GPT2ForSequenceClassification
    folder = tmp_path / request.param
    if request.param == "llama":
        save_tiny_llama(folder, tie_embeddings=True)
        return load_hf_llama, folder, transformers.LlamaForSequenceClassification
    _, classifier_class = save_llama_like(request.param, folder)
    return load_hf_llama, folder, classifier_class


def test_last_token_logits_match_transformers_sequence_classifier(tiny_model):
    load, folder, classifier_class = tiny_model
    ours = SequenceClassifier(load(folder), n_classes=3).eval()
    pad_id = ours.language_model.cfg.vocab_size - 1  # never drawn as a real token below
    torch.manual_seed(1)
    theirs = classifier_class.from_pretrained(folder, num_labels=3, pad_token_id=pad_id)
    with torch.no_grad():
        ours.head.weight.copy_(theirs.score.weight)
        ours.head.bias.zero_()
    ids, mask = padded_batch(pad_id, lengths=(9, 5, 2, 9))
    ids = torch.where(mask.bool(), ids, pad_id)
    with torch.no_grad():
        expected = theirs.eval()(input_ids=ids, attention_mask=mask).logits
        actual = ours(ids, mask)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def full_sequence_logits(classifier, x, mask, start_block: int) -> torch.Tensor:
    """The reference: every position through every block, then the pooled position read."""
    model = classifier.language_model
    attend = None if classifier.attend_to_padding else mask
    hidden = model.final_norm(model.run_blocks(x, attend, start=start_block))
    if classifier.pooling == "mean":
        return classifier.head(mean_pool(hidden, mask))
    if classifier.pooling == "last-token+mean":
        return classifier.head(last_token_and_mean_by_hand(hidden, mask))
    rows = torch.arange(hidden.shape[0])
    at = {"last-token": mask.sum(1) - 1, "last-position": hidden.shape[1] - 1, "first": 0}
    return classifier.head(hidden[rows, at[classifier.pooling]])


def last_token_and_mean_by_hand(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, 2 * dim): each sequence's last real token beside the mean of its real tokens."""
    features = []
    for row, length in enumerate(mask.sum(1).tolist()):
        real = hidden[row, :length]
        features.append(torch.cat([real[-1], real.mean(0)]))
    return torch.stack(features)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("attend_to_padding", [False, True], ids=["masked", "book"])
@pytest.mark.parametrize("start_block", [0, 1], ids=["tokens", "cached-states"])
def test_reading_one_position_gives_the_logits_and_gradients_of_the_full_last_block(
    tiny_model, pooling, attend_to_padding, start_block
):
    load, folder, _ = tiny_model
    torch.manual_seed(0)
    classifier = SequenceClassifier(load(folder), 2, pooling, attend_to_padding)
    set_trainable(classifier, "last-block")
    model = classifier.language_model
    ids, mask = padded_batch(model.cfg.vocab_size, lengths=(7, 3, 1, 7))
    with torch.no_grad():  # the states entering block ``start_block``, as the cache keeps them
        states = model.run_blocks(model.embed(ids), mask, stop=start_block)
    inputs = states if start_block else ids
    labels = torch.tensor([0, 1, 1, 0])
    trained = [p for p in classifier.parameters() if p.requires_grad]

    def logits_and_grads(logits: torch.Tensor):
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return logits, torch.autograd.grad(loss, trained)

    actual, actual_grads = logits_and_grads(classifier(inputs, mask, start_block))
    expected, expected_grads = logits_and_grads(
        full_sequence_logits(classifier, states, mask, start_block)
    )
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    for got, want in zip(actual_grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_an_unknown_pooling_is_an_error_not_silent_mean_pooling():
    cfg = GPTConfig(vocab_size=30, context_length=16, emb_dim=8, n_heads=2, n_layers=1)
    with pytest.raises(GptclfError, match="unknown pooling 'max'"):
        SequenceClassifier(GPTModel(cfg), n_classes=2, pooling="max")


def tiny_gpt(n_layers: int = 3) -> GPTModel:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, context_length=16, emb_dim=8, n_heads=2, n_layers=n_layers)
    return GPTModel(cfg)


def test_last_token_plus_mean_head_reads_the_last_real_token_beside_the_mean_of_real_tokens():
    classifier = SequenceClassifier(tiny_gpt(), n_classes=3, pooling="last-token+mean").eval()
    model = classifier.language_model
    assert classifier.head.in_features == 2 * model.cfg.emb_dim
    ids, mask = padded_batch(model.cfg.vocab_size)
    with torch.no_grad():
        features = last_token_and_mean_by_hand(model.hidden_states(ids, mask), mask)
        expected = classifier.head(features)
        actual = classifier(ids, mask)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_padding_leaves_the_last_token_plus_mean_logits_of_each_sequence_as_alone():
    classifier = SequenceClassifier(tiny_gpt(), n_classes=3, pooling="last-token+mean").eval()
    ids, mask = padded_batch(classifier.language_model.cfg.vocab_size)
    with torch.no_grad():
        batched = classifier(ids, mask)
        for row, length in enumerate(mask.sum(1).tolist()):
            alone = classifier(ids[row : row + 1, :length], mask[row : row + 1, :length])
            torch.testing.assert_close(batched[row], alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", ["last-token", "last-token+mean"])
def test_a_classifier_of_depth_k_reads_the_final_norm_after_the_bottom_k_blocks(pooling):
    full = tiny_gpt(n_layers=3)
    untouched = copy.deepcopy(full)
    classifier = build_classifier(full, ClassifierSpec(2, pooling, depth=2)).eval()
    assert len(classifier.language_model.trf_blocks) == 2
    assert not any(k.startswith("trf_blocks.2.") for k in classifier.language_model.state_dict())
    ids, mask = padded_batch(untouched.cfg.vocab_size)
    with torch.no_grad():
        after_two = untouched.run_blocks(untouched.embed(ids), mask, stop=2)
        hidden = untouched.final_norm(after_two)
        if pooling == "last-token":
            features = hidden[torch.arange(len(ids)), mask.sum(1) - 1]
        else:
            features = last_token_and_mean_by_hand(hidden, mask)
        expected = classifier.head(features)
        actual = classifier(ids, mask)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("depth", [0, 4])
def test_a_depth_outside_the_blocks_of_the_model_is_an_error_naming_depth(depth):
    with pytest.raises(GptclfError) as error:
        build_classifier(tiny_gpt(n_layers=3), ClassifierSpec(2, depth=depth))
    assert str(error.value) == f"--depth {depth}: the model has 3 blocks; choose 1..3"


@pytest.mark.parametrize("pooling", ["last-token", "last-token+mean"])
def test_concatenated_depths_read_transformers_hidden_states_of_each_depth(tiny_gpt2, pooling):
    """The head reads, side by side, ln_f of the states after block 1 and the top's, where
    transformers' ``hidden_states[1]`` and ``[-1]`` (which has ln_f applied) are those states."""
    theirs, folder = tiny_gpt2
    spec = ClassifierSpec(3, pooling, concat_depths=(1,))
    ours = build_classifier(load_hf_gpt2(folder), spec).eval()
    ids, mask = padded_batch(theirs.config.vocab_size, lengths=(9, 5, 2))
    with torch.no_grad():
        states = theirs(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        if pooling == "last-token":
            last = mask.sum(1) - 1

            def read(hidden):
                return hidden[torch.arange(len(ids)), last]
        else:

            def read(hidden):
                return last_token_and_mean_by_hand(hidden, mask)

        features = torch.cat([read(theirs.transformer.ln_f(states[1])), read(states[-1])], -1)
        expected = ours.head(features)
        actual = ours(ids, mask)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_the_frozen_prefix_stops_at_the_lowest_depth_read_and_continues_to_the_same_logits():
    classifier = build_classifier(tiny_gpt(n_layers=4), ClassifierSpec(2, concat_depths=(2, 1)))
    set_trainable(classifier, "last-block")
    assert classifier.frozen_prefix() == 1 and classifier.concat_depths == [1, 2]
    lm = classifier.eval().language_model
    ids, mask = padded_batch(lm.cfg.vocab_size)
    with torch.no_grad():
        after_one = lm.run_blocks(lm.embed(ids), mask, stop=1)
        torch.testing.assert_close(classifier(after_one, mask, 1), classifier(ids, mask))
        with pytest.raises(ValueError, match="block 1"):
            classifier(lm.run_blocks(after_one, mask, start=1, stop=2), mask, 2)


@pytest.mark.parametrize("depths", [(0,), (3,), (1, 4)])
def test_a_concatenated_depth_not_below_the_top_is_an_error_naming_the_option(depths):
    with pytest.raises(GptclfError, match=r"--concat-depths .*choose from 1\.\.2"):
        build_classifier(tiny_gpt(n_layers=3), ClassifierSpec(2, concat_depths=depths))
