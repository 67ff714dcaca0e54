import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gptclf.data.batching import Collator, LengthBucketSampler, TokenDataset, text_batches


def test_collator_right_pads_to_the_longest_with_a_mask():
    batch = Collator(pad_id=9)([([1, 2, 3], 0), ([4], 1)])
    assert batch.inputs.tolist() == [[1, 2, 3], [4, 9, 9]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.labels.tolist() == [0, 1]


def test_collator_pad_to_fixes_the_width_and_cuts_longer_sequences():
    batch = Collator(pad_id=50256, pad_to=4)([([1, 2, 3, 4, 5], 1), ([6], 0)])
    assert batch.inputs.tolist() == [[1, 2, 3, 4], [6, 50256, 50256, 50256]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]


def test_collator_without_labels_gives_none():
    assert Collator(pad_id=0)([([1], None)]).labels is None


@settings(max_examples=100, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 200), min_size=1, max_size=300),
    batch_size=st.integers(1, 17),
    seed=st.integers(0, 2**16),
    epoch=st.integers(0, 5),
    shuffle=st.booleans(),
)
def test_bucket_sampler_yields_every_index_exactly_once_per_epoch(
    lengths, batch_size, seed, epoch, shuffle
):
    sampler = LengthBucketSampler(lengths, batch_size, shuffle=shuffle, seed=seed, pool_batches=3)
    sampler.set_epoch(epoch)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert len(batches) == len(sampler)


@settings(max_examples=50, deadline=None)
@given(lengths=st.lists(st.integers(1, 50), min_size=1, max_size=100), batch_size=st.integers(1, 9))
def test_bucket_sampler_drop_last_drops_only_one_short_batch(lengths, batch_size):
    batches = list(LengthBucketSampler(lengths, batch_size, drop_last=True, pool_batches=2))
    assert all(len(b) == batch_size for b in batches)
    assert len(batches) == len(lengths) // batch_size


def test_bucket_sampler_is_deterministic_under_a_seed_and_reshuffles_each_epoch():
    lengths = np.random.default_rng(0).integers(1, 100, size=500)

    def epoch_batches(seed, epoch):
        sampler = LengthBucketSampler(lengths, 8, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_batches(123, 0) == epoch_batches(123, 0)
    assert epoch_batches(123, 0) != epoch_batches(123, 1)
    assert epoch_batches(123, 0) != epoch_batches(124, 0)


def test_bucketing_pads_far_less_than_random_batches():
    lengths = np.random.default_rng(0).lognormal(3, 0.8, size=2000).astype(int) + 1

    def padding(batches):
        return sum(max(lengths[b]) * len(b) - lengths[b].sum() for b in batches)

    bucketed = list(LengthBucketSampler(lengths, 8, seed=1))
    order = np.random.default_rng(1).permutation(len(lengths))
    random = [order[i : i + 8] for i in range(0, len(order), 8)]
    assert padding(bucketed) < 0.1 * padding(random)


def test_dataset_and_loader_give_padded_batches():
    data = TokenDataset([[1, 2], [3], [4, 5, 6]], [0, 1, 0])
    loader = torch.utils.data.DataLoader(
        data,
        batch_sampler=LengthBucketSampler(data.lengths, 2, shuffle=False),
        collate_fn=Collator(pad_id=0),
    )
    widths = [batch.inputs.shape[1] for batch in loader]
    assert widths == [2, 3]


def test_chunked_texts_are_examples_with_their_texts_label_and_measured_whole():
    owners = np.array([0, 0, 0, 1, 2, 2])
    ids = [[1, 2], [2, 3], [3], [4], [5, 6], [6]]
    data = TokenDataset(ids, [1, 0, 1], owners)
    assert [data[i][1] for i in range(len(data))] == data.example_labels == [1, 1, 1, 0, 1, 1]
    text_of = {tuple(x): int(owner) for x, owner in zip(ids, owners, strict=True)}
    chunks_seen = []
    for batch in text_batches(data, Collator(pad_id=0), size=2):
        rows = [tuple(row[row > 0].tolist()) for row in batch.inputs]
        texts = [text_of[row] for row in rows]
        local = batch.owners.tolist()
        assert len(rows) <= 2 or len(batch.labels) == 1  # at most 2 chunks, or one text whole
        assert local == sorted(local)
        assert [batch.labels[i].item() for i in local] == [data.labels[t] for t in texts]
        assert len({(i, t) for i, t in zip(local, texts, strict=True)}) == len(set(local))
        chunks_seen += rows
    assert sorted(chunks_seen) == sorted(tuple(x) for x in ids)


def test_dataset_refuses_labels_of_another_length():
    with pytest.raises(ValueError):
        TokenDataset([[1]], [0, 1])


def book_spam_dataset_rows(texts, tokenizer, max_length, pad_token_id=50256):
    """What the chapter's ``SpamDataset`` feeds the model: ids cut and padded to max_length."""
    encoded = [tokenizer.encode(text)[:max_length] for text in texts]
    return [ids + [pad_token_id] * (max_length - len(ids)) for ids in encoded]


def test_pad_to_reproduces_the_books_120_token_batches(sms_book_splits):
    import pandas as pd

    from gptclf.tokenizers import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    train = pd.read_csv(sms_book_splits["train"])
    ids = tokenizer.encode_batch(train["Text"].tolist())
    longest = max(len(x) for x in ids)
    assert longest == 120
    batch = Collator(pad_id=50256, pad_to=longest)(
        list(zip(ids[:8], train["Label"][:8], strict=True))
    )
    expected = book_spam_dataset_rows(train["Text"][:8], tokenizer, 120)
    assert batch.inputs.tolist() == expected
    assert batch.labels.tolist() == train["Label"][:8].tolist()
