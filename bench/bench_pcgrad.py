"""Cost of gradient surgery: a multitask training step with PCGrad against the same step without it.

One encoder (default: all-MiniLM-L6-v2, 22.7M numbers, in train mode) and three heads: "sst" (one sentence,
mean pooling, 5-way cross-entropy), "para" (two sentences, [u; v; |u - v|], BCE) and "sts" (two sentences,
[u; v], MSE). Every variant runs the same fixed batches (random token ids, --batch x --seq-len per sentence)
through forward, backward and ``torch.optim.AdamW.step()``:

- ``summed``: one backward of the summed loss (forward all three tasks, add, backward once);
- ``separate``: one backward per task, accumulating into ``.grad`` (the same autograd work as ``summed``: the
  batches are disjoint, so the three graphs share only the parameters);
- ``pcgrad``: one backward per task + ``GradientSurgery.capture`` after each + ``GradientSurgery.step``
  (telemetry off);
- ``pcgrad+tel1``: the same with telemetry recorded at *every* step, to measure the cost of one record.

The variants are interleaved in a fresh random order every round, after warmup steps; each round times
``--iters`` steps; the table shows medians. The ratios reported:

- ``pcgrad / separate``: the fair comparison (same K backward passes), issue 6's goal <= 1.10;
- ``pcgrad / summed``: against one backward of the summed loss, for reference;
- telemetry overhead at the default interval N = 50: (pcgrad+tel1 - pcgrad) / N / pcgrad (goal <= 5 %).

On a busy machine the end-to-end medians move by several per cent between rounds, more than the cost being
measured. So the script also times the surgery's own work in isolation, on fixed gradients from one real
step (many short interleaved rounds): ``accumulate`` is what a step without surgery does with the K task
gradients (the first becomes .grad, the others are added in place); ``surgery`` is K ``capture`` calls and one
``step``; ``surgery+tel`` the same with a telemetry record. Then

- PCGrad's added work = surgery - accumulate, as a fraction of the median ``separate`` step;
- telemetry's added work per record = surgery+tel - surgery, divided by N = 50 for the default interval;
  a run without surgery (method "none") does per-task capture only on telemetry steps, so its overhead is
  (surgery+tel - accumulate) / N.

    python bench/bench_pcgrad.py [--device cpu|cuda] [--threads 1] [--repeats 11] [--iters 1] [--batch 16]
                                 [--seq-len 32] [--bf16] [--json out.json]

On a CPU shared with other jobs, pass ``--threads 1``: with more threads than free cores, OpenMP's spinning
threads make single steps ten times slower at random, and the medians stop meaning anything.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.common import add_run_options, device_from  # noqa: E402
from mtkit.model.bert import BertModel  # noqa: E402
from mtkit.surgery import GradientSurgery  # noqa: E402

TASKS = ("sst", "para", "sts")
VARIANTS = ("summed", "separate", "pcgrad", "pcgrad+tel1")
DEFAULT_INTERVAL = 50


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench(torch.nn.Module):
    def __init__(self, encoder: BertModel):
        super().__init__()
        self.encoder = encoder
        H = encoder.config.hidden_size
        self.heads = torch.nn.ModuleDict({"sst": torch.nn.Linear(H, 5), "para": torch.nn.Linear(3 * H, 1),
                                          "sts": torch.nn.Linear(2 * H, 1)})

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(ids).last_hidden_state.mean(dim=1)  # (B, H)

    def loss(self, task: str, batch: dict) -> torch.Tensor:
        with torch.autocast(batch["ids"].device.type, dtype=torch.bfloat16, enabled=batch["bf16"]):
            if task == "sst":
                return F.cross_entropy(self.heads["sst"](self.embed(batch["ids"])).float(), batch["labels"])
            u, v = self.embed(batch["ids"]), self.embed(batch["ids2"])  # (B, H) each
            if task == "para":
                logits = self.heads["para"](torch.cat([u, v, (u - v).abs()], dim=-1)).squeeze(-1)  # (B,)
                return F.binary_cross_entropy_with_logits(logits.float(), batch["labels"])
            return F.mse_loss(self.heads["sts"](torch.cat([u, v], dim=-1)).squeeze(-1).float(), batch["labels"])


def make_batches(vocab: int, batch: int, seq_len: int, device: torch.device, bf16: bool, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)

    def ids():
        return torch.randint(1000, vocab, (batch, seq_len), generator=gen).to(device)

    return {"sst": {"ids": ids(), "labels": torch.randint(0, 5, (batch,), generator=gen).to(device), "bf16": bf16},
            "para": {"ids": ids(), "ids2": ids(), "labels": torch.randint(0, 2, (batch,), generator=gen).float()
                     .to(device), "bf16": bf16},
            "sts": {"ids": ids(), "ids2": ids(), "labels": (torch.rand(batch, generator=gen) * 5).to(device),
                    "bf16": bf16}}


def run_step(variant: str, model: Bench, batches: dict, opt, surgeries: dict, step: int) -> None:
    if variant == "summed":
        sum(model.loss(t, batches[t]) for t in TASKS).backward()
    elif variant == "separate":
        for t in TASKS:
            model.loss(t, batches[t]).backward()
    else:
        surgery = surgeries[variant]
        for t in TASKS:
            model.loss(t, batches[t]).backward()
            surgery.capture(t)
        info = surgery.step(step)
        if info.skipped:
            raise RuntimeError(f"non-finite gradients in the benchmark: {info.nonfinite_tasks}")
    opt.step()
    opt.zero_grad(set_to_none=True)


def time_surgery_work(model: Bench, batches: dict, shared, num_layers: int, device: torch.device, repeats: int,
                      rng: random.Random) -> dict[str, float]:
    """Median seconds of the gradient bookkeeping alone, on fixed per-task gradients from one real step."""
    params = [p for _, p in shared]
    grads = []
    for t in TASKS:
        model.zero_grad(set_to_none=True)
        model.loss(t, batches[t]).backward()
        grads.append([p.grad for p in params])  # kept: the values do not matter for timing, only the sizes
    model.zero_grad(set_to_none=True)
    surgeries = {"surgery": GradientSurgery(shared, list(TASKS), telemetry_every=0, num_layers=num_layers),
                 "surgery+tel": GradientSurgery(shared, list(TASKS), telemetry_every=1, num_layers=num_layers)}

    def accumulate():  # what AccumulateGrad does without surgery: the first gradient is taken, the others added
        for p, g in zip(params, grads[0]):
            p.grad = g
        for k in range(1, len(TASKS)):
            pairs = [(p.grad, g) for p, g in zip(params, grads[k]) if g is not None]  # the pooler gets none here
            torch._foreach_add_([a for a, _ in pairs], [g for _, g in pairs])
        for p in params:
            p.grad = None

    def with_surgery(name):
        surgery = surgeries[name]  # noqa: F821 (the closure runs before the `del` below)
        for k, t in enumerate(TASKS):
            for p, g in zip(params, grads[k]):
                p.grad = g
            surgery.capture(t)
        surgery.step(0)
        for p in params:
            p.grad = None

    work = {"accumulate": accumulate, "surgery": lambda: with_surgery("surgery"),
            "surgery+tel": lambda: with_surgery("surgery+tel")}
    for fn in work.values():
        fn()
    times = {k: [] for k in work}
    for _ in range(repeats):
        order = list(work)
        rng.shuffle(order)
        for k in order:
            _sync(device)
            start = time.perf_counter()
            work[k]()
            _sync(device)
            times[k].append(time.perf_counter() - start)
    del surgeries
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument("--repeats", type=int, default=11, help="timed rounds per variant")
    parser.add_argument("--iters", type=int, default=1, help="training steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--batch", type=int, default=16, help="sentences (or pairs) per task batch")
    parser.add_argument("--seq-len", type=int, default=32, help="tokens per sentence")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward passes")
    parser.add_argument("--micro-repeats", type=int, default=31, help="rounds of the isolated surgery timing")
    add_run_options(parser)
    args = parser.parse_args(argv)

    device = device_from(args, parser)
    torch.manual_seed(args.seed)
    encoder = BertModel.from_pretrained()
    model = Bench(encoder).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=True)
    shared = [("encoder." + n, p) for n, p in model.encoder.named_parameters()]
    L = encoder.config.num_hidden_layers
    surgeries = {"pcgrad": GradientSurgery(shared, list(TASKS), method="pcgrad", telemetry_every=0, num_layers=L),
                 "pcgrad+tel1": GradientSurgery(shared, list(TASKS), method="pcgrad", telemetry_every=1,
                                                num_layers=L)}
    batches = make_batches(encoder.config.vocab_size, args.batch, args.seq_len, device, args.bf16, args.seed)

    step = 0
    for variant in VARIANTS:
        for _ in range(args.warmup):
            run_step(variant, model, batches, opt, surgeries, step)
            step += 1
    times = {v: [] for v in VARIANTS}
    rng = random.Random(args.seed)
    for _ in range(args.repeats):
        order = list(VARIANTS)
        rng.shuffle(order)
        for variant in order:
            _sync(device)
            start = time.perf_counter()
            for _ in range(args.iters):
                run_step(variant, model, batches, opt, surgeries, step)
                step += 1
            _sync(device)
            times[variant].append((time.perf_counter() - start) / args.iters)
    med = {v: statistics.median(ts) for v, ts in times.items()}
    micro = time_surgery_work(model, batches, shared, L, device, args.micro_repeats, rng)
    tel_cost = med["pcgrad+tel1"] - med["pcgrad"]
    results = {
        "median_ms": {v: med[v] * 1e3 for v in VARIANTS},
        "min_ms": {v: min(times[v]) * 1e3 for v in VARIANTS},
        "pcgrad_vs_separate": med["pcgrad"] / med["separate"],
        "pcgrad_vs_separate_min": min(times["pcgrad"]) / min(times["separate"]),
        "pcgrad_vs_summed_min": min(times["pcgrad"]) / min(times["summed"]),
        "pcgrad_vs_summed": med["pcgrad"] / med["summed"],
        "separate_vs_summed": med["separate"] / med["summed"],
        "telemetry_record_ms": tel_cost * 1e3,
        "telemetry_overhead_pcgrad_at_50": tel_cost / DEFAULT_INTERVAL / med["pcgrad"],
        "micro_median_ms": {k: v * 1e3 for k, v in micro.items()},
        "pcgrad_added_ms": (micro["surgery"] - micro["accumulate"]) * 1e3,
        "pcgrad_added_fraction": (micro["surgery"] - micro["accumulate"]) / med["separate"],
        "telemetry_record_isolated_ms": (micro["surgery+tel"] - micro["surgery"]) * 1e3,
        "telemetry_overhead_pcgrad_at_50_isolated": (micro["surgery+tel"] - micro["surgery"]) / DEFAULT_INTERVAL
        / med["pcgrad"],
        "telemetry_overhead_none_at_50_isolated": (micro["surgery+tel"] - micro["accumulate"]) / DEFAULT_INTERVAL
        / med["separate"],
    }

    n_numbers = sum(p.numel() for p in model.encoder.parameters())
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"Multitask step (3 tasks, 5 encoder passes of {args.batch} x {args.seq_len} tokens, AdamW step) on "
          f"all-MiniLM-L6-v2 ({n_numbers / 1e6:.1f}M shared numbers), device {device} ({device_name}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, bf16 autocast {args.bf16}")
    print(f"{args.repeats} rounds x {args.iters} steps, interleaved in random order, after {args.warmup} warmup "
          "steps per variant; median seconds per step")
    print(f"{'variant':14} {'median ms':>10} {'min ms':>9}")
    for v in VARIANTS:
        print(f"{v:14} {results['median_ms'][v]:>10.1f} {results['min_ms'][v]:>9.1f}")
    print(f"pcgrad / separate backwards = {results['pcgrad_vs_separate']:.3f}  (goal <= 1.10; same backward work)")
    print(f"pcgrad / one summed backward = {results['pcgrad_vs_summed']:.3f}  "
          f"(separate / summed = {results['separate_vs_summed']:.3f})")
    print(f"ratios of the fastest rounds (less sensitive to other processes): pcgrad / separate = "
          f"{results['pcgrad_vs_separate_min']:.3f}, pcgrad / summed = {results['pcgrad_vs_summed_min']:.3f}")
    print(f"telemetry, end to end: {results['telemetry_record_ms']:.1f} ms per record -> "
          f"{100 * results['telemetry_overhead_pcgrad_at_50']:.2f} % of a PCGrad step at the default interval "
          f"({DEFAULT_INTERVAL} steps; goal <= 5 %)")
    print(f"surgery's own work in isolation ({args.micro_repeats} interleaved rounds, median ms): "
          + ", ".join(f"{k} {v:.1f}" for k, v in results["micro_median_ms"].items()))
    print(f"  PCGrad adds {results['pcgrad_added_ms']:.1f} ms to a {results['median_ms']['separate']:.0f} ms step "
          f"= {100 * results['pcgrad_added_fraction']:.1f} % (ratio {1 + results['pcgrad_added_fraction']:.3f}, "
          "goal <= 1.10)")
    print(f"  a telemetry record costs {results['telemetry_record_isolated_ms']:.1f} ms: at the default interval "
          f"{100 * results['telemetry_overhead_pcgrad_at_50_isolated']:.3f} % of a PCGrad step, "
          f"{100 * results['telemetry_overhead_none_at_50_isolated']:.3f} % of a step without surgery "
          "(goal <= 5 %)")
    if args.json:
        meta = {"device": str(device), "device_name": device_name, "torch": torch.__version__,
                "threads": torch.get_num_threads(), "repeats": args.repeats, "iters": args.iters,
                "warmup": args.warmup, "batch": args.batch, "seq_len": args.seq_len, "bf16": args.bf16,
                "shared_numbers": n_numbers}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
