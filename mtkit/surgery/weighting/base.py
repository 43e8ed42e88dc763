"""The contract of a loss weighting: the task losses of a step -> the weighted total to backward.

A loss weighting changes only how much each task's loss counts, so the trainer keeps its single backward
of the weighted total (``needs_gradients = False``); a weighting that must see the per-task gradients
(GradNorm reads their norms off the Gram matrix's diagonal) says so with ``needs_gradients = True``::

    weighting = LOSS_WEIGHTINGS.make("dwa", tasks)
    out = weighting.weigh(losses, step, present, generator)   # losses (K,), present (K,) bool
    out.total.backward()                                        # out.weights (K,): the effective weights
    ...
    weighting.after_step(new_losses)        # FAMO: learn from the loss change
    weighting.on_epoch_end(epoch_mean_losses)  # DWA: the epoch-level loss history

``out.weights`` are the effective per-task weights (detached): the gradient of ``out.total`` is
sum_i weights_i * grad L_i, which is what a per-task-gradient driver writes as coefficients. Learnable
weights (uncertainty weighting's log-variances) are ``parameters()``, added to the optimizer through
``param_groups()`` without weight decay. State round-trips through ``state_dict`` / ``load_state_dict``
(tensors and plain values; parameters are saved there too).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from mtkit.surgery.registry import check_tasks

__all__ = ["LossWeighting", "WeightedLoss", "stack_losses"]


@dataclass
class WeightedLoss:
    total: torch.Tensor  # () the scalar to backward
    weights: torch.Tensor  # (K,) float64, detached: d total / d L_i (0 for absent tasks)


def stack_losses(losses: Mapping[str, torch.Tensor], tasks: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """{task: loss} of one step -> (losses (K,), present (K,) bool) in the order of ``tasks`` (0 where absent)."""
    unknown = [t for t in losses if t not in tasks]
    if unknown:
        raise KeyError(f"losses for unknown tasks {unknown}; the run's tasks are {list(tasks)}.")
    some = next(iter(losses.values()), None)
    zero = torch.zeros((), dtype=some.dtype if some is not None else torch.float32,
                       device=some.device if some is not None else None)
    stacked = torch.stack([losses[t].reshape(()) if t in losses else zero for t in tasks])  # (K,)
    return stacked, torch.tensor([t in losses for t in tasks], device=stacked.device)


class LossWeighting:
    """Base class: subclasses set ``name``, ``summary``, ``paper`` and implement ``_weights``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    needs_gradients: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False

    def __init__(self, tasks) -> None:
        self.tasks = check_tasks(self.name, tasks)

    # ---- what a subclass writes ---------------------------------------------------------------------------------
    def _weights(self, values: torch.Tensor, index: torch.Tensor, step: int,
                 generator: torch.Generator | None) -> torch.Tensor:  # pragma: no cover - the contract
        """(k,) weights for the k present tasks, from their detached float64 loss ``values``."""
        raise NotImplementedError

    def _total(self, losses: torch.Tensor, weights: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The scalar to backward from the present losses (k,), with autograd; default sum_i w_i L_i."""
        return (weights.to(losses.dtype) * losses).sum()

    # ---- hooks (no-ops unless a method needs them) --------------------------------------------------------------
    def on_epoch_end(self, mean_losses: torch.Tensor) -> None:
        """Called with each task's mean training loss over the epoch (K,); NaN for a task that had no batch."""

    def after_step(self, new_losses: torch.Tensor, present: torch.Tensor | None = None) -> None:
        """Called after ``optimizer.step()`` with the losses of the same step's batches under the new weights."""

    def after_gradients(self, gram: torch.Tensor, losses: torch.Tensor, present: torch.Tensor | None = None) -> None:
        """Called (only when ``needs_gradients``) with the step's (K, K) Gram of the task gradients, before
        the optimizer step."""

    def parameters(self) -> list[torch.nn.Parameter]:
        return []

    def param_groups(self) -> list[dict]:
        """Optimizer groups for ``parameters()``: no weight decay (an ``lr`` key where the method sets one)."""
        params = self.parameters()
        if not params:
            return []
        group = {"params": params, "weight_decay": 0.0, "name": f"loss_weighting.{self.name}"}
        if getattr(self, "lr", None) is not None:
            group["lr"] = self.lr
        return [group]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{self.name}: this weighting keeps no state; got keys {sorted(state)}.")

    def to(self, device) -> LossWeighting:
        """Move tensors and parameters held by the weighting to ``device`` (parameters keep their identity)."""
        for key, value in vars(self).items():
            if isinstance(value, torch.nn.Parameter):
                value.data = value.data.to(device)
            elif isinstance(value, torch.Tensor):
                setattr(self, key, value.to(device))
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tasks={self.tasks})"

    # ---- the call -----------------------------------------------------------------------------------------------
    def weigh(self, losses: torch.Tensor, step: int = 0, present: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> WeightedLoss:
        """The weighted total and the effective weights for one step's losses (K,) (absent tasks ignored)."""
        losses, index = self._check(losses, present)
        values = losses[index].detach().to(torch.float64)  # (k,)
        w = self._weights(values, index, int(step), generator)  # (k,)
        if not bool(torch.isfinite(w).all()):
            raise FloatingPointError(f"{self.name} produced non-finite weights {w.tolist()} from finite losses.")
        full = torch.zeros(len(self.tasks), dtype=torch.float64, device=losses.device)
        full[index] = w.to(full.device, torch.float64)
        return WeightedLoss(self._total(losses[index], w.to(losses.device), index), full)

    def _check(self, losses, present) -> tuple[torch.Tensor, torch.Tensor]:
        K = len(self.tasks)
        if not isinstance(losses, torch.Tensor) or losses.shape != (K,):
            got = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
            raise ValueError(f"{self.name}: losses must be a ({K},) tensor in the order {self.tasks} "
                             f"(stack_losses builds it from a dict); got {got}.")
        present = (torch.ones(K, dtype=torch.bool) if present is None
                   else torch.as_tensor(present, dtype=torch.bool)).to(losses.device)
        index = present.nonzero().flatten()
        if not bool(torch.isfinite(losses.detach()[index]).all()):
            raise ValueError(f"{self.name}: a task loss is inf or NaN ({losses.detach()[index].tolist()}); skip "
                             "this step instead of weighting it.")
        if index.numel() == 0:
            raise ValueError(f"{self.name}: no task has a loss this step.")
        return losses, index
