"""A schedule that follows the dev scores: the tasks furthest behind get more batches."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from mtkit.train.schedules.base import (
    Plan,
    TaskSchedule,
    _check_sizes,
    _check_steps,
    _largest_remainder,
    _require_batches,
    _shuffled_multiset,
)

__all__ = ['DynamicSchedule']


class DynamicSchedule(TaskSchedule):
    """More batches to the task furthest below its target dev metric (report B's dynamic batch allocation).

    ``targets``: the dev metric each task aims for, e.g. ``{"sst": 0.52, "para": 0.88, "sts": 0.85}``. After
    ``update(metrics)``, the gap of task i is ``g_i = max(target_i - metric_i, 0)`` (0 for a task without a
    target or without a metric yet) and its share of the epoch's steps is::

        share_i = min_share + (1 - K * min_share) * g_i / sum_j g_j

    so every task keeps at least ``min_share`` and the rest goes to the tasks in proportion to how far they are
    below target. Before the first update, or when every task has reached its target, the shares are
    proportional to the sizes. Counts are rounded by largest remainder to ``steps`` (default: sum of sizes)
    and shuffled with ``rng``; one task per step, so small tasks may be re-sampled.
    """
    name = "dynamic"

    def __init__(self, targets: Mapping[str, float], min_share: float = 0.1, steps: int | None = None):
        if not isinstance(targets, Mapping) or not targets:
            raise ValueError(f"DynamicSchedule: targets must map task names to target dev metrics, e.g. "
                             f"{{'sst': 0.52, 'para': 0.88, 'sts': 0.85}}; got {targets!r}.")
        self.targets = {str(t): self._number(v, f"targets[{t!r}]") for t, v in targets.items()}
        self.min_share = self._number(min_share, "min_share")
        if not 0.0 <= self.min_share < 1.0:
            raise ValueError(f"DynamicSchedule: min_share must lie in [0, 1), got {min_share!r}.")
        self.steps = _check_steps(steps, "DynamicSchedule")
        self.metrics: dict[str, float] = {}

    @staticmethod
    def _number(value, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not math.isfinite(value):
            raise ValueError(f"DynamicSchedule: {name} must be a finite number, got {value!r}.")
        return float(value)

    def update(self, metrics: Mapping[str, float]) -> None:
        """Remember each task's latest dev metric (tasks left out keep their previous value)."""
        for task, value in metrics.items():
            self.metrics[str(task)] = self._number(value, f"metrics[{task!r}]")

    def gaps(self, tasks: Sequence[str]) -> dict[str, float]:
        """How far each task is below its target (0 when at or above it, or unknown)."""
        return {t: max(self.targets[t] - self.metrics[t], 0.0) if t in self.targets and t in self.metrics else 0.0
                for t in tasks}

    def shares(self, sizes: Mapping[str, int]) -> dict[str, float]:
        """The fraction of the epoch's steps each task gets now."""
        sizes = _check_sizes(sizes, "DynamicSchedule")
        unknown = [t for t in self.targets if t not in sizes]
        if unknown:
            raise ValueError(f"DynamicSchedule: targets name {unknown}, which are not tasks of this run "
                             f"{list(sizes)}.")
        _require_batches(sizes, "DynamicSchedule", "the dynamic schedule may give any task more batches")
        K = len(sizes)
        if K * self.min_share > 1.0:
            raise ValueError(f"DynamicSchedule: min_share {self.min_share} x {K} tasks exceeds 1; use at most "
                             f"{1.0 / K:.3g}.")
        gaps = self.gaps(list(sizes))
        total_gap = sum(gaps.values())
        if total_gap == 0.0:
            n = sum(sizes.values())
            return {t: sizes[t] / n for t in sizes}
        return {t: self.min_share + (1.0 - K * self.min_share) * gaps[t] / total_gap for t in sizes}

    def batch_counts(self, sizes: Mapping[str, int]) -> dict[str, int]:
        """Whole numbers of batches per task this epoch (summing to :meth:`num_steps`)."""
        return _largest_remainder(self.shares(sizes), self.num_steps(0, sizes))

    def epoch_plan(self, epoch: int, sizes: Mapping[str, int], rng=None) -> Plan:
        if rng is None:
            raise ValueError("DynamicSchedule: pass rng (e.g. numpy.random.default_rng([seed, epoch])).")
        return _shuffled_multiset(self.batch_counts(sizes), rng)

    def num_steps(self, epoch: int, sizes: Mapping[str, int]) -> int:
        sizes = _check_sizes(sizes, "DynamicSchedule")
        return self.steps if self.steps is not None else sum(sizes.values())

    def state_dict(self) -> dict:
        return {"metrics": dict(self.metrics)}

    def load_state_dict(self, state: Mapping) -> None:
        unknown = [k for k in state if k != "metrics"]
        if unknown:
            raise ValueError(f"DynamicSchedule: unknown state keys {unknown}; expected only 'metrics'.")
        self.metrics = {}
        self.update(state.get("metrics", {}))
