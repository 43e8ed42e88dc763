"""Batching: tokenize once, pad each batch to its own longest sequence, and group similar lengths together.

- **Dynamic padding.** Sequences are padded to the longest one *in the batch*, not to a global maximum.
- **Length bucketing.** :class:`BucketBatchSampler` shuffles the data, cuts it into large buckets, sorts each
  bucket by length, cuts batches from it and shuffles the order of the batches. Batches then hold sequences of
  similar length, so little compute goes to padding, while the order stays random from epoch to epoch (the
  "bucket iterator" of torchtext / AllenNLP, and the length grouping of Hugging Face's ``group_by_length``).
  ``bench/bench_padding.py`` measures the padding it saves on SST.
- **Two layouts for pairs.** ``"bi"`` (bi-encoder, Sentence-BERT): the two sentences are two padded sequences,
  keys with ``_1`` / ``_2``. ``"cross"`` (cross-encoder): one sequence ``[CLS] a [SEP] b [SEP]`` whose token
  type ids are 0 for ``a`` and 1 for ``b``.
- **Reproducible.** The order depends only on the seed and the epoch (``set_epoch``).

A batch is a dict (docs/ARCHITECTURE.md): ``input_ids, attention_mask, token_type_ids`` (B, T) for single
sentences and cross pairs; the same with ``_1`` / ``_2`` for bi-encoder pairs; ``labels`` (B,) when the data
is labeled (``long`` class ids for classification, ``float`` for binary paraphrase and regression); and
``ids``, the list of example ids.

Taught in notebooks/01_setup_and_data.ipynb (bucketing) and 06_sentence_bert.ipynb (pair layouts).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from mtkit.data.readers import PairExample, SentenceExample

LAYOUTS = ("bi", "cross")


# ------------------------------------------------------------------------------------------ dataset
class EncodedDataset(Dataset):
    """Examples with their token ids computed once (so epochs do not re-tokenize).

    Each item is a dict of Python lists (unpadded) plus ``id`` and ``label``; :class:`Collator` pads them.
    """

    def __init__(self, examples: Sequence[SentenceExample | PairExample], tokenizer, layout: str = "bi",
                 max_length: int = 128, label_dtype: torch.dtype | None = None):
        if len(examples) == 0:
            raise ValueError("No examples to batch (the list is empty).")
        if layout not in LAYOUTS:
            raise ValueError(f"layout={layout!r} is not known; use 'bi' (two sequences) or 'cross' (one sequence).")
        self.examples = list(examples)
        first = self.examples[0]
        self.is_pair = isinstance(first, PairExample)
        if any(isinstance(ex, PairExample) != self.is_pair for ex in self.examples):
            raise TypeError("Examples mix single sentences and pairs; batch each task separately.")
        self.layout = layout if self.is_pair else "single"
        self.max_length = max_length
        labeled = [ex.label is not None for ex in self.examples]
        if any(labeled) and not all(labeled):
            missing = [ex.id for ex in self.examples if ex.label is None][:3]
            raise ValueError(f"Some examples have labels and some do not (e.g. ids {missing}); a batch needs "
                             "all or none.")
        self.labeled = all(labeled)
        self.label_dtype = label_dtype if label_dtype is not None else self._infer_label_dtype()

        if self.layout == "single":
            enc = tokenizer([ex.sentence for ex in self.examples], max_length=max_length, padding=False,
                            return_tensors=None)
            self.encoded = [{"input_ids": ids, "token_type_ids": tt}
                            for ids, tt in zip(enc["input_ids"], enc["token_type_ids"])]
            self.lengths = [len(e["input_ids"]) for e in self.encoded]
        elif self.layout == "cross":
            enc = tokenizer([ex.sentence1 for ex in self.examples], pairs=[ex.sentence2 for ex in self.examples],
                            max_length=max_length, padding=False, return_tensors=None)
            self.encoded = [{"input_ids": ids, "token_type_ids": tt}
                            for ids, tt in zip(enc["input_ids"], enc["token_type_ids"])]
            self.lengths = [len(e["input_ids"]) for e in self.encoded]
        else:
            enc1 = tokenizer([ex.sentence1 for ex in self.examples], max_length=max_length, padding=False,
                             return_tensors=None)
            enc2 = tokenizer([ex.sentence2 for ex in self.examples], max_length=max_length, padding=False,
                             return_tensors=None)
            self.encoded = [{"input_ids_1": a, "token_type_ids_1": ta, "input_ids_2": b, "token_type_ids_2": tb}
                            for a, ta, b, tb in zip(enc1["input_ids"], enc1["token_type_ids"],
                                                    enc2["input_ids"], enc2["token_type_ids"])]
            # Both sides are padded; bucket on the total so that both spreads shrink.
            self.lengths = [len(e["input_ids_1"]) + len(e["input_ids_2"]) for e in self.encoded]
        self.pad_token_id = tokenizer.pad_token_id

    def _infer_label_dtype(self) -> torch.dtype | None:
        if not self.labeled:
            return None
        if not self.is_pair:
            return torch.long
        values = [ex.label for ex in self.examples]
        if all(isinstance(v, int) for v in values) and max(values) > 1:
            return torch.long  # a multi-class pair task (e.g. NLI): class ids
        return torch.float  # binary paraphrase (0./1. for BCE) or regression scores

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        ex = self.examples[index]
        return {**self.encoded[index], "id": ex.id, "label": ex.label}


# ------------------------------------------------------------------------------------------ collate
def pad(sequences: Sequence[Sequence[int]], pad_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad lists of ids to the longest: (ids (B, T), attention mask (B, T) with 1 on real tokens)."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_value, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)  # (B, T)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    return ids, mask


class Collator:
    """Turns a list of dataset items into one batch dict, padding to the longest sequence of the batch."""

    def __init__(self, pad_token_id: int, layout: str, label_dtype: torch.dtype | None):
        self.pad_token_id = pad_token_id
        self.layout = layout
        self.label_dtype = label_dtype

    def __call__(self, items: list[dict]) -> dict:
        batch: dict = {}
        suffixes = ["_1", "_2"] if self.layout == "bi" else [""]
        for suffix in suffixes:
            ids, mask = pad([it[f"input_ids{suffix}"] for it in items], self.pad_token_id)
            types, _ = pad([it[f"token_type_ids{suffix}"] for it in items], 0)
            batch[f"input_ids{suffix}"] = ids
            batch[f"attention_mask{suffix}"] = mask
            batch[f"token_type_ids{suffix}"] = types
        if self.label_dtype is not None:
            batch["labels"] = torch.tensor([it["label"] for it in items], dtype=self.label_dtype)  # (B,)
        batch["ids"] = [it["id"] for it in items]
        return batch


# ------------------------------------------------------------------------------------------ sampler
class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices whose sequences have similar lengths, in a random but reproducible order.

    Per epoch: shuffle all indices; cut them into buckets of ``batch_size * bucket_size_multiplier``; sort each
    bucket by length; cut the sorted buckets into batches; shuffle the order of the batches. Every index
    appears exactly once per epoch. With ``shuffle=False`` the whole set is sorted by length (for fast
    evaluation; predictions are matched back by id).

    The order depends on ``seed`` and the epoch only: each pass over the sampler advances the epoch, and
    ``set_epoch(e)`` jumps to epoch ``e`` (as ``DistributedSampler`` does). Pass ``generator`` instead of
    ``seed`` to draw from your own ``torch.Generator``.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 generator: torch.Generator | None = None, bucket_size_multiplier: int = 50,
                 drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size}).")
        if bucket_size_multiplier < 1:
            raise ValueError(f"bucket_size_multiplier must be >= 1 (got {bucket_size_multiplier}).")
        if len(lengths) == 0:
            raise ValueError("lengths is empty: there is nothing to batch.")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.generator = generator
        self.bucket_size = batch_size * bucket_size_multiplier
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """The batches of one epoch (``epoch`` None: the current one), without advancing it."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.lengths)
        if not self.shuffle:
            order = torch.sort(self.lengths, stable=True).indices
        else:
            g = self.generator if self.generator is not None else torch.Generator().manual_seed(
                self.seed * 100_003 + epoch)
            order = torch.randperm(n, generator=g)
            pieces = []
            for bucket in torch.split(order, self.bucket_size):
                # a stable sort keeps the random order among equal lengths
                pieces.append(bucket[torch.sort(self.lengths[bucket], stable=True).indices])
            order = torch.cat(pieces)
        batches = list(torch.split(order, self.batch_size))  # only the last one can be short
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        return [b.tolist() for b in batches]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        self.epoch += 1
        return iter(batches)


def padding_stats(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> dict[str, float]:
    """Real and padded tokens over ``batches`` when each batch is padded to its longest sequence.

    ``overhead`` = padded / real tokens (0.10 means 10% more tokens than the text holds).
    """
    real = padded = 0
    for batch in batches:
        batch_lengths = [lengths[i] for i in batch]
        real += sum(batch_lengths)
        padded += max(batch_lengths) * len(batch_lengths) - sum(batch_lengths)
    return {"real": real, "padded": padded, "total": real + padded, "overhead": padded / real if real else 0.0}


# ------------------------------------------------------------------------------------------ loader
def make_loader(examples: Sequence[SentenceExample | PairExample], tokenizer, batch_size: int,
                layout: str = "bi", bucketing: bool | None = None, shuffle: bool = True, seed: int = 0,
                max_length: int = 128, num_workers: int = 0, drop_last: bool = False,
                bucket_size_multiplier: int = 50, label_dtype: torch.dtype | None = None,
                dataset: EncodedDataset | None = None) -> DataLoader:
    """A ``DataLoader`` of padded batch dicts over ``examples``.

    ``layout`` applies to pairs ("bi" or "cross"). ``bucketing`` (default: on when shuffling, i.e. training)
    groups similar lengths; without it batches are drawn uniformly at random (``shuffle=True``) or in file
    order. The order is reproducible from ``seed``; the loader's ``batch_sampler`` has ``set_epoch``. Pass a
    ready ``dataset`` (an :class:`EncodedDataset`) to reuse its token ids for another loader.

    Taught in notebooks/01_setup_and_data.ipynb.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size}).")
    if dataset is None:
        dataset = EncodedDataset(examples, tokenizer, layout=layout, max_length=max_length, label_dtype=label_dtype)
    if bucketing is None:
        bucketing = shuffle
    if bucketing:
        sampler = BucketBatchSampler(dataset.lengths, batch_size, shuffle=shuffle, seed=seed,
                                     bucket_size_multiplier=bucket_size_multiplier, drop_last=drop_last)
    elif shuffle:
        sampler = BatchSampler(RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)),
                               batch_size, drop_last)
    else:
        sampler = BatchSampler(SequentialSampler(dataset), batch_size, drop_last)
    collate = Collator(dataset.pad_token_id, dataset.layout, dataset.label_dtype)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)
