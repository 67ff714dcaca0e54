import pytest
import torch

from gptclf.models import GPT2_PRESETS, GPTConfig, GPTModel

from conftest import assert_padded_batch_matches_each_sequence_alone, padded_batch

# Parameter counts OpenAI's GPT-2 checkpoints have (output head tied to the token embeddings).
PUBLISHED_PARAMETERS = {
    "gpt2-small": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
}


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMETERS))
def test_presets_have_the_published_parameter_counts(name):
    with torch.device("meta"):
        model = GPTModel(GPT2_PRESETS[name])
    total = sum(p.numel() for p in model.parameters())
    assert total - model.out_head.weight.numel() == PUBLISHED_PARAMETERS[name]


def test_right_padding_gives_each_sequence_the_hidden_states_it_gets_alone():
    torch.manual_seed(0)
    assert_padded_batch_matches_each_sequence_alone(
        GPTModel(GPTConfig(vocab_size=50, context_length=16, emb_dim=32, n_heads=4, n_layers=2)), 50
    )


def test_padding_positions_never_produce_nan():
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=50, context_length=16, emb_dim=32, n_heads=4, n_layers=2))
    ids, mask = padded_batch(50)
    with torch.no_grad():
        assert torch.isfinite(model(ids, mask)).all()
