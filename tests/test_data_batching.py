"""Batching: dynamic padding equal to the tokenizer's own, both pair layouts, and the bucketed sampler."""
from __future__ import annotations

import random

import pytest
import torch
from torch.utils.data import BatchSampler, RandomSampler

from mtkit.data import PairExample, SentenceExample
from mtkit.data.batching import BucketBatchSampler, EncodedDataset, make_loader, padding_stats


@pytest.fixture(scope="module")
def tokenizer():
    from mtkit.model.tokenizer import Tokenizer
    return Tokenizer.from_pretrained()


def sentences(n: int, seed: int = 0, labeled: bool = True) -> list[SentenceExample]:
    rng = random.Random(seed)
    words = "the movie was good bad long short fun and dull very a plot story".split()
    return [SentenceExample(f"s{i}", " ".join(rng.choice(words) for _ in range(rng.randint(1, 30))),
                            rng.randint(0, 4) if labeled else None) for i in range(n)]


PAIRS = [PairExample("p0", "how old is the sun ?", "what is the age of the sun ?", 1),
         PairExample("p1", "why is chess hard ?", "is golf fun ?", 0),
         PairExample("p2", "a dog runs", "a very small dog runs in the big green park", 0)]


def test_single_batches_match_the_tokenizers_own_padding(tokenizer):
    examples = sentences(10)
    loader = make_loader(examples, tokenizer, batch_size=4, shuffle=False, bucketing=False)
    batches = list(loader)
    assert [len(b["ids"]) for b in batches] == [4, 4, 2]
    for batch in batches:
        texts = [examples[int(i[1:])].sentence for i in batch["ids"]]
        reference = tokenizer(texts, padding="longest")  # independent: the tokenizer pads the same batch itself
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(batch[key], reference[key]), key
        assert batch["labels"].dtype == torch.long
        assert batch["labels"].tolist() == [examples[int(i[1:])].label for i in batch["ids"]]
        assert batch["input_ids"].shape[1] == batch["attention_mask"].sum(1).max()  # padded to the longest only


def test_pair_layouts(tokenizer):
    bi = next(iter(make_loader(PAIRS, tokenizer, 3, layout="bi", shuffle=False)))
    assert set(bi) == {"input_ids_1", "attention_mask_1", "token_type_ids_1", "input_ids_2", "attention_mask_2",
                       "token_type_ids_2", "labels", "ids"}
    ref1 = tokenizer([p.sentence1 for p in PAIRS])
    ref2 = tokenizer([p.sentence2 for p in PAIRS])
    assert torch.equal(bi["input_ids_1"], ref1["input_ids"]) and torch.equal(bi["input_ids_2"], ref2["input_ids"])
    assert not bi["token_type_ids_1"].any() and not bi["token_type_ids_2"].any()
    assert bi["labels"].dtype == torch.float and bi["labels"].tolist() == [1.0, 0.0, 0.0]

    cross = next(iter(make_loader(PAIRS, tokenizer, 3, layout="cross", shuffle=False)))
    assert set(cross) == {"input_ids", "attention_mask", "token_type_ids", "labels", "ids"}
    ref = tokenizer([p.sentence1 for p in PAIRS], pairs=[p.sentence2 for p in PAIRS])
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(cross[key], ref[key])
    # [CLS] a [SEP] b [SEP]: type 0 up to and including the first [SEP], then 1 up to the last real token
    row = cross["input_ids"][0].tolist()
    types = cross["token_type_ids"][0].tolist()
    first_sep = row.index(tokenizer.sep_token_id)
    length = int(cross["attention_mask"][0].sum())
    assert row[0] == tokenizer.cls_token_id and row[length - 1] == tokenizer.sep_token_id
    assert types[:first_sep + 1] == [0] * (first_sep + 1) and types[first_sep + 1:length] == [1] * (length - first_sep - 1)


def test_label_dtypes(tokenizer):
    sts = [PairExample("a", "x y", "x", 3.2), PairExample("b", "z", "z w", 0.0)]
    assert next(iter(make_loader(sts, tokenizer, 2, shuffle=False)))["labels"].dtype == torch.float
    nli = [PairExample("a", "x", "y", 2), PairExample("b", "z", "w", 0)]
    assert next(iter(make_loader(nli, tokenizer, 2, shuffle=False)))["labels"].dtype == torch.long
    unlabeled = next(iter(make_loader(sentences(3, labeled=False), tokenizer, 3, shuffle=False)))
    assert "labels" not in unlabeled and len(unlabeled["ids"]) == 3


def test_bad_batching_inputs(tokenizer):
    with pytest.raises(ValueError, match="empty"):
        make_loader([], tokenizer, 4)
    with pytest.raises(ValueError, match="all or none"):
        make_loader([SentenceExample("a", "x", 1), SentenceExample("b", "y", None)], tokenizer, 2)
    with pytest.raises(ValueError, match="layout"):
        make_loader(PAIRS, tokenizer, 2, layout="siamese")


def test_tokenizes_once_not_every_epoch(tokenizer):
    calls = []

    class Counting:
        pad_token_id = tokenizer.pad_token_id

        def __call__(self, *args, **kwargs):
            calls.append(1)
            return tokenizer(*args, **kwargs)

    loader = make_loader(sentences(50), Counting(), batch_size=8)
    for _ in range(3):
        assert sum(len(b["ids"]) for b in loader) == 50
    assert len(calls) == 1


# ------------------------------------------------------------------------------------------ sampler
@pytest.mark.parametrize("n, batch_size, multiplier", [(1, 4, 1), (10, 3, 1), (257, 32, 2), (1000, 16, 50)])
def test_every_index_exactly_once_per_epoch(n, batch_size, multiplier):
    lengths = [random.Random(i).randint(1, 60) for i in range(n)]
    sampler = BucketBatchSampler(lengths, batch_size, seed=3, bucket_size_multiplier=multiplier)
    for _ in range(3):
        batches = list(sampler)
        assert len(batches) == len(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(n))
        assert sum(len(b) < batch_size for b in batches) <= 1


def test_sampler_is_reproducible_and_changes_with_epoch():
    lengths = [random.Random(i).randint(1, 60) for i in range(300)]
    a = BucketBatchSampler(lengths, 16, seed=7)
    b = BucketBatchSampler(lengths, 16, seed=7)
    epochs_a = [list(a) for _ in range(3)]
    epochs_b = [list(b) for _ in range(3)]
    assert epochs_a == epochs_b
    assert epochs_a[0] != epochs_a[1]
    b.set_epoch(1)
    assert list(b) == epochs_a[1]
    assert list(BucketBatchSampler(lengths, 16, seed=8)) != epochs_a[0]


def test_bucketing_groups_similar_lengths_and_cuts_padding():
    rng = random.Random(0)
    lengths = [rng.randint(4, 80) for _ in range(2000)]
    bucketed = padding_stats(lengths, BucketBatchSampler(lengths, 32, seed=0).batches(0))
    plain = padding_stats(lengths, list(BatchSampler(RandomSampler(range(2000), generator=torch.Generator().manual_seed(0)),
                                                     32, False)))
    assert bucketed["real"] == plain["real"] == sum(lengths)
    assert bucketed["overhead"] < 0.10 < plain["overhead"]
    # hand check of the statistic: batches [0, 1] and [2] of lengths 3, 5, 4 -> 2 padded tokens, 12 real
    assert padding_stats([3, 5, 4], [[0, 1], [2]]) == {"real": 12, "padded": 2, "total": 14, "overhead": 2 / 12}


def test_unshuffled_sampler_sorts_by_length_and_drop_last():
    lengths = [5, 1, 4, 2, 3]
    assert BucketBatchSampler(lengths, 2, shuffle=False).batches() == [[1, 3], [4, 2], [0]]
    dropped = BucketBatchSampler(lengths, 2, seed=0, drop_last=True)
    assert len(dropped) == 2 and all(len(b) == 2 for b in dropped)


def test_loader_order_is_reproducible(tokenizer):
    examples = sentences(100)
    first = [b["ids"] for b in make_loader(examples, tokenizer, 8, seed=1)]
    second = [b["ids"] for b in make_loader(examples, tokenizer, 8, seed=1)]
    assert first == second
    plain_a = [b["ids"] for b in make_loader(examples, tokenizer, 8, seed=1, bucketing=False)]
    plain_b = [b["ids"] for b in make_loader(examples, tokenizer, 8, seed=1, bucketing=False)]
    assert plain_a == plain_b != first


def test_encoded_dataset_can_be_shared(tokenizer):
    dataset = EncodedDataset(sentences(20), tokenizer)
    train = make_loader(None, None, 4, dataset=dataset)
    evaluation = make_loader(None, None, 4, shuffle=False, dataset=dataset)
    assert sorted(i for b in train for i in b["ids"]) == sorted(i for b in evaluation for i in b["ids"])
