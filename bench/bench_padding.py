"""Padding overhead per epoch on SST train, batch 32: random batches vs length-bucketed batches.

Counts tokens, not time: for each epoch's batches, each batch is padded to its longest sequence (dynamic
padding), and ``overhead = padded tokens / real tokens``. Goal: overhead <= 10% with bucketing.

    python bench/bench_padding.py [--data-dir ../shared/data] [--epochs 3] [--batch-size 32]

Falls back to the demo set (and says so) when the CS224N files are not found.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import BatchSampler, RandomSampler  # noqa: E402

from mtkit.data.batching import BucketBatchSampler, EncodedDataset, padding_stats  # noqa: E402
from mtkit.data.locate import find_data_dir  # noqa: E402
from mtkit.data.tasks import default_task, load_split  # noqa: E402
from mtkit.model.tokenizer import Tokenizer  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with ids-sst-train.csv (default: MTKIT_DATA, "
                        "../shared/data, ./data, else the demo set)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bucket-size-multiplier", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    explicit = args.data_dir
    if explicit is None:
        shared = Path(__file__).resolve().parents[2] / "shared" / "data"
        explicit = str(shared) if (shared / "ids-sst-train.csv").is_file() else None
    source = find_data_dir(explicit)
    print(f"data: {source.description}")
    examples, report = load_split(default_task("sst"), source.path, "train")
    tokenizer = Tokenizer.from_pretrained()
    dataset = EncodedDataset(examples, tokenizer, max_length=128)
    lengths = dataset.lengths
    print(f"SST train: {len(examples):,} sentences, {sum(lengths):,} tokens with [CLS]/[SEP], "
          f"lengths {min(lengths)}-{max(lengths)} (mean {sum(lengths) / len(lengths):.1f}); batch {args.batch_size}")

    random_sampler = BatchSampler(RandomSampler(dataset, generator=torch.Generator().manual_seed(args.seed)),
                                  args.batch_size, drop_last=False)
    bucket_sampler = BucketBatchSampler(lengths, args.batch_size, seed=args.seed,
                                        bucket_size_multiplier=args.bucket_size_multiplier)
    print(f"{'epoch':>5} | {'random: padded/real':>22} | {'bucketed: padded/real':>22} | padded tokens saved")
    totals = {"random": [0, 0], "bucketed": [0, 0]}
    for epoch in range(args.epochs):
        stats = {"random": padding_stats(lengths, list(random_sampler)),
                 "bucketed": padding_stats(lengths, list(bucket_sampler))}
        for name, s in stats.items():
            totals[name][0] += s["padded"]
            totals[name][1] += s["real"]
        saved = 1 - stats["bucketed"]["padded"] / stats["random"]["padded"]
        print(f"{epoch:>5} | {stats['random']['overhead']:>21.1%} | {stats['bucketed']['overhead']:>21.1%} | "
              f"{saved:.1%}")
    random_overhead = totals["random"][0] / totals["random"][1]
    bucket_overhead = totals["bucketed"][0] / totals["bucketed"][1]
    print(f"  all | {random_overhead:>21.1%} | {bucket_overhead:>21.1%} | "
          f"{1 - totals['bucketed'][0] / totals['random'][0]:.1%}")
    print("bucket size (x batch size) vs overhead, epoch 0: the trade between less padding and more randomness")
    for multiplier in (1, 2, 5, 10, 50, 100):
        sampler = BucketBatchSampler(lengths, args.batch_size, seed=args.seed, bucket_size_multiplier=multiplier)
        print(f"  x{multiplier:<4} {padding_stats(lengths, sampler.batches(0))['overhead']:.1%}")
    goal = bucket_overhead <= 0.10
    print(f"goal: padding overhead <= 10% with bucketing -> {'met' if goal else 'NOT met'} ({bucket_overhead:.1%}); "
          f"without bucketing {random_overhead:.1%}")
    return 0 if goal else 1


if __name__ == "__main__":
    raise SystemExit(main())
