import torch

from gptclf.models import LlamaConfig, LlamaModel

from conftest import (
    TINY_LLAMA_CONFIG,
    assert_padded_batch_matches_each_sequence_alone,
    padded_batch,
)


def tiny_llama_config(**overrides) -> LlamaConfig:
    return LlamaConfig(**{**TINY_LLAMA_CONFIG, **overrides})


def test_right_padding_gives_each_sequence_the_hidden_states_it_gets_alone():
    torch.manual_seed(0)
    assert_padded_batch_matches_each_sequence_alone(LlamaModel(tiny_llama_config()), 60)


def test_tied_model_scores_tokens_with_the_embedding_matrix():
    torch.manual_seed(0)
    model = LlamaModel(tiny_llama_config(tie_embeddings=True))
    ids, mask = padded_batch(60)
    with torch.no_grad():
        expected = model.hidden_states(ids, mask) @ model.tok_emb.weight.T
        torch.testing.assert_close(model(ids, mask), expected)
    assert model.out_head is None
