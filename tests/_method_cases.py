"""Shared cases for tests/test_methods_*.py: random Jacobians, relative errors, and LibMTL's weightings
loaded without its package ``__init__``.

LibMTL 1.1.5 (the newest release on PyPI) imports ``torchvision.models.utils`` when the package is imported
(for its ResNet backbones); current torchvision has no such module, and torchvision's wheels require a newer
torch than the kit's, so installing it would replace torch. The weighting strategies themselves need only
torch, numpy and scipy, so we install LibMTL with ``--no-deps`` (see the Makefile) and load
``LibMTL.weighting.<Name>`` from its files directly.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types

import pytest
import torch

KS = (2, 3, 5)
SIZES = (10, 1000, 10000)
KINDS = ("conflicting", "aligned")


def jacobian(K: int, P: int, kind: str, seed: int) -> torch.Tensor:
    """(K, P) float64 task gradients of unequal norms; "aligned" adds a shared direction so that no pair
    conflicts, "conflicting" leaves independent directions (about half the pairs conflict) and makes task 0
    oppose task 1."""
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(K, P, generator=g, dtype=torch.float64)
    if kind == "aligned":
        J = J + 3.0 * torch.randn(1, P, generator=g, dtype=torch.float64)
    elif K >= 2:
        J[1] = J[1] - 0.8 * J[0]
    return J * (0.2 + 3.0 * torch.rand(K, 1, generator=g, dtype=torch.float64))


def cases():
    """(K, P, kind, seed) for every combination."""
    return [(K, P, kind, 100 * K + P + (7 if kind == "aligned" else 0))
            for K in KS for P in SIZES for kind in KINDS]


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.to(torch.float64), expected.to(torch.float64)
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-300))


def libmtl_weighting(name: str):
    """The class ``LibMTL.weighting.<name>.<name>``, or a skip saying why it cannot be loaded."""
    if "LibMTL" not in sys.modules:
        spec = importlib.util.find_spec("LibMTL")  # finds the package without running its __init__
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("LibMTL is not installed (pip install --no-deps 'LibMTL>=1.1.5'; see the Makefile)")
    root = list(sys.modules["LibMTL"].__path__)[0] if "LibMTL" in sys.modules else \
        list(spec.submodule_search_locations)[0]
    for package, path in (("LibMTL", root), ("LibMTL.weighting", f"{root}/weighting")):
        if package not in sys.modules or not hasattr(sys.modules[package], "__path__"):
            module = types.ModuleType(package)
            module.__path__ = [path]
            sys.modules[package] = module
    return getattr(importlib.import_module(f"LibMTL.weighting.{name}"), name)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """LibMTL makes its helper tensors (``torch.zeros(n)``, its parameters) in the default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def run_libmtl(name: str, J: torch.Tensor, losses: torch.Tensor | None = None, **kwargs):
    """Run LibMTL's weighting ``name`` on the Jacobian J (K, P) as its trainer would; returns (update, result).

    The trainer's gradient plumbing is replaced by J itself: ``_compute_grad`` returns it, and ``_reset_grad``
    (where LibMTL writes the combined gradient into the shared parameters) captures the update.
    """
    cls = libmtl_weighting(name)
    K = J.shape[0]
    with default_dtype(J.dtype):
        return _run_libmtl(cls, J, K, losses, kwargs)


def _run_libmtl(cls, J, K, losses, kwargs):
    weighting = cls()
    weighting.task_num, weighting.device, weighting.rep_grad = K, torch.device("cpu"), False
    weighting.init_param()
    captured = {}
    weighting._compute_grad_dim = lambda: None
    weighting._compute_grad = lambda losses, mode, rep_grad=False: J.clone()
    weighting._get_grads = lambda losses, mode="backward": J.clone()
    weighting._reset_grad = lambda new_grads: captured.setdefault("update", new_grads.detach().clone())
    losses = torch.ones(K, dtype=J.dtype) if losses is None else losses
    result = weighting.backward(losses, **kwargs)
    return captured.get("update"), result, weighting


# ---- building any registered method -------------------------------------------------------------------------
def example_options(name: str, tasks: list[str]) -> dict:
    """Options a method cannot do without (a new method with a required option adds its example here)."""
    return {"main_aux": {"main_task": tasks[0]}}.get(name, {})


def make_method(registry, name: str, tasks: list[str], **options):
    return registry.make(name, tasks, **{**example_options(name, tasks), **options})
