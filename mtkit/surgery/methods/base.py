"""The contract of a gradient-combination method: what the step measured -> combination coefficients.

After TorchJD's split between an aggregator (a Jacobian -> one update) and a weighting (the Gram matrix ->
weights): every method here only *weighs*. The driver owns the big (K, P) task gradients ``rows`` and
computes their Gram matrices once; a method maps them to coefficients, and the driver writes
``update = coefficients @ rows`` (per layer block for block-wise methods). So a method never touches a
P-sized vector::

    method = GRAM_METHODS.make("pcgrad", tasks)
    weights = method(gram, present, generator)     # gram (K, K) float64, present (K,) bool
    update = weights.coefficients @ rows            # (P,)

A method receives, restricted to the tasks present this step (the others get coefficient 0 and never
reach the method), a ``Step``: the k x k Gram, the (B, k, k) per-block Grams when it asks for them, the
task losses, the generator for random choices and the positions of the present tasks among all K (so
that a stateful method indexes its own state). Its state (targets, warm starts, counters) lives in the
object and round-trips through ``state_dict`` / ``load_state_dict`` as tensors and plain values.

Inputs that are not finite are refused with ``NonFiniteError`` (the driver skips such steps before calling
a method); a method that produces non-finite coefficients raises instead of returning them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from mtkit.surgery.registry import check_tasks

__all__ = ["GramWeighting", "Step", "Weights", "NonFiniteError", "small_dtype"]


class NonFiniteError(ValueError):
    """A Gram matrix, block Gram or loss with inf/NaN reached a method (the driver should skip the step)."""


def small_dtype(device: torch.device) -> torch.dtype:
    """The K x K side is tiny: float64 wherever the device has it."""
    return torch.float32 if device.type == "mps" else torch.float64


@dataclass
class Weights:
    """What a method returns.

    ``coefficients``: (K,) with update = coefficients @ rows, or (B, K) for a block-wise method (update of
    block b = coefficients[b] @ rows_b). ``per_task``: optional (K, K) (or (B, K, K)); row i is task i's
    adjusted gradient as a combination of the original ones (for telemetry of what was removed from each
    task); None where the method defines none. ``extra``: a few plain numbers for the log.
    """

    coefficients: torch.Tensor
    per_task: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Step:
    """What a method sees: everything restricted to the k tasks present this step."""

    gram: torch.Tensor  # (k, k) float64
    index: torch.Tensor  # (k,) long: positions of the present tasks among all K
    num_tasks: int  # K
    generator: torch.Generator | None = None
    block_grams: torch.Tensor | None = None  # (B, k, k) float64, when the method asks for them
    losses: torch.Tensor | None = None  # (k,) float64, when given


class GramWeighting:
    """Base class: subclasses set ``name``, ``summary``, ``paper`` and implement ``weigh(step) -> Weights``.

    ``__init__(self, tasks, **options)``: every method is built with the run's task names, then its options
    (the registry reads them from the signature). Class flags: ``needs_block_grams`` (the method reads
    ``step.block_grams`` and may return (B, k) coefficients), ``needs_losses``, ``stochastic`` (it draws
    from ``step.generator``).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    needs_block_grams: ClassVar[bool] = False
    needs_losses: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False

    def __init__(self, tasks) -> None:
        self.tasks = check_tasks(self.name, tasks)

    def weigh(self, step: Step) -> Weights:  # pragma: no cover - the contract
        raise NotImplementedError

    # ---- state: tensors and plain values only -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{self.name}: this method keeps no state; got keys {sorted(state)}.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tasks={self.tasks})"

    # ---- the call: validate, restrict to the present tasks, weigh, expand back ----------------------------------
    @torch.no_grad()
    def __call__(self, gram: torch.Tensor, present: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, *, block_grams: torch.Tensor | None = None,
                 losses: torch.Tensor | None = None) -> Weights:
        K = len(self.tasks)
        if not isinstance(gram, torch.Tensor) or gram.shape != (K, K):
            got = tuple(gram.shape) if isinstance(gram, torch.Tensor) else type(gram).__name__
            raise ValueError(f"{self.name}: gram must be a ({K}, {K}) tensor, one row per task {self.tasks}; "
                             f"got {got}.")
        dtype = small_dtype(gram.device)
        present = (torch.ones(K, dtype=torch.bool, device=gram.device) if present is None
                   else torch.as_tensor(present, dtype=torch.bool, device=gram.device))
        if present.shape != (K,):
            raise ValueError(f"{self.name}: present must be a ({K},) bool mask; got shape {tuple(present.shape)}.")
        index = present.nonzero().flatten()  # (k,)
        G = gram.to(dtype)[index][:, index]  # (k, k)
        self._refuse_nonfinite("gram", G)
        B = None
        if block_grams is not None:
            if block_grams.dim() != 3 or block_grams.shape[1:] != (K, K):
                raise ValueError(f"{self.name}: block_grams must be (B, {K}, {K}); got {tuple(block_grams.shape)}.")
            B = block_grams.to(dtype)[:, index][:, :, index]  # (B, k, k)
            self._refuse_nonfinite("block_grams", B)
        elif self.needs_block_grams:
            raise ValueError(f"{self.name} works per layer block: pass block_grams (B, {K}, {K}).")
        L = None
        if losses is not None:
            L = torch.as_tensor(losses, dtype=dtype, device=gram.device).reshape(K)[index]  # (k,)
            self._refuse_nonfinite("losses", L)
        elif self.needs_losses:
            raise ValueError(f"{self.name} needs the task losses: pass losses ({K},).")
        if index.numel() == 0:
            return Weights(torch.zeros(K, dtype=dtype, device=gram.device))
        out = self.weigh(Step(G, index, K, generator, B, L))
        return self._expand(out, index, K)

    def _refuse_nonfinite(self, what: str, value: torch.Tensor) -> None:
        if not bool(torch.isfinite(value).all()):
            raise NonFiniteError(f"{self.name}: {what} has inf or NaN entries; skip this step instead of "
                                 "combining (the driver checks every task's gradient before calling a method).")

    def _expand(self, out: Weights, index: torch.Tensor, K: int) -> Weights:
        c = out.coefficients
        if not bool(torch.isfinite(c).all()):
            raise FloatingPointError(f"{self.name} produced non-finite coefficients {c.tolist()} from finite "
                                     "inputs; this is a bug in the method, please report it with the Gram matrix.")
        full = c.new_zeros(c.shape[:-1] + (K,))  # (K,) or (B, K)
        full[..., index] = c
        per_task = out.per_task
        if per_task is not None:
            expanded = per_task.new_zeros(per_task.shape[:-2] + (K, K))  # (K, K) or (B, K, K)
            expanded[..., index[:, None], index[None, :]] = per_task
            per_task = expanded
        return Weights(full, per_task, out.extra)
