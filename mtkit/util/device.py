"""Device choice and seeding: the two things every notebook does first."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def get_device(prefer: str | None = None, verbose: bool = True) -> torch.device:
    """CUDA if there is one, then Apple's MPS, then CPU, with a friendly note.

    ``prefer`` ("cpu", "cuda", "cuda:1", "mps", or None / "auto") overrides the automatic choice; asking for a
    device that is not there falls back to the CPU and says so rather than failing.
    """
    if prefer not in (None, "", "auto"):
        wanted = torch.device(prefer)
        available = (wanted.type == "cpu"
                     or (wanted.type == "cuda" and torch.cuda.is_available())
                     or (wanted.type == "mps" and torch.backends.mps.is_available()))
        if available:
            return wanted
        if verbose:
            print(f"[mtkit] {prefer!r} was asked for but is not available here; using the CPU instead.")
        return torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda")
        if verbose:
            print(f"[mtkit] Using GPU: {torch.cuda.get_device_name(0)}")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
        if verbose:
            print("[mtkit] Using Apple MPS.")
    else:
        device = torch.device("cpu")
        if verbose:
            print(f"[mtkit] No GPU found: using the CPU ({torch.get_num_threads()} threads). "
                  "Everything works, just more slowly; the notebooks' defaults are sized for this.")
    return device


def seed_everything(seed: int = 0, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run repeats; returns a torch Generator seeded alike.

    ``deterministic=True`` also asks torch for deterministic kernels (slower on GPU).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.Generator().manual_seed(seed)


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on a CUDA device when ``enabled`` (mixed precision), else nothing."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict, device: torch.device) -> dict:
    """A batch with its tensors on ``device`` (non-blocking copies; other values as they are)."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
