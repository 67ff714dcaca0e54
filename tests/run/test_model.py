"""A run folder is verified before it is trusted: an edited config.json or weights file is one
error naming the file and what is wrong, never a classifier that answers with a random head."""

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from gptclf.assets import sha256_of
from gptclf.cli import main
from gptclf.errors import GptclfError
from gptclf.models import FAMILIES, LlamaConfig
from gptclf.predict import Classifier
from gptclf.run.checks import weights_record
from gptclf.run.model import RunConfig
from gptclf.tokenizers import gpt2_tokenizer

from conftest import SPAM, TINY_LLAMA_CONFIG


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A copy of the shared trained run that a test may damage."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def edit_config(run: Path, change) -> None:
    config = json.loads((run / "config.json").read_text())
    change(config)
    (run / "config.json").write_text(json.dumps(config))


def rewrite_weights(run: Path, change, record: bool) -> None:
    """Change the saved tensors; with ``record`` also config.json's record of them, as a
    careful forger would."""
    path = run / "classifier.safetensors"
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))
    if record:
        edit_config(run, lambda c: c.update(weights=weights_record(path, tensors)))


def refused(run: Path) -> str:
    with pytest.raises(GptclfError) as error:
        Classifier.from_pretrained(run)
    return str(error.value)


def drop_head(tensors: dict) -> None:
    del tensors["out_head.weight"], tensors["out_head.bias"]


def test_the_trained_run_loads_and_classifies(trained_run):
    assert Classifier.from_pretrained(trained_run).classify(SPAM[0]) == "spam"


def test_weights_changed_after_training_are_refused_by_their_sha256(run_copy):
    rewrite_weights(run_copy, drop_head, record=False)
    assert "the file changed after training" in refused(run_copy)


def test_weights_without_the_head_are_refused_even_with_a_forged_record(run_copy):
    rewrite_weights(run_copy, drop_head, record=True)
    assert "missing tensors out_head.bias, out_head.weight" in refused(run_copy)


def test_a_truncated_weights_file_is_refused_not_a_safetensors_crash(run_copy):
    path = run_copy / "classifier.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    edit_config(run_copy, lambda c: c["weights"].update(sha256=sha256_of(path)))
    assert "not a readable safetensors file" in refused(run_copy)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda c: c["train"].update(truncate="sideways"), "train: truncate must be one of"),
        (lambda c: c["train"].update(template="no slot"), "train: template must be text with"),
        (lambda c: c["train"].update(precision="fp8"), "train: precision must be one of"),
        (lambda c: c["train"].update(lora_rankk=4), "train: unknown option(s) lora_rankk"),
        (lambda c: c.update(max_length=0), "max_length = 0 is not a length"),
        (lambda c: c.update(max_length="512"), "max_length = '512' is not a length"),
        (lambda c: c.update(pad_to=10**6), "pad_to = 1000000 is not a length"),
        (lambda c: c.update(family="gpt3"), "family 'gpt3' is not one of gpt2, llama"),
        (lambda c: c["architecture"].update(n_heads=-2), "architecture: n_heads = -2"),
        (lambda c: c["architecture"].update(n_layers="2"), "architecture: n_layers = '2'"),
        (lambda c: c["architecture"].pop("emb_dim"), "missing ['emb_dim']"),
        (lambda c: c.update(labels={"values": ["ham"], "names": ["ham"]}), "only one class"),
        (lambda c: c.update(labels={"values": [["ham"], 2], "names": ["a", "b"]}), "labels are"),
        (
            lambda c: c.update(labels={"values": ["spam", "ham"], "names": ["spam", "ham"]}),
            "labels",
        ),
        (lambda c: c["special_ids"].update(eos_id=10**9), "special_ids: eos_id"),
        (lambda c: c.update(prefix_ids=[10**9]), "prefix_ids = [1000000000] is not a list"),
        (lambda c: c.update(base_sha256="0" * 10), "base_sha256 = '0000000000'"),
        (lambda c: c.update(extra=1), "not a model config of this gptclf"),
        (lambda c: c.pop("weights"), "not a model config of this gptclf"),
    ],
)
def test_an_edited_config_is_one_error_naming_the_file_and_field(run_copy, change, named):
    edit_config(run_copy, change)
    message = refused(run_copy)
    assert message.startswith(f"{run_copy / 'config.json'}: ") and named in message


def test_texts_start_with_the_tokens_the_run_was_trained_with_not_the_tokenizers(run_copy):
    edit_config(run_copy, lambda c: c.update(prefix_ids=[7]))
    assert Classifier.from_pretrained(run_copy).tokenizer.prefix_ids == [7]
    assert gpt2_tokenizer().prefix_ids == []  # the shared tokenizer is left as it was
    edit_config(run_copy, lambda c: c.pop("prefix_ids"))  # a run from before they were kept
    assert Classifier.from_pretrained(run_copy).tokenizer.prefix_ids == []


def test_a_config_from_before_olmo2s_norms_became_pre_and_post_norms_still_reads(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    sizes = {**TINY_LLAMA_CONFIG, "vocab_size": 50257, "context_length": 64}  # the run's
    today = LlamaConfig(**sizes, qk_norm="head", pre_norms=False, post_norms=True)
    added = FAMILIES["llama"].added_fields
    architecture = {k: v for k, v in asdict(today).items() if k not in added}
    architecture |= {"qk_norm": True, "norm_after": True}  # as gptclf wrote them before
    older = RunConfig(**{**config, "family": "llama", "architecture": architecture})
    assert FAMILIES["llama"].config(**older.architecture) == today


def test_an_architecture_other_than_the_base_models_is_refused(run_copy):
    edit_config(run_copy, lambda c: c["architecture"].update(layer_norm_eps=1e-3))
    assert "architecture differs from" in refused(run_copy)


def test_the_cli_refuses_a_damaged_run_in_one_line_with_exit_2(run_copy, capsys):
    rewrite_weights(run_copy, drop_head, record=True)
    assert main(["predict", str(run_copy), SPAM[0]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing tensors out_head" in err


def test_serve_does_not_start_on_a_damaged_run(run_copy):
    from gptclf.serve import ServeSettings, app_for_run

    edit_config(run_copy, lambda c: c["train"].update(truncate="sideways"))
    with pytest.raises(GptclfError, match="truncate must be one of"):
        app_for_run(run_copy, ServeSettings())
