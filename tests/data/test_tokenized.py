import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptclf.data.tokenized import encode_cached, frame, pair_lengths, template_ids, tokenize
from gptclf.errors import GptclfError
from gptclf.tokenizers import gpt2_tokenizer

TEXTS = ["Hello, world.", "Free entry in 2 a wkly comp to win FA Cup final tkts", "ok"]


def test_second_tokenization_reads_the_cache_instead_of_encoding(tmp_path, monkeypatch):
    tokenizer = gpt2_tokenizer()
    first = encode_cached(tokenizer, TEXTS, tmp_path)
    assert first == tokenizer.encode_batch(TEXTS)

    def refuse(texts):
        raise AssertionError("encoded again")

    monkeypatch.setattr(tokenizer, "encode_batch", refuse)
    assert encode_cached(tokenizer, TEXTS, tmp_path) == first
    assert len(list(tmp_path.iterdir())) == 1


def test_cache_is_keyed_by_the_texts_and_the_tokenizer(tmp_path, monkeypatch):
    tokenizer = gpt2_tokenizer()
    encode_cached(tokenizer, TEXTS, tmp_path)
    encode_cached(tokenizer, [*TEXTS[:2], "ok!"], tmp_path)
    monkeypatch.setattr(tokenizer, "name", "another-tokenizer")
    encode_cached(tokenizer, TEXTS, tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3


def test_truncation_keeps_the_head_by_default_or_the_tail_and_counts_it():
    head = frame([[1, 2, 3, 4], [5, 6]], max_length=3)
    tail = frame([[1, 2, 3, 4], [5, 6]], max_length=3, side="tail")
    assert head.ids == [[1, 2, 3], [5, 6]] and tail.ids == [[2, 3, 4], [5, 6]]
    assert head.n_truncated == tail.n_truncated == 1
    assert head.full_lengths.tolist() == [4, 2] and head.lengths.tolist() == [3, 2]


def test_unknown_truncation_side_is_an_error():
    with pytest.raises(GptclfError, match="--truncate must be one of head, tail"):
        frame([[1]], 4, side="middle")


def test_tokenize_combines_cache_and_truncation(tmp_path):
    result = tokenize(gpt2_tokenizer(), TEXTS, max_length=5, cache_folder=tmp_path)
    assert [len(x) for x in result.ids] == [4, 5, 1]
    assert result.n_truncated == 1


def test_template_wraps_each_text_and_truncation_leaves_it_whole():
    tokenizer = gpt2_tokenizer()
    around = template_ids(tokenizer, "SMS: {text}\nSpam?")
    framed = frame(
        [[1, 2, 3, 4, 5], [6]], max_length=len(around[0]) + len(around[1]) + 3, around=around
    )
    assert framed.ids[0] == around[0] + [1, 2, 3] + around[1]
    assert framed.ids[1] == around[0] + [6] + around[1]
    assert framed.n_truncated == 1 and framed.text_lengths.tolist() == [5, 1]


@pytest.mark.parametrize("template", [None, "SMS: {text}"])
@pytest.mark.parametrize("side", ["head", "tail"])
def test_the_tokenizers_start_token_comes_first_and_survives_truncation(template, side):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from gptclf.tokenizers import HFTokenizer, set_prefix

    backend = Tokenizer(models.WordLevel({"<bos>": 0, "SMS:": 1, "a": 2, "b": 3}, "a"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    set_prefix(backend, [0])
    tokenizer = HFTokenizer(backend, eos_id=0)
    before, after = template_ids(tokenizer, template)
    assert before == ([0] if template is None else [0, 1]) and after == []
    framed = frame([[2, 3, 3, 3]], max_length=len(before) + 2, side=side, around=(before, after))
    assert framed.ids == [before + ([2, 3] if side == "head" else [3, 3])]


@pytest.mark.parametrize("template", ["no slot", "{text} twice {text}"])
def test_template_needs_exactly_one_text_slot(template):
    with pytest.raises(GptclfError, match=r"must contain \{text\} once"):
        template_ids(gpt2_tokenizer(), template)


def test_template_longer_than_the_maximum_length_is_an_error():
    around = template_ids(gpt2_tokenizer(), "a long instruction before the text: {text}")
    with pytest.raises(GptclfError, match="leaves no room for the text"):
        frame([[1]], max_length=3, around=around)


@pytest.mark.parametrize(
    ("max_length", "kept"),
    [
        (4, [1, 2, 6, 7]),  # room 4: the first 2 and the last 2
        (5, [1, 2, 3, 6, 7]),  # room 5: the first 3 (the odd one) and the last 2
        (1, [1]),  # room 1: the first token and none of the end
    ],
)
def test_head_and_tail_truncation_keeps_the_first_half_and_the_last_half_of_the_room(
    max_length, kept
):
    framed = frame([[1, 2, 3, 4, 5, 6, 7], [8]], max_length, side="head+tail")
    assert framed.ids == [kept, [8]]  # a text that fits is left whole
    assert framed.n_truncated == 1 and framed.text_lengths.tolist() == [7, 1]


def test_head_and_tail_truncation_cuts_the_text_inside_the_template():
    around = ([100, 101], [102])
    framed = frame(
        [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10]], max_length=6, side="head+tail", around=around
    )
    # Room for 3 text tokens: the first 2 and the last 1; the 3-token text fits as it is.
    assert framed.ids == [[100, 101, 1, 2, 7, 102], [100, 101, 8, 9, 10, 102]]
    assert framed.n_truncated == 1


@given(
    st.lists(st.lists(st.integers(0, 99), min_size=1, max_size=60), min_size=1, max_size=5),
    st.integers(4, 16),
)
def test_chunks_cover_each_text_in_order_each_fitting_and_overlapping_by_a_quarter(texts, room):
    tokens = frame(texts, room, chunks=True)
    assert tokens.n_truncated == 0 and all(len(c) <= room for c in tokens.ids)
    for text, ids in enumerate(texts):
        chunks = [c for c, owner in zip(tokens.ids, tokens.owners, strict=True) if owner == text]
        if len(ids) <= room:
            assert chunks == [ids]
            continue
        assert all(len(c) == room for c in chunks)
        assert chunks[0] == ids[:room] and chunks[-1] == ids[-room:]
        overlap = room - max(1, room - room // 4)
        for before, after in itertools.pairwise(chunks[:-1]):
            assert before[-overlap:] == after[:overlap] if overlap else True
        joined = [t for c in chunks[:-1] for t in c[: room - overlap]]
        assert joined + ids[len(joined) :] == ids and len(ids) - len(joined) <= room


def test_chunks_each_have_the_template_around_them():
    tokens = frame([[1, 2, 3, 4, 5, 6, 7, 8, 9]], 6, around=([100], [200]), chunks=True)
    assert tokens.ids == [[100, 1, 2, 3, 4, 200], [100, 4, 5, 6, 7, 200], [100, 6, 7, 8, 9, 200]]
    assert tokens.owners.tolist() == [0, 0, 0]


@pytest.fixture(scope="module")
def counting_tokenizer():
    """A ``tokenizers`` tokenizer whose every word is one token, truncating pairs as the
    library's "longest first" does: the reference for how a pair's two texts share the room."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    reference = Tokenizer(models.WordLevel({"a": 0, "b": 1}, unk_token="a"))
    reference.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return reference


@given(first=st.integers(0, 40), second=st.integers(0, 40), room=st.integers(2, 50))
def test_a_pair_shares_the_room_as_the_tokenizers_librarys_longest_first(
    counting_tokenizer, first, second, room
):
    counting_tokenizer.enable_truncation(max_length=room, strategy="longest_first")
    encoded = counting_tokenizer.encode(" ".join("a" * first), " ".join("b" * second))
    expected = (encoded.sequence_ids.count(0), encoded.sequence_ids.count(1))
    assert pair_lengths(first, second, room) == expected


def test_a_pair_is_framed_with_the_template_around_and_between_its_texts():
    tokenizer = gpt2_tokenizer()
    template = "Q: {text}\nA: {pair}\nRelevant?"
    question, answer = "Is the sky blue? " * 5, "Yes it is."
    tokens = tokenize(tokenizer, [question], 24, "head", template, pairs=[answer])
    before, after = template_ids(tokenizer, template)
    between = tokenizer.encode("\nA: ")
    q, a = tokenizer.encode(question), tokenizer.encode(answer)
    room = 24 - len(before) - len(after) - len(between)
    kept = room - len(a)  # the answer is short: it keeps every token
    assert tokens.ids == [before + q[:kept] + between + a + after]
    assert tokens.text_lengths.tolist() == [len(q) + len(between) + len(a)]
    assert tokens.n_truncated == 1


@pytest.mark.parametrize(
    ("template", "pairs", "message"),
    [
        ("Q: {text} A: {pair}", None, "joins two texts: give each its pair"),
        ("{text} only", ["x"], "has no {pair} slot"),
        ("{pair} before {text}", ["x"], "{pair} at most once after it"),
    ],
)
def test_a_template_and_pairs_that_do_not_fit_are_one_line(template, pairs, message):
    with pytest.raises(GptclfError, match=re.escape(message)):
        tokenize(gpt2_tokenizer(), ["a question"], 32, "head", template, pairs=pairs)
