"""Throughput: mtkit's minBERT against transformers.BertModel (sdpa), same weights, batch of real SST sentences.

Two workloads, each timed for both models on the same tensors:

- inference: one forward pass in eval mode under ``torch.inference_mode()``;
- train step: forward in train mode (dropout on), a mean-pooled loss, backward, ``torch.optim.AdamW`` step.

The two models are interleaved (their order alternates every round), warmed up first, and each round times
``--iters`` calls; the table shows the median round, and the ratio of the fastest rounds as well (steadier on a
shared CPU). ``ratio = transformers time / mtkit time``, so >= 1.0 means mtkit is at least as fast. Goal
(issue 2): >= 1.0 on both workloads.

    python bench/bench_throughput.py [--device cpu|cuda] [--dtype fp32|bf16] [--repeats 10] [--json out.json]

Sentences come from ids-sst-train.csv in MTKIT_DATA or ../shared/data; without the CS224N files the demo
generator's sentences are used, and the script says so. ``--dtype bf16`` runs both models under autocast.
transformers is a test/bench extra, never a runtime dependency of mtkit.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mtkit.model.bert import BertModel  # noqa: E402
from mtkit.model.pretrained import default_encoder_dir  # noqa: E402
from mtkit.model.tokenizer import Tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load_sentences(n: int, seed: int) -> tuple[list[str], str]:
    """``n`` SST training sentences drawn with ``seed``; the demo set (or a note) when the files are absent."""
    candidates = [os.environ.get("MTKIT_DATA"), str(REPO.parent / "shared" / "data")]
    for folder in candidates:
        if folder and (Path(folder) / "ids-sst-train.csv").is_file():
            import pandas as pd

            frame = pd.read_csv(Path(folder) / "ids-sst-train.csv", sep="\t")
            texts = [s for s in frame["sentence"].tolist() if isinstance(s, str)]
            return random.Random(seed).sample(texts, n), f"SST train ({Path(folder) / 'ids-sst-train.csv'})"
    try:
        from mtkit.data.demo import generate_demo

        texts = [row[1] for row in generate_demo(seed=seed)["sst"]["train"]]
        return random.Random(seed).sample(texts, min(n, len(texts))), "NOTE: CS224N files not found; demo SST sentences"
    except Exception as err:  # the demo module belongs to another box; do not let it stop the benchmark
        words = "the film is a quiet funny moving dull long story of love and loss told with care".split()
        rng = random.Random(seed)
        texts = [" ".join(rng.choices(words, k=rng.randint(8, 40))) for _ in range(n)]
        return texts, f"NOTE: CS224N files not found and demo unavailable ({err}); synthetic sentences"


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, H)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 = autocast to bfloat16")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per model and workload")
    parser.add_argument("--iters", type=int, default=3, help="calls per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--model", default=None, help="a Hugging Face BERT folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--workloads", default="inference,train")
    parser.add_argument("--no-padding", type=int, default=None, metavar="T",
                        help="use sentences of at least T tokens cut to T, so the batch has no padding at all "
                             "(times the kernels alone; the default batch is padded as real batches are)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)

    try:
        import transformers
    except ImportError:
        print("transformers is needed for this benchmark: pip install -e '.[test]'")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def autocast():
        if args.dtype == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    model_dir = Path(args.model) if args.model else default_encoder_dir()
    tokenizer = Tokenizer.from_pretrained(model_dir)
    if args.no_padding:
        pool, source = load_sentences(2000, args.seed)
        lengths = tokenizer(pool, padding=False, return_tensors=None, max_length=512)["attention_mask"]
        texts = [t for t, m in zip(pool, lengths) if len(m) >= args.no_padding][: args.batch_size]
        if len(texts) < args.batch_size:
            print(f"only {len(texts)} sentences have {args.no_padding} tokens; choose a smaller --no-padding")
            return 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncation is the point here
            encoded = tokenizer(texts, max_length=args.no_padding)
        assert bool(encoded["attention_mask"].all())
        source += f", {args.batch_size} sentences of >= {args.no_padding} tokens cut to {args.no_padding} (no padding)"
    else:
        texts, source = load_sentences(args.batch_size, args.seed)
        encoded = tokenizer(texts, max_length=128)
    batch = {k: v.to(device) for k, v in encoded.items()}
    real = batch["attention_mask"].float().mean().item()
    B, T = batch["input_ids"].shape

    torch.manual_seed(args.seed)
    models = {
        "mtkit": BertModel.from_pretrained(model_dir, attention="sdpa").to(device),
        "transformers": transformers.BertModel.from_pretrained(str(model_dir), attn_implementation="sdpa").to(device),
    }
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-5) for name, m in models.items()}

    def inference(name: str) -> None:
        model = models[name]
        with torch.inference_mode(), autocast():
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  token_type_ids=batch["token_type_ids"])

    def train_step(name: str) -> None:
        model, optimizer = models[name], optimizers[name]
        with autocast():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"])
            loss = masked_mean(out.last_hidden_state, batch["attention_mask"]).float().pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    workloads = {"inference": inference, "train": train_step}
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
    results: dict = {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(), "dtype": args.dtype, "batch": [B, T],
        "threads": torch.get_num_threads(), "torch": torch.__version__, "transformers": transformers.__version__,
        "model": str(model_dir), "sentences": source, "real_token_fraction": real,
        "repeats": args.repeats, "iters": args.iters, "workloads": {},
    }
    print(f"sentences: {source}")
    print(f"batch {B} x {T} tokens ({real:.0%} real, {1 - real:.0%} padding) on {device} ({args.dtype}), "
          f"{torch.get_num_threads()} threads; "
          f"{args.repeats} rounds x {args.iters} calls, interleaved")

    for workload in chosen:
        step = workloads[workload]
        for name in models:
            models[name].train(workload == "train")
            for _ in range(args.warmup):
                step(name)
        sync()
        times: dict[str, list[float]] = {name: [] for name in models}
        order = list(models)
        for round_index in range(args.repeats):
            for name in (order if round_index % 2 == 0 else order[::-1]):
                sync()
                start = time.perf_counter()
                for _ in range(args.iters):
                    step(name)
                sync()
                times[name].append((time.perf_counter() - start) / args.iters)
        medians = {name: statistics.median(values) for name, values in times.items()}
        fastest = {name: min(values) for name, values in times.items()}
        results["workloads"][workload] = {
            "median_s": medians, "min_s": fastest, "all_s": times,
            "ratio_transformers_over_mtkit": medians["transformers"] / medians["mtkit"],
            "ratio_of_fastest_rounds": fastest["transformers"] / fastest["mtkit"],
        }

    print()
    print(f"{'workload':<10} {'mtkit ms':>10} {'transformers ms':>16} {'ratio':>7} {'ratio (fastest)':>16}")
    for workload, r in results["workloads"].items():
        m = r["median_s"]
        print(f"{workload:<10} {m['mtkit'] * 1e3:>10.1f} {m['transformers'] * 1e3:>16.1f} "
              f"{r['ratio_transformers_over_mtkit']:>7.2f} {r['ratio_of_fastest_rounds']:>16.2f}")
    print("times are median rounds; ratio = transformers / mtkit, >= 1.00 means mtkit is at least as fast;\n"
          "'fastest' compares each model's fastest round, steadier on a shared CPU")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
