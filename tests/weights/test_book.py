import pickle

import pytest
import torch
from safetensors.torch import save_file

from gptclf.errors import GptclfError
from gptclf.weights import load_local
from gptclf.weights.book import load_book_gpt

from conftest import max_diff_on_real_tokens, padded_batch


def book_state_dict(hf_model) -> dict[str, torch.Tensor]:
    """The chapter-5 ``load_weights_into_gpt`` mapping, written out: a state dict as the book's
    ``GPTModel`` saves it after loading OpenAI's weights, including its causal-mask buffers."""
    hf = {k.removeprefix("transformer."): v for k, v in hf_model.state_dict().items()}
    n_ctx = hf["wpe.weight"].shape[0]
    state = {"tok_emb.weight": hf["wte.weight"], "pos_emb.weight": hf["wpe.weight"]}
    for b in range(hf_model.config.n_layer):
        h, t = f"h.{b}.", f"trf_blocks.{b}."
        q_w, k_w, v_w = hf[h + "attn.c_attn.weight"].split(hf["wte.weight"].shape[1], dim=-1)
        q_b, k_b, v_b = hf[h + "attn.c_attn.bias"].split(hf["wte.weight"].shape[1], dim=-1)
        state.update(
            {
                t + "att.W_query.weight": q_w.T,
                t + "att.W_query.bias": q_b,
                t + "att.W_key.weight": k_w.T,
                t + "att.W_key.bias": k_b,
                t + "att.W_value.weight": v_w.T,
                t + "att.W_value.bias": v_b,
                t + "att.out_proj.weight": hf[h + "attn.c_proj.weight"].T,
                t + "att.out_proj.bias": hf[h + "attn.c_proj.bias"],
                t + "att.mask": torch.triu(torch.ones(n_ctx, n_ctx), diagonal=1),
                t + "ff.layers.0.weight": hf[h + "mlp.c_fc.weight"].T,
                t + "ff.layers.0.bias": hf[h + "mlp.c_fc.bias"],
                t + "ff.layers.2.weight": hf[h + "mlp.c_proj.weight"].T,
                t + "ff.layers.2.bias": hf[h + "mlp.c_proj.bias"],
                t + "norm1.scale": hf[h + "ln_1.weight"],
                t + "norm1.shift": hf[h + "ln_1.bias"],
                t + "norm2.scale": hf[h + "ln_2.weight"],
                t + "norm2.shift": hf[h + "ln_2.bias"],
            }
        )
    state.update(
        {
            "final_norm.scale": hf["ln_f.weight"],
            "final_norm.shift": hf["ln_f.bias"],
            "out_head.weight": hf["wte.weight"],
        }
    )
    return {k: v.contiguous().clone() for k, v in state.items()}


def save_state_dict(state, path) -> None:
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)


def logits_gap(model, reference) -> float:
    ids, mask = padded_batch(reference.config.vocab_size)
    with torch.no_grad():
        expected = reference(ids, attention_mask=mask).logits
        return max_diff_on_real_tokens(model(ids, mask), expected, mask)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_book_state_dict_matches_transformers(tiny_gpt2, tmp_path, suffix):
    reference, _ = tiny_gpt2
    path = tmp_path / f"model{suffix}"
    save_state_dict(book_state_dict(reference), path)
    assert logits_gap(load_book_gpt(path, n_heads=4), reference) < 1e-4


def test_book_state_dict_of_gpt2_small_shape_loads_by_path_and_matches(gpt2_small, tmp_path):
    reference, _ = gpt2_small
    path = tmp_path / "gpt2-small-124M.pth"
    torch.save(book_state_dict(reference), path)
    model, tokenizer = load_local(path)
    assert logits_gap(model, reference) < 1e-4
    assert tokenizer.name == "gpt2"


def test_non_openai_size_without_head_count_is_a_clear_error(tiny_gpt2, tmp_path):
    reference, _ = tiny_gpt2
    path = tmp_path / "model.pth"
    torch.save(book_state_dict(reference), path)
    with pytest.raises(
        GptclfError, match=r"model\.pth: width 48 with 2 layers is not a GPT-2 size"
    ):
        load_local(path)


def test_finetuned_book_classifier_keeps_its_two_class_head(tiny_gpt2, tmp_path):
    reference, _ = tiny_gpt2
    state = book_state_dict(reference)
    torch.manual_seed(1)
    state["out_head.weight"], state["out_head.bias"] = torch.randn(2, 48), torch.randn(2)
    path = tmp_path / "review_classifier.pth"
    torch.save(state, path)
    model = load_book_gpt(path, n_heads=4)
    ids, mask = padded_batch(50257)
    with torch.no_grad():
        hidden = reference(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        expected = hidden @ state["out_head.weight"].T + state["out_head.bias"]
        gap = max_diff_on_real_tokens(model(ids, mask), expected, mask)
    assert model.out_head.out_features == 2
    assert gap < 1e-4


class NotATensor:
    pass


def test_pth_holding_arbitrary_objects_is_refused_without_unpickling_them(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"tok_emb.weight": NotATensor()}, f, protocol=2)
    with pytest.raises(GptclfError, match=r"evil\.pth: not a readable PyTorch state dict"):
        load_local(path)
