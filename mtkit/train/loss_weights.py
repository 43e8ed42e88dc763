"""How much each task's loss counts: fixed weights per task, and main + auxiliary weighting (MTRec, Bi et
al. 2022)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ['TaskWeights', 'main_aux']


# ------------------------------------------------------------------------------------------------ loss weights
class TaskWeights:
    """The weight of each task's loss in a summed step: ``weights(task)`` or ``weights[task]``.

    ``TaskWeights({"sst": 1.0}, default=0.3)`` gives 1 to sst and 0.3 to any other task. The trainer computes
    ``sum(weights(t) * loss_t for t in step_tasks)``, so the step's gradient is ``sum_t weights(t) * g_t``.
    """

    def __init__(self, weights: Mapping[str, float] | None = None, default: float = 1.0):
        self.weights = {}
        for task, w in (weights or {}).items():
            self.weights[str(task)] = self._weight(w, f"weight of {task!r}")
        self.default = self._weight(default, "default weight")

    @staticmethod
    def _weight(value, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not math.isfinite(value) \
                or value < 0:
            raise ValueError(f"TaskWeights: the {name} must be a finite number >= 0, got {value!r}.")
        return float(value)

    def __call__(self, task: str) -> float:
        return self.weights.get(task, self.default)

    __getitem__ = __call__

    def as_dict(self, tasks: Sequence[str]) -> dict[str, float]:
        """The weight of each of ``tasks``."""
        return {t: self(t) for t in tasks}

    def weighted_sum(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``sum_t weight(t) * losses[t]``."""
        if not losses:
            raise ValueError("TaskWeights.weighted_sum: no losses to sum.")
        return sum(self(t) * loss for t, loss in losses.items())

    def __repr__(self) -> str:
        return f"TaskWeights({self.weights!r}, default={self.default!r})"


def main_aux(main: str, aux_weight: float = 0.3, tasks: Sequence[str] | None = None) -> TaskWeights:
    """Weight 1 for the main task and ``aux_weight`` (lambda) for every auxiliary task (MTRec, Bi et al. 2022).

    Summing the weighted losses gives the gradient ``g_main + lambda * (g_para + g_sts)``: report C's
    ``g_aux = lambda * (g_para + g_sts)`` added to the main gradient without surgery. With
    ``surgery="main_aux"`` the surgery itself applies lambda (mtkit.surgery); do not weight the losses as
    well, or the auxiliaries get lambda squared. ``tasks``: when given, ``main`` must be one of them.
    """
    if tasks is not None:
        tasks = list(tasks)
        if main not in tasks:
            raise ValueError(f"main_aux: main task {main!r} is not one of the run's tasks {tasks}.")
        if len(tasks) < 2:
            raise ValueError(f"main_aux: needs at least one auxiliary task besides {main!r}.")
    return TaskWeights({main: 1.0}, default=aux_weight)
