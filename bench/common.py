"""What the benchmarks share: the run options (threads, seed, a JSON copy of the results) and the device check."""
from __future__ import annotations

import argparse

import torch


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--threads``, ``--seed`` and ``--json``, the same in every benchmark."""
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this file")


def device_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> torch.device:
    """``args.device`` as a torch device (a CUDA device that is not there is a usage error), with ``--threads``
    applied."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch.cuda.is_available() is False on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    return device
