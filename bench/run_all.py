"""Every speed benchmark in one go (``make bench``): each script in its own process, its ratios collected.

    python bench/run_all.py [--device cpu|cuda] [--threads N] [--out runs/bench] [--only throughput,pcgrad]

Runs, in order: ``bench_throughput.py`` (minBERT vs transformers, fp32; also bf16 on CUDA),
``bench_optimizer.py`` (mtkit AdamW vs torch AdamW), ``bench_pcgrad.py`` (PCGrad step vs plain step) and
``bench_padding.py`` (bucketed vs shuffled batches; on the demo set, and says so, without the CS224N files).
Each writes ``<out>/<name>.json``; the console shows each script's own table. The exit status is that of the
first benchmark that failed (0 when all ran). The accuracy comparisons are ``python -m bench.results``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def plan(device: str, threads: int | None) -> list[tuple[str, list[str]]]:
    extra = ["--threads", str(threads)] if threads else []
    runs = [("throughput", ["bench_throughput.py", "--device", device, *extra]),
            ("optimizer", ["bench_optimizer.py", "--device", device, *extra]),
            ("pcgrad", ["bench_pcgrad.py", "--device", device, *extra]),
            ("padding", ["bench_padding.py"])]
    if device.startswith("cuda"):
        runs.insert(1, ("throughput-bf16", ["bench_throughput.py", "--device", device, "--dtype", "bf16", *extra]))
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="runs/bench")
    parser.add_argument("--only", default=None, help="comma-separated names: throughput, throughput-bf16, "
                                                     "optimizer, pcgrad, padding")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = None if args.only is None else {n.strip() for n in args.only.split(",")}
    status, summary = 0, []
    for name, command in plan(args.device, args.threads):
        if wanted is not None and name not in wanted:
            continue
        script = [sys.executable, str(HERE / command[0]), *command[1:]]
        if name != "padding":
            script += ["--json", str(out / f"{name}.json")]
        print(f"\n=== {name}: {' '.join(command)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(script)
        summary.append((name, code, time.perf_counter() - start))
        if code and not status:
            status = code
    print("\n| benchmark | exit | seconds |\n|---|---:|---:|")
    for name, code, seconds in summary:
        print(f"| {name} | {code} | {seconds:.0f} |")
    return status


if __name__ == "__main__":
    sys.exit(main())
