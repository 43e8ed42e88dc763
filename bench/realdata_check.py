"""Real-data check: fine-tune the default encoder on the CS224N files and compare dev metrics with the baselines.

Issue 5's acceptance: training from the default encoder (all-MiniLM-L6-v2) beats the zero-shot and
frozen-encoder baselines on all three tasks. The baselines, measured on the dev files without fine-tuning:

- STS: cosine of the mean-pooled embeddings, Pearson 0.838;
- Quora: cosine with a threshold tuned on dev, accuracy 0.776;
- SST: logistic regression on frozen mean embeddings, accuracy 0.410.

The run uses the kit's defaults for each kind of task (sentiment head + cross-entropy; [u; v; |u-v|] -> 1 logit +
BCE for Quora; cosine head + CosineSimilarityLoss for STS), mean pooling, round-robin batches, AdamW with the
heads at ``--head-lr`` and the encoder at ``--lr`` (linear decay after 10% warmup). It first evaluates the
untouched encoder (STS Pearson there is the zero-shot number, computed by the kit's own pipeline), then
trains and prints the best dev metrics beside the baselines.

    python bench/realdata_check.py [--data-dir ../shared/data] [--train-limit 4000] [--epochs 2] [--device auto]

Not a test (it needs the CS224N files and minutes of compute); ``--train-limit`` subsets each training set
(a seeded random subset) for CPU runs. Exit status 0 when every task beats its baseline, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BASELINES = {"sts": ("pearson", 0.838), "para": ("accuracy", 0.776), "sst": ("accuracy", 0.410)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="CS224N files (default: MTKIT_DATA or ../shared/data)")
    parser.add_argument("--train-limit", type=int, default=4000, help="training examples per task (0: all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--output-dir", default=str(REPO / "runs" / "realdata_check"))
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    import torch

    from mtkit.train.config import TrainConfig
    from mtkit.train.trainer import Trainer
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = args.data_dir
    if data_dir is None:
        import os
        for candidate in (os.environ.get("MTKIT_DATA"), REPO.parent / "shared" / "data"):
            if candidate and (Path(candidate) / "ids-sst-train.csv").is_file():
                data_dir = str(candidate)
                break
    if data_dir is None or not (Path(data_dir) / "ids-sst-train.csv").is_file():
        print("CS224N data not found: pass --data-dir or set MTKIT_DATA (see README, 'Real data').")
        return 2
    config = TrainConfig(
        encoder=None, data_dir=data_dir, train_limit=args.train_limit or None, epochs=args.epochs,
        batch_size=args.batch_size, eval_batch_size=128, lr=args.lr, head_lr=args.head_lr, scheduler="linear",
        warmup_ratio=0.1, schedule="round-robin", dropout=0.1, device=args.device, output_dir=args.output_dir,
        write_predictions=False, telemetry_every=0, seed=11711)
    trainer = Trainer(config)
    start = time.perf_counter()
    zero_shot = trainer.evaluate()
    print(f"before fine-tuning ({time.perf_counter() - start:.0f} s): "
          + ", ".join(f"{t} {s:.4f}" for t, s in zero_shot["scores"].items()))
    start = time.perf_counter()
    result = trainer.fit(overwrite=True)
    seconds = time.perf_counter() - start
    print(f"\ntrained {result.steps} steps in {seconds / 60:.1f} min on {trainer.device} "
          f"(train_limit {config.train_limit}, {config.epochs} epochs, batch {config.batch_size})")
    print(f"{'task':<6}{'metric':<10}{'before':>9}{'best dev':>10}{'baseline':>10}  beats")
    ok = True
    rows = {}
    for task, (metric, baseline) in BASELINES.items():
        before = zero_shot["metrics"][task][metric]
        after = result.best["metrics"][task][metric]
        beats = after > baseline
        ok &= beats
        rows[task] = {"metric": metric, "before": before, "after": after, "baseline": baseline, "beats": beats}
        print(f"{task:<6}{metric:<10}{before:>9.4f}{after:>10.4f}{baseline:>10.3f}  {'yes' if beats else 'NO'}")
    print(f"overall (best): {result.best['overall']:.4f} at step {result.best['step']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "steps": result.steps, "seconds": seconds,
                                               "config": config.to_dict()}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
