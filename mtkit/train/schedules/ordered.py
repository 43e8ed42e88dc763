"""Schedules that fix the order: sequential (one task after the other), round-robin, and equal (each task the
same number of batches)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from mtkit.train.schedules.base import Plan, TaskSchedule, _check_sizes, _check_steps, _require_batches, _resolve_order

__all__ = ['SequentialSchedule', 'RoundRobinSchedule', 'EqualSchedule']


class SequentialSchedule(TaskSchedule):
    """All of the first task's batches, then all of the second's, ... (report A: SST, then Quora, then STS).

    ``order``: the task order inside each epoch (default: the order of ``sizes``); report D compares
    sentiment/paraphrase/similarity with paraphrase/similarity/sentiment. One task per step; each task's
    batches are used exactly once per epoch. The last task of an epoch weighs most on the weights at its end.
    """
    name = "sequential"

    def __init__(self, order: Sequence[str] | None = None):
        self.order = None if order is None else list(order)

    def epoch_plan(self, epoch: int, sizes: Mapping[str, int], rng=None) -> Plan:
        sizes = _check_sizes(sizes, "SequentialSchedule")
        return [[t] for t in _resolve_order(self.order, sizes, "SequentialSchedule") for _ in range(sizes[t])]

    def num_steps(self, epoch: int, sizes: Mapping[str, int]) -> int:
        return sum(_check_sizes(sizes, "SequentialSchedule").values())


class RoundRobinSchedule(TaskSchedule):
    """One batch of each task in turn: A, B, C, A, B, C, ... (report B). One task per step.

    When a smaller task runs out, ``until`` decides:

    - ``"all"`` (default): it drops out of the rotation, the others go on; every batch is used exactly once
      per epoch, as with the sequential schedule (``A B C A B C B C C C``).
    - ``"longest"``: the rotation continues until the largest task is used up; smaller tasks are re-sampled
      (``K * max(n)`` steps).
    - ``"shortest"``: the epoch stops when the smallest task is used up (``K * min(n)`` steps), as
      sentence-transformers' ROUND_ROBIN sampler; the larger tasks' other batches wait for later epochs.
    """
    name = "round-robin"
    UNTIL = ("all", "longest", "shortest")

    def __init__(self, until: str = "all", order: Sequence[str] | None = None):
        if until not in self.UNTIL:
            raise ValueError(f"RoundRobinSchedule: until {until!r} is not known; use one of {list(self.UNTIL)}.")
        self.until = until
        self.order = None if order is None else list(order)

    def _counts(self, sizes: dict[str, int]) -> dict[str, int]:
        if self.until == "all":
            return dict(sizes)
        _require_batches(sizes, "RoundRobinSchedule", f"until={self.until!r} needs a batch of every task per round")
        rounds = max(sizes.values()) if self.until == "longest" else min(sizes.values())
        return {t: rounds for t in sizes}

    def epoch_plan(self, epoch: int, sizes: Mapping[str, int], rng=None) -> Plan:
        sizes = _check_sizes(sizes, "RoundRobinSchedule")
        order = _resolve_order(self.order, sizes, "RoundRobinSchedule")
        left = self._counts(sizes)
        plan = []
        while any(left[t] for t in order):
            for t in order:
                if left[t]:
                    plan.append([t])
                    left[t] -= 1
        return plan

    def num_steps(self, epoch: int, sizes: Mapping[str, int]) -> int:
        return sum(self._counts(_check_sizes(sizes, "RoundRobinSchedule")).values())


class EqualSchedule(TaskSchedule):
    """Every step takes one batch of every task and sums their losses (report D: equal samples per task).

    ``steps`` per epoch: ``"longest"`` (default, the largest task's batches: smaller tasks are re-sampled),
    ``"shortest"``, or a number. Each inner list is the run's tasks in ``order``.
    """
    name = "equal"

    def __init__(self, steps: int | str = "longest", order: Sequence[str] | None = None):
        self.steps = _check_steps(steps, "EqualSchedule", ("longest", "shortest"))
        if self.steps is None:
            self.steps = "longest"
        self.order = None if order is None else list(order)

    def epoch_plan(self, epoch: int, sizes: Mapping[str, int], rng=None) -> Plan:
        sizes = _check_sizes(sizes, "EqualSchedule")
        order = _resolve_order(self.order, sizes, "EqualSchedule")
        return [list(order) for _ in range(self.num_steps(epoch, sizes))]

    def num_steps(self, epoch: int, sizes: Mapping[str, int]) -> int:
        sizes = _check_sizes(sizes, "EqualSchedule")
        _require_batches(sizes, "EqualSchedule", "every step takes a batch of every task")
        if self.steps == "longest":
            return max(sizes.values())
        if self.steps == "shortest":
            return min(sizes.values())
        return self.steps
