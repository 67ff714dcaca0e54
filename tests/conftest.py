"""Shared test helpers: tiny random Hugging Face models saved to disk, padded batches, and one
run folder trained through the CLI on spam/ham messages (used by the CLI and serve tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True, scope="session")
def prefix_store_of_the_session(tmp_path_factory):
    """Runs in the tests keep frozen-prefix states in a folder of this session, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GPTCLF_STORE", str(tmp_path_factory.mktemp("prefix-store")))
        yield


def padded_batch(vocab_size: int, lengths: tuple[int, ...] = (9, 5, 2), seed: int = 0):
    """Right-padded random token ids (batch, max_len) and their 1/0 attention mask."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(0, vocab_size, (len(lengths), width), generator=generator)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return ids * mask, mask


def assert_padded_batch_matches_each_sequence_alone(model, vocab_size: int) -> None:
    """Right padding with a mask must give each sequence exactly its hidden states alone."""
    ids, mask = padded_batch(vocab_size)
    with torch.no_grad():
        batched = model.hidden_states(ids, mask)
        for row in range(ids.shape[0]):
            length = int(mask[row].sum())
            alone = model.hidden_states(ids[row : row + 1, :length])
            torch.testing.assert_close(batched[row, :length], alone[0], atol=1e-5, rtol=0)


def max_diff_on_real_tokens(ours: torch.Tensor, theirs: torch.Tensor, mask: torch.Tensor) -> float:
    """Largest absolute difference between two (batch, seq, ...) outputs where mask is 1."""
    return (ours - theirs)[mask.bool()].abs().max().item()


@pytest.fixture
def tiny_gpt2(tmp_path: Path):
    """A random tiny ``GPT2LMHeadModel`` with GPT-2's vocabulary, saved with ``save_pretrained``."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=50257,
        n_positions=32,
        n_embd=48,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    folder = tmp_path / "tiny-gpt2"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="session")
def gpt2_small(tmp_path_factory):
    """A random ``GPT2LMHeadModel`` of the full gpt2-small shape, saved once per session."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    folder = tmp_path_factory.mktemp("gpt2-small")
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="session")
def smollm2():
    """The real offline default model, SmolLM2-135M-Instruct, loaded once per session."""
    from gptclf.registry import load_pretrained

    return load_pretrained("smollm2-135m")


@pytest.fixture(scope="session")
def sms_book_splits(tmp_path_factory):
    """The chapter's SMS spam split (train/validation/test CSVs and labels.json), made once."""
    from gptclf.data.sms_spam import prepare_sms_spam

    return prepare_sms_spam("book", out_dir=tmp_path_factory.mktemp("sms-book"))


TINY_LLAMA_CONFIG = dict(  # our LlamaConfig fields: a tiny model with grouped-query attention
    vocab_size=60,
    context_length=32,
    emb_dim=48,
    hidden_dim=96,
    n_heads=6,
    n_kv_groups=2,
    n_layers=2,
)
LLAMA_LIKE_COMMON = dict(
    vocab_size=101,
    hidden_size=48,
    intermediate_size=80,
    num_hidden_layers=2,
    num_attention_heads=6,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
)


def save_tiny_llama(folder: Path, tie_embeddings: bool) -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    settings = {**LLAMA_LIKE_COMMON, "tie_word_embeddings": tie_embeddings}
    config = transformers.LlamaConfig(**settings, rope_theta=50_000.0, pad_token_id=None)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    return model


# model_type: what sets it apart, made to matter on 9-token sequences
LLAMA_LIKE_MODELS = {
    "llama3": (
        "Llama",
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 10_000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            }
        },
    ),
    "qwen2": ("Qwen2", {}),
    "qwen3": ("Qwen3", {"head_dim": 16}),
    "mistral": ("Mistral", {"sliding_window": 4}),
    "phi3": ("Phi3", {"sliding_window": 4, "pad_token_id": 0}),
    "olmo2": ("Olmo2", {"pad_token_id": 0}),
    "gemma3": (
        "Gemma3",
        {
            "num_hidden_layers": 3,
            "head_dim": 16,
            "query_pre_attn_scalar": 24,
            "sliding_window": 4,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
            "rope_parameters": {
                "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
            },
            "pad_token_id": 0,
        },
    ),
}
# transformers' classes where they are not prefix + Config, ForCausalLM, ForSequenceClassification
HF_CLASSES = {
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", "Gemma3TextForSequenceClassification")
}


def save_llama_like(kind: str, folder) -> tuple:
    """A tiny random model of ``kind`` saved by ``transformers``, and its sequence classifier
    class."""
    prefix, extra = LLAMA_LIKE_MODELS[kind]
    suffixes = ("Config", "ForCausalLM", "ForSequenceClassification")
    names = HF_CLASSES.get(kind, [prefix + suffix for suffix in suffixes])
    config_class, model_class, classifier_class = (getattr(transformers, n) for n in names)
    torch.manual_seed(0)
    model = model_class(config_class(**(LLAMA_LIKE_COMMON | extra))).eval()
    with torch.no_grad():  # norms that differ from one another, so that a swap shows
        for name, weight in model.named_parameters():
            if "norm" in name:
                weight.add_(0.3 * torch.randn_like(weight))
    model.save_pretrained(folder)
    return model, classifier_class


@pytest.fixture(params=[True, False], ids=["tied", "untied"])
def tiny_llama(request, tmp_path: Path):
    """A random tiny ``LlamaForCausalLM`` (grouped-query attention) saved to disk."""
    folder = tmp_path / "tiny-llama"
    return save_tiny_llama(folder, tie_embeddings=request.param), folder


SPAM = ["WIN a FREE prize now, call 0800", "Free entry: text WIN to 8007", "URGENT! cash prize"]
HAM = ["see you at lunch", "are you home yet?", "ok thanks, talk later"]


def byte_tokenizer_json(bos: int | None = None) -> str:
    """A byte-level tokenizer with 101 ids (the tiny Llama's vocabulary): bytes 0-99 + eos; with
    ``bos``, one that puts that id before every text, as Gemma's and Llama 3's do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from gptclf.tokenizers import set_prefix

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet)[:100])}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    set_prefix(tokenizer, [] if bos is None else [bos])
    return tokenizer.to_str()


def split_options(folder: Path) -> list[str]:
    """``--train``/``--val``/``--test`` options for the split files in ``folder``."""
    return [f"--{n}={folder / f'{n}.csv'}" for n in ("train", "val", "test")]


@pytest.fixture(scope="session")
def spam_data(tmp_path_factory) -> Path:
    """A two-class dataset with string labels (spam, ham) in train.csv (48 rows), val.csv and
    test.csv (12 rows each), every split holding the same three spam and three ham texts."""
    from gptclf.data.readers import write_labelled

    folder = tmp_path_factory.mktemp("spam")
    for name, repeat in {"train": 8, "val": 2, "test": 2}.items():
        labels = (["spam"] * 3 + ["ham"] * 3) * repeat
        write_labelled(folder / f"{name}.csv", (SPAM + HAM) * repeat, labels)
    return folder


@pytest.fixture(scope="session")
def noisy_spam_data(spam_data, tmp_path_factory) -> Path:
    """``spam_data`` with a spam and a ham of the validation split labelled the other way: no
    threshold separates it, and no temperature makes it certain."""
    from gptclf.data.readers import read_labelled, write_labelled

    folder = tmp_path_factory.mktemp("noisy")
    for name in ("train", "val", "test"):
        data = read_labelled(spam_data / f"{name}.csv")
        labels = list(data.labels)
        if name == "val":
            labels[0], labels[3] = labels[3], labels[0]
        write_labelled(folder / f"{name}.csv", data.texts, labels)
    return folder


TAGGED = [  # texts with any number of the labels money, social and urgent
    ("WIN cash now", ("money", "urgent")),
    ("cash prize waiting for you", ("money",)),
    ("URGENT reply now", ("urgent",)),
    ("see you at lunch", ()),
    ("party tonight at mine", ("social",)),
    ("URGENT party, bring cash", ("money", "social", "urgent")),
]


@pytest.fixture(scope="session")
def multi_label_data(tmp_path_factory) -> Path:
    """``TAGGED`` with label lists in train.jsonl (8 copies), val.jsonl and test.jsonl (2)."""
    from gptclf.data.readers import write_labelled

    folder = tmp_path_factory.mktemp("tagged")
    for name, repeat in {"train": 8, "val": 2, "test": 2}.items():
        texts, labels = zip(*TAGGED * repeat, strict=True)
        write_labelled(folder / f"{name}.jsonl", texts, labels, label_column="labels")
    return folder


@pytest.fixture(scope="session")
def multi_label_run(multi_label_data, tiny_gpt2_base, tmp_path_factory) -> Path:
    """A multi-label run on ``multi_label_data`` that transformers can express, with thresholds
    chosen per label on validation; it gets every label of every test text right."""
    from gptclf.cli import main

    run_dir = tmp_path_factory.mktemp("runs") / "tagged"
    data = [f"--{n}={multi_label_data / n}.jsonl" for n in ("train", "val", "test")]
    options = [f"--model={tiny_gpt2_base}", *TRAINED_RUN_OPTIONS, "--pooling=last-token"]
    argv = ["train", *data, *options, "--decide=f1", f"--out={run_dir}", "--quiet"]
    assert main(argv) == 0
    return run_dir


PAIRED = [  # a question, an answer, and whether the answer answers it
    ("what is the capital of France?", "Paris is the capital.", "yes"),
    ("what is the capital of France?", "I like turtles.", "no"),
    ("how do I reset my password?", "Click forgot password on the login page.", "yes"),
    ("how do I reset my password?", "The weather is sunny.", "no"),
    ("when does the shop open?", "It opens at nine.", "yes"),
    ("when does the shop open?", "Bananas are yellow.", "no"),
]


@pytest.fixture(scope="session")
def pair_data(tmp_path_factory) -> Path:
    """``PAIRED`` in columns question, answer and label of train.csv (8 copies), val.csv and
    test.csv (2)."""
    from gptclf.data.readers import write_labelled

    folder = tmp_path_factory.mktemp("paired")
    for name, repeat in {"train": 8, "val": 2, "test": 2}.items():
        questions, answers, labels = zip(*PAIRED * repeat, strict=True)
        path = folder / f"{name}.csv"
        write_labelled(path, questions, labels, "question", pairs=answers, pair_column="answer")
    return folder


@pytest.fixture(scope="session")
def pair_run(pair_data, tiny_gpt2_base, tmp_path_factory) -> Path:
    """A run on ``pair_data`` that reads each question with its answer, joined by the default
    pair template; it decides every test pair right."""
    from gptclf.cli import main

    run_dir = tmp_path_factory.mktemp("runs") / "paired"
    columns = ["--text-column=question", "--text-pair-column=answer"]
    options = [*split_options(pair_data), *columns, f"--model={tiny_gpt2_base}"]
    assert main(["train", *options, *TRAINED_RUN_OPTIONS, f"--out={run_dir}", "--quiet"]) == 0
    return run_dir


@pytest.fixture(scope="session")
def tiny_gpt2_base(tmp_path_factory) -> Path:
    """The folder of a random tiny ``GPT2LMHeadModel`` (GPT-2's vocabulary, 2 blocks of 32)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("base")
    transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64)
    ).save_pretrained(folder)
    return folder


TRAINED_RUN_OPTIONS = [
    "--trainable=all",
    "--lr=3e-3",
    "--epochs=4",
    "--precision=fp32",
]


@pytest.fixture(scope="session")
def trained_run(spam_data, tiny_gpt2_base, tmp_path_factory) -> Path:
    """A run folder trained through ``gptclf train`` on ``spam_data`` with every parameter of
    the tiny GPT-2 training; it classifies every spam and ham text right. Tests may add files
    (``eval/``) but must not change what is there."""
    from gptclf.cli import main

    run_dir = tmp_path_factory.mktemp("runs") / "run"
    options = [*split_options(spam_data), f"--model={tiny_gpt2_base}", *TRAINED_RUN_OPTIONS]
    assert main(["train", *options, f"--out={run_dir}", "--quiet"]) == 0
    return run_dir
