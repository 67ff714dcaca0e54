import subprocess
import sys

import pytest

from gptclf.cli import main
from gptclf.registry import MODELS

from conftest import byte_tokenizer_json, save_tiny_llama


def test_models_lists_every_registered_model_and_whether_it_is_here(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1 : 1 + len(MODELS)]}
    assert set(rows) == set(MODELS) >= {"smollm2-135m", "qwen3-0.6b", "llama3.2-1b", "gpt2-xl"}
    assert rows["smollm2-135m"][2:4] == ["135M", "yes"]
    assert rows["gpt2-xl"][2] == "1558M"


def test_generate_completes_a_prompt_with_a_local_model(tiny_gpt2, capsys):
    _, folder = tiny_gpt2
    assert main(["generate", "Hello", "--model", str(folder), "--max-new-tokens", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Hello")
    assert "loaded" in captured.err


def test_a_prompt_of_no_tokens_is_refused_even_where_a_start_token_comes_first(tmp_path, capsys):
    save_tiny_llama(tmp_path, tie_embeddings=True)
    (tmp_path / "tokenizer.json").write_text(byte_tokenizer_json(bos=1))
    assert main(["generate", "", "--model", str(tmp_path)]) == 2
    assert "the prompt is empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "hi", "--model", "gpt9"], "unknown model 'gpt9'"),
        (
            ["generate", "hi", "--model", "nowhere/weights.gguf"],
            "unknown model 'nowhere/weights.gguf'",
        ),
    ],
)
def test_bad_model_is_one_line_error_with_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("gptclf: error: ") and message in err


def test_unreadable_weights_file_is_one_line_error_naming_it(tmp_path, capsys):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    assert main(["generate", "hi", "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}: not a readable GGUF file" in err


def test_module_entry_point_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "gptclf", "models"], capture_output=True, text=True, check=True
    )
    assert "smollm2-135m" in result.stdout


def test_weights_smaller_than_their_tokenizer_are_refused(tmp_path, capsys):
    import transformers

    transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=100, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    ).save_pretrained(tmp_path)
    assert main(["generate", "hi", "--model", str(tmp_path)]) == 2
    assert (
        "the tokenizer has 50257 tokens but the model's embedding only 100"
        in capsys.readouterr().err
    )


def test_cache_info_counts_the_prefix_store_and_clear_empties_it(tmp_path, monkeypatch, capsys):
    import json

    import torch

    from gptclf.models import GPTConfig, GPTModel
    from gptclf.store import PrefixStore

    monkeypatch.setenv("GPTCLF_STORE", str(tmp_path))
    monkeypatch.setenv("GPTCLF_STORE_GB", "0.5")
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=40, context_length=8, emb_dim=8, n_heads=2, n_layers=2))
    PrefixStore(tmp_path).states(model.eval(), [[1, 2], [3, 4, 5]], 1, 0, "fp32")
    assert main(["cache", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["entries"] == 2 and info["bytes"] > 5 * 8 * 4 and info["bound_bytes"] == 5e8
    assert main(["cache", "info"]) == 0
    assert "entries: 2" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert main(["cache", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 0
    monkeypatch.setenv("GPTCLF_STORE_GB", "lots")
    assert main(["cache", "info"]) == 2
    assert capsys.readouterr().err.strip() == (
        "gptclf: error: GPTCLF_STORE_GB must be a number of gigabytes, not 'lots'"
    )
