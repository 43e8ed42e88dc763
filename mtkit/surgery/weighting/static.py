"""Static loss weights: fixed numbers, the trivial loss weighting (the kit's ``TaskWeights`` semantics).

``static``: weight ``weights[task]`` for the tasks named, ``default`` for the others, so the step's gradient
is sum_i w_i g_i. ``main_aux``: 1 for the main task and ``aux_weight`` (lambda) for every auxiliary task
(MTRec, Bi et al. 2022; report C's g_main + lambda (g_para + g_sts) without surgery). Weights are finite
and >= 0. No state.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from mtkit.surgery.registry import MethodError, check_number
from mtkit.surgery.weighting.base import LossWeighting

__all__ = ["Static", "MainAuxWeights"]


class Static(LossWeighting):
    """``weights``: {task: weight} for some tasks; ``default``: the weight of every other task."""

    name = "static"
    summary = "fixed weights per task (default 1: the summed loss)"
    paper = "-"

    def __init__(self, tasks, weights: Mapping[str, float] | None = None, default: float = 1.0) -> None:
        super().__init__(tasks)
        weights = dict(weights or {})
        unknown = [t for t in weights if t not in self.tasks]
        if unknown:
            raise MethodError(f"{self.name}: option weights names unknown tasks {unknown}; the tasks are {self.tasks}.")
        self.default = check_number(self.name, "default", default, 0.0)
        self.weights = {t: check_number(self.name, f"weights[{t!r}]", w, 0.0) for t, w in weights.items()}
        self.vector = torch.tensor([self.weights.get(t, self.default) for t in self.tasks], dtype=torch.float64)

    def _weights(self, values, index, step, generator):
        return self.vector.to(values.device)[index]  # (k,)


class MainAuxWeights(Static):
    """1 for ``main_task``, ``aux_weight`` for the others."""

    name = "main_aux"
    summary = "1 for the main task, aux_weight for every auxiliary task"
    paper = "Bi et al. 2022 (MTRec)"

    def __init__(self, tasks, main_task: str, aux_weight: float = 0.3) -> None:
        tasks = list(tasks)
        if main_task not in tasks:
            raise MethodError(f"{self.name}: option main_task must be one of the tasks {tasks}; got {main_task!r}.")
        if len(tasks) < 2:
            raise MethodError(f"{self.name}: needs at least one auxiliary task besides {main_task!r}.")
        super().__init__(tasks, {main_task: 1.0}, default=check_number(self.name, "aux_weight", aux_weight, 0.0))
        self.main_task = main_task
        self.aux_weight = self.default
