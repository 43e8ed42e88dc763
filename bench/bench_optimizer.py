"""Optimizer step time: mtkit AdamW (foreach path and per-parameter loop) against torch.optim.AdamW(foreach=True).

torch's per-parameter loop (foreach=False) is timed as well, for context. Each optimizer gets its own copy of
the default encoder's parameters (all-MiniLM-L6-v2, 103 tensors, 22.7M numbers) with the same random
gradients, set once. Only ``optimizer.step()`` is timed. The optimizers are interleaved (a fresh random
order every round), warmed up first, and each round times ``--iters`` steps; the table shows the median time
per step and ``ratio = mtkit time / torch time`` (lower is faster; the goal of issue 3 is <= 1.3 for the
foreach path). Two layouts are timed: one parameter group, and the 16 groups of
layer-wise lr decay (mtkit.optim.layerwise_lr_groups), which the multitask recipes use.

    python bench/bench_optimizer.py [--device cpu|cuda] [--repeats 15] [--iters 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.common import add_run_options, device_from  # noqa: E402
from mtkit.model.bert import BertModel  # noqa: E402
from mtkit.optim import AdamW, layerwise_lr_groups  # noqa: E402

HP = dict(lr=2e-5, betas=(0.9, 0.999), weight_decay=0.01)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(kind: str, layout: str, encoder: BertModel, device: torch.device, seed: int):
    """A fresh copy of the encoder on ``device`` with fixed random gradients, and the optimizer to time."""
    model = copy.deepcopy(encoder).to(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for p in model.parameters():
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(device)
    if layout == "llrd":
        params = layerwise_lr_groups(model, HP["lr"], 0.95, HP["weight_decay"], encoder_prefix="").groups
    else:
        params = list(model.parameters())
    if kind == "mtkit foreach":
        opt = AdamW(params, eps=1e-6, foreach=True, **HP)
    elif kind == "mtkit loop":
        opt = AdamW(params, eps=1e-6, foreach=False, **HP)
    elif kind == "torch foreach":
        opt = torch.optim.AdamW(params, eps=1e-8, foreach=True, **HP)
    elif kind == "torch loop":
        opt = torch.optim.AdamW(params, eps=1e-8, foreach=False, **HP)
    else:
        raise ValueError(kind)
    return model, opt


def time_steps(opt, iters: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        opt.step()
    _sync(device)
    return (time.perf_counter() - start) / iters


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per optimizer")
    parser.add_argument("--iters", type=int, default=5, help="steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per optimizer first")
    parser.add_argument("--layouts", default="single,llrd", help="comma list of: single, llrd")
    add_run_options(parser)
    args = parser.parse_args(argv)

    device = device_from(args, parser)
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    for layout in layouts:
        if layout not in ("single", "llrd"):
            parser.error(f"unknown layout {layout!r}; use single and/or llrd")

    encoder = BertModel.from_pretrained()
    n_tensors = sum(1 for _ in encoder.parameters())
    n_numbers = sum(p.numel() for p in encoder.parameters())
    kinds = ["mtkit foreach", "mtkit loop", "torch foreach", "torch loop"]
    rng = random.Random(args.seed)
    results = []
    for layout in layouts:
        setups = {kind: build(kind, layout, encoder, device, args.seed) for kind in kinds}
        for _, opt in setups.values():
            for _ in range(args.warmup):
                opt.step()
        times = {kind: [] for kind in kinds}
        for _ in range(args.repeats):
            order = kinds[:]
            rng.shuffle(order)
            for kind in order:
                times[kind].append(time_steps(setups[kind][1], args.iters, device))
        medians = {kind: statistics.median(ts) for kind, ts in times.items()}
        for kind in kinds:
            results.append({
                "layout": layout, "optimizer": kind, "groups": len(setups[kind][1].param_groups),
                "median_ms": medians[kind] * 1e3, "min_ms": min(times[kind]) * 1e3,
                "ratio_vs_torch": medians[kind] / medians["torch foreach"],
            })
        del setups

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"AdamW step on all-MiniLM-L6-v2 parameters ({n_tensors} tensors, {n_numbers / 1e6:.1f}M numbers), "
          f"device {device} ({device_name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{args.repeats} rounds x {args.iters} steps, interleaved in random order, after {args.warmup} warmup "
          "steps; median per step. ratio = time / torch.optim.AdamW(foreach=True) time (goal <= 1.3 for foreach)")
    print(f"{'layout':8} {'optimizer':15} {'groups':>6} {'median ms':>10} {'min ms':>9} {'ratio':>7}")
    for r in results:
        print(f"{r['layout']:8} {r['optimizer']:15} {r['groups']:>6} {r['median_ms']:>10.3f} {r['min_ms']:>9.3f} "
              f"{r['ratio_vs_torch']:>7.2f}")
    if args.json:
        meta = {"device": str(device), "device_name": device_name, "torch": torch.__version__,
                "threads": torch.get_num_threads(), "repeats": args.repeats, "iters": args.iters,
                "warmup": args.warmup, "tensors": n_tensors, "numbers": n_numbers}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
