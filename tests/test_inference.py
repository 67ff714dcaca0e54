"""The one path of logits: lists of sequences in bucketed batches, in input order, and the
frozen-prefix pass whose output continues to the same logits, at several depths in one pass."""

import pytest
import torch

from gptclf.classifier import SequenceClassifier
from gptclf.inference import logits_of, states_at_depths, text_logits
from gptclf.models import GPTConfig, GPTModel

PAD = 0


@pytest.fixture
def classifier():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, context_length=32, emb_dim=16, n_heads=2, n_layers=3)
    return SequenceClassifier(GPTModel(cfg), n_classes=3).eval()


def sequences(n: int = 11, seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 20, (n,), generator=generator).tolist()
    return [torch.randint(1, 40, (k,), generator=generator).tolist() for k in lengths]


def test_logits_come_back_in_input_order_as_each_sequence_alone(classifier):
    ids = sequences()
    batched = logits_of(classifier, ids, PAD, batch_size=4)
    with torch.no_grad():
        alone = [
            classifier(torch.tensor([x]), torch.ones(1, len(x), dtype=torch.long)) for x in ids
        ]
    torch.testing.assert_close(batched, torch.cat(alone), atol=1e-5, rtol=0)


def test_cached_prefix_states_continue_to_the_logits_of_the_tokens(classifier):
    ids = sequences(seed=1)
    states = states_at_depths(classifier.language_model, ids, [2], PAD, batch_size=3)[2]
    assert [s.shape for s in states] == [(len(x), 16) for x in ids]
    from_states = logits_of(classifier, states, PAD, batch_size=5, start_block=2)
    from_tokens = logits_of(classifier, ids, PAD, batch_size=5)
    torch.testing.assert_close(from_states, from_tokens, atol=1e-5, rtol=0)


def test_logits_leave_the_classifier_in_the_mode_it_was_in(classifier):
    classifier.train()
    logits_of(classifier, sequences(3), PAD)
    assert classifier.training


@pytest.mark.parametrize("how", ["mean", "max"])
def test_a_texts_logits_are_the_mean_or_maximum_of_its_chunks_logits(how):
    logits = torch.tensor([[1.0, -2.0], [3.0, 0.0], [5.0, 4.0], [-1.0, 2.0], [0.0, 6.0]])
    owners = torch.tensor([0, 0, 0, 1, 2])
    reduce = {"mean": lambda x: x.mean(0), "max": lambda x: x.amax(0)}[how]
    expected = torch.stack([reduce(logits[:3]), logits[3], logits[4]])
    torch.testing.assert_close(text_logits(logits, owners, how), expected)


def assert_same_states(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got.dtype == want.dtype == torch.float32 and torch.equal(got, want)


def test_states_at_several_depths_are_those_of_each_depth_alone(classifier):
    ids = sequences(seed=2)
    model = classifier.language_model
    at = states_at_depths(model, ids, [3, 1, 2, 1], PAD, batch_size=4)
    assert sorted(at) == [1, 2, 3]
    for depth, states in at.items():
        assert_same_states(states, states_at_depths(model, ids, [depth], PAD, batch_size=4)[depth])
        with torch.no_grad():  # and what each sequence gives alone, unbatched
            for x, state in zip(ids, states, strict=True):
                alone = model.run_blocks(model.embed(torch.tensor([x])), stop=depth)[0]
                torch.testing.assert_close(state, alone, atol=1e-5, rtol=0)
