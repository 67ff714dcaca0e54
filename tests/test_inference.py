"""The one path of logits: lists of sequences in bucketed batches, in input order, and the
frozen-prefix pass whose output continues to the same logits."""

import pytest
import torch

from gptclf.classifier import SequenceClassifier
from gptclf.inference import logits_of, prefix_states
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
    states = prefix_states(classifier, ids, n_blocks=2, pad_id=PAD, batch_size=3)
    assert [s.shape for s in states] == [(len(x), 16) for x in ids]
    from_states = logits_of(classifier, states, PAD, batch_size=5, start_block=2)
    from_tokens = logits_of(classifier, ids, PAD, batch_size=5)
    torch.testing.assert_close(from_states, from_tokens, atol=1e-5, rtol=0)


def test_logits_leave_the_classifier_in_the_mode_it_was_in(classifier):
    classifier.train()
    logits_of(classifier, sequences(3), PAD)
    assert classifier.training
