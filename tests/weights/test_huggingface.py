import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from gptclf.errors import GptclfError
from gptclf.models import GPTModel, LlamaConfig, LlamaModel
from gptclf.registry import MODELS, load_pretrained
from gptclf.weights.huggingface import hf_model_type, load_hf_gpt2, load_hf_llama

from conftest import (
    LLAMA_LIKE_MODELS,
    TINY_LLAMA_CONFIG,
    byte_tokenizer_json,
    max_diff_on_real_tokens,
    padded_batch,
    save_llama_like,
)


def logits_gap(ours, theirs) -> float:
    """Max |difference| of logits on the real tokens of a right-padded batch."""
    ids, mask = padded_batch(theirs.config.vocab_size)
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask).logits
        actual = ours(ids, mask)
    return max_diff_on_real_tokens(actual, expected, mask)


def test_gpt2_logits_match_transformers_on_a_padded_batch(tiny_gpt2):
    reference, folder = tiny_gpt2
    model = load_hf_gpt2(folder)
    assert isinstance(model, GPTModel)
    assert logits_gap(model, reference) < 1e-4


def test_gpt2_small_shape_matches_transformers(gpt2_small):
    reference, folder = gpt2_small
    model = load_hf_gpt2(folder)
    assert sum(p.numel() for p in model.trf_blocks.parameters()) == 12 * 7_087_872
    assert logits_gap(model, reference) < 1e-4


def test_gpt2_weights_without_transformer_prefix_load_like_openai_files(tiny_gpt2, tmp_path):
    reference, folder = tiny_gpt2
    tensors = load_file(folder / "model.safetensors")
    openai_style = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    save_file(openai_style, tmp_path / "model.safetensors")
    assert logits_gap(load_hf_gpt2(tmp_path), reference) < 1e-4


def test_llama_logits_match_transformers_on_a_padded_batch(tiny_llama):
    reference, folder = tiny_llama
    model = load_hf_llama(folder)
    assert isinstance(model, LlamaModel)
    assert model.cfg.rope_base == 50_000.0
    assert model.cfg.n_kv_groups == 2
    assert logits_gap(model, reference) < 1e-4


def rewrite_tensors(folder, change) -> None:
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors")


def test_missing_tensor_is_an_error_naming_it(tiny_gpt2):
    _, folder = tiny_gpt2
    rewrite_tensors(folder, lambda t: t.pop("transformer.h.1.mlp.c_fc.weight"))
    with pytest.raises(GptclfError, match=r"missing tensor h\.1\.mlp\.c_fc\.weight"):
        load_hf_gpt2(folder)


def test_mis_shaped_tensor_is_an_error_naming_it_and_both_shapes(tiny_llama):
    _, folder = tiny_llama
    name = "model.layers.0.mlp.up_proj.weight"
    rewrite_tensors(folder, lambda t: t.update({name: torch.zeros(80, 47)}))
    with pytest.raises(GptclfError, match=rf"{name} has shape \(80, 47\).*\(80, 48\)"):
        load_hf_llama(folder)


def test_gpt2_checkpoint_is_not_mistaken_for_llama(tiny_gpt2):
    _, folder = tiny_gpt2
    (folder / "config.json").write_text(
        '{"model_type": "llama", "vocab_size": 97, "hidden_size": 48, '
        '"intermediate_size": 80, "num_attention_heads": 4, '
        '"num_hidden_layers": 2}'
    )
    with pytest.raises(GptclfError, match=r"missing tensor model\.embed_tokens\.weight"):
        load_hf_llama(folder)


def test_unsupported_rope_scaling_is_refused(tiny_llama):
    _, folder = tiny_llama
    config = (folder / "config.json").read_text()
    (folder / "config.json").write_text(
        config.replace('"rope_type": "default"', '"rope_type": "yarn"')
    )
    with pytest.raises(GptclfError, match="rope scaling 'yarn'"):
        load_hf_llama(folder)


def fake_hub_cache(cache, repo_id: str, files) -> None:
    """Lay out a Hugging Face cache entry the way ``huggingface_hub`` does."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in files:
        shutil.copy(file, snapshot / file.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)


def test_registered_gpt2_loads_from_the_hugging_face_cache_offline(
    tiny_gpt2, tmp_path, monkeypatch
):
    reference, folder = tiny_gpt2
    cache = tmp_path / "hub"
    fake_hub_cache(
        cache, "openai-community/gpt2", [folder / "config.json", folder / "model.safetensors"]
    )
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    pretrained = load_pretrained("gpt2-small")
    assert logits_gap(pretrained.model, reference) < 1e-4
    assert pretrained.tokenizer.encode("Hello") == [15496]


def test_registered_gpt2_missing_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(GptclfError, match="openai-community/gpt2-medium is not in the local"):
        load_pretrained("gpt2-medium")


@pytest.mark.parametrize("kind", LLAMA_LIKE_MODELS)
def test_llama_like_logits_match_transformers_on_a_padded_batch(kind, tmp_path):
    reference, _ = save_llama_like(kind, tmp_path)
    model = load_hf_llama(tmp_path)
    ids, mask = padded_batch(reference.config.vocab_size, lengths=(9, 5, 2, 9))
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).logits
        actual = model(ids, mask)
    assert max_diff_on_real_tokens(actual, expected, mask) < 1e-4


@pytest.mark.parametrize(
    ("name", "kind", "repo_id"),
    [
        ("qwen3-0.6b", "qwen3", "Qwen/Qwen3-0.6B-Base"),
        ("gemma3-270m", "gemma3", "google/gemma-3-270m"),
    ],
)
def test_registered_hub_models_load_from_the_hugging_face_cache_offline(
    name, kind, repo_id, tmp_path, monkeypatch
):
    folder = tmp_path / "saved"
    reference, _ = save_llama_like(kind, folder)
    (folder / "tokenizer.json").write_text(byte_tokenizer_json())
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    assert not MODELS[name].is_available()
    files = [folder / name for name in ("config.json", "model.safetensors", "tokenizer.json")]
    fake_hub_cache(tmp_path / "hub", repo_id, files)
    pretrained = load_pretrained(name)
    assert pretrained.model.cfg.qk_norm and pretrained.model.cfg.head_dim == 16
    assert logits_gap(pretrained.model, reference) < 1e-4
    assert MODELS[name].is_available()


def test_a_registered_hub_models_tokenizer_needs_no_weights(tmp_path, monkeypatch):
    from gptclf.registry import load_tokenizer

    folder = tmp_path / "saved"
    save_llama_like("qwen3", folder)
    (folder / "tokenizer.json").write_text(byte_tokenizer_json())
    files = [folder / "config.json", folder / "tokenizer.json"]  # no weights in the cache
    fake_hub_cache(tmp_path / "hub", "Qwen/Qwen3-0.6B-Base", files)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    tokenizer, context_length = load_tokenizer("qwen3-0.6b")
    assert context_length == 64 and tokenizer.encode("ab") == [64, 65]


def test_layers_with_their_own_sliding_windows_are_refused(tmp_path):
    save_llama_like("qwen2", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(use_sliding_window=True, sliding_window=4, max_window_layers=1)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(GptclfError, match="sliding windows in some layers only"):
        load_hf_llama(tmp_path)


def test_folder_tokenizer_takes_end_and_pad_tokens_from_the_other_config_files(tmp_path):
    from gptclf.weights import folder_tokenizer

    (tmp_path / "tokenizer.json").write_text(byte_tokenizer_json())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [7, 9]}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"pad_token": {"content": "!"}}))
    tokenizer = folder_tokenizer(tmp_path)
    assert tokenizer.eos_id == 7
    assert tokenizer.pad_id == tokenizer.backend.token_to_id("!") != 7
    (tmp_path / "generation_config.json").unlink()
    with pytest.raises(GptclfError, match="no end-of-text token"):
        folder_tokenizer(tmp_path)


def test_a_gated_hub_model_says_how_to_get_access(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def gated(repo_id, local_files_only=False, **_):
        if local_files_only:
            raise FileNotFoundError(repo_id)
        raise GatedRepoError.__new__(GatedRepoError)  # as the hub answers without a licence

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    with pytest.raises(GptclfError, match="google/gemma-3-270m is gated: accept its licence"):
        load_pretrained("gemma3-270m")


@pytest.mark.parametrize(
    ("in_tokenizer_json", "add_bos_token", "prefix"),
    [(True, None, [1]), (False, None, []), (False, True, [1]), (True, False, [])],
)
def test_the_start_token_is_put_first_as_tokenizer_json_or_tokenizer_config_says(
    tmp_path, in_tokenizer_json, add_bos_token, prefix
):
    from gptclf.weights import folder_tokenizer

    (tmp_path / "tokenizer.json").write_text(
        byte_tokenizer_json(bos=1 if in_tokenizer_json else None)
    )
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 2, "bos_token_id": 1}))
    settings = {} if add_bos_token is None else {"add_bos_token": add_bos_token}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(settings))
    tokenizer = folder_tokenizer(tmp_path)
    assert tokenizer.prefix_ids == prefix
    assert tokenizer.encode("ab") == [64, 65]


@pytest.mark.parametrize(
    ("settings", "model_type"),
    [
        ({}, "llama"),
        ({"sliding_window": 16}, "mistral"),
        ({"qkv_bias": True}, "qwen2"),
        ({"qk_norm": "head"}, "qwen3"),
        ({"qk_norm": "all", "pre_norms": False, "post_norms": True}, "olmo2"),
    ],
)
def test_a_config_is_exported_as_the_model_type_it_has_the_settings_of(settings, model_type):
    cfg = LlamaConfig(**TINY_LLAMA_CONFIG, **settings)
    assert hf_model_type(cfg) == model_type


def test_settings_of_no_model_type_are_refused_for_export_not_called_llama():
    with pytest.raises(GptclfError, match="no model type of transformers has these settings"):
        hf_model_type(LlamaConfig(**TINY_LLAMA_CONFIG, qkv_bias=True, qk_norm="head"))
