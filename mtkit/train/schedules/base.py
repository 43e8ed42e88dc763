"""What every task schedule shares: the contract (``TaskSchedule``: task sizes in, a plan of optimizer steps
out) and the helpers that check sizes and draw plans."""
from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ['Plan', 'as_numpy_rng', 'count_batches', 'TaskSchedule']

Plan = list  # list[list[str]]: the tasks of each optimizer step


# ------------------------------------------------------------------------------------------------ helpers
def as_numpy_rng(rng) -> np.random.Generator:
    """A numpy Generator from a numpy Generator (used as is), a torch.Generator (one draw seeds it) or an int."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=rng))
        return np.random.default_rng(seed)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator, a torch.Generator or an int seed, got {rng!r}; seed "
                    f"it from (seed, epoch), e.g. numpy.random.default_rng([seed, epoch]), so plans are reproducible.")


def _check_sizes(sizes: Mapping[str, int], who: str) -> dict[str, int]:
    if not isinstance(sizes, Mapping) or not sizes:
        raise ValueError(f"{who}: sizes must be a non-empty mapping task -> batches per epoch, got {sizes!r}.")
    out = {}
    for task, n in sizes.items():
        if not isinstance(task, str):
            raise ValueError(f"{who}: task names must be strings, got {task!r}.")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{who}: sizes[{task!r}] must be a whole number of batches >= 0, got {n!r}.")
        out[task] = int(n)
    if sum(out.values()) == 0:
        raise ValueError(f"{who}: every task has 0 batches ({out}); there is nothing to train on.")
    return out


def _require_batches(sizes: dict[str, int], who: str, why: str) -> None:
    empty = [t for t, n in sizes.items() if n == 0]
    if empty:
        raise ValueError(f"{who}: task(s) {empty} have 0 training batches, but {why}. Give them data or leave them "
                         f"out of the run's tasks.")


def _resolve_order(order, sizes: dict[str, int], who: str) -> list[str]:
    if order is None:
        return list(sizes)
    order = list(order)
    missing = [t for t in sizes if t not in order]
    unknown = [t for t in order if t not in sizes]
    repeated = sorted({t for t in order if order.count(t) > 1})
    if missing or unknown or repeated:
        parts = []
        if missing:
            parts.append(f"it leaves out {missing}")
        if unknown:
            parts.append(f"it names {unknown}, which are not tasks of this run")
        if repeated:
            parts.append(f"it repeats {repeated}")
        raise ValueError(f"{who}: order {order} must list each task of the run {list(sizes)} exactly once; "
                         f"{'; '.join(parts)}.")
    return order


def _check_steps(steps, who: str, words: Sequence[str] = ()):
    if steps is None or steps in words:
        return steps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        allowed = " or ".join([repr(w) for w in words] + ["a whole number >= 1", "None"])
        raise ValueError(f"{who}: steps must be {allowed}, got {steps!r}.")
    return int(steps)


def count_batches(plan: Plan) -> dict[str, int]:
    """How many batches of each task a plan uses: ``{"sst": 10, "para": 10, ...}``."""
    counts = Counter(task for step in plan for task in step)
    return dict(counts)


def _shuffled_multiset(counts: dict[str, int], rng) -> Plan:
    """Each task ``counts[t]`` times, in a random order, one task per step."""
    tasks = [t for t, n in counts.items() for _ in range(n)]
    order = as_numpy_rng(rng).permutation(len(tasks))
    return [[tasks[i]] for i in order]


def _sample_steps(probs: dict[str, float], steps: int, rng) -> Plan:
    """``steps`` independent draws of one task each, with probabilities ``probs`` (with replacement)."""
    tasks = list(probs)
    p = np.array([probs[t] for t in tasks], dtype=np.float64)
    draws = as_numpy_rng(rng).choice(len(tasks), size=steps, p=p / p.sum())
    return [[tasks[i]] for i in draws]


def _largest_remainder(shares: dict[str, float], total: int) -> dict[str, int]:
    """Whole counts summing to ``total`` whose ratios are closest to ``shares`` (ties go to the earlier task)."""
    s = sum(shares.values())
    exact = {t: total * v / s for t, v in shares.items()}
    counts = {t: math.floor(x) for t, x in exact.items()}
    left = total - sum(counts.values())
    by_remainder = sorted(shares, key=lambda t: -(exact[t] - counts[t]))  # stable: earlier task first on ties
    for t in by_remainder[:left]:
        counts[t] += 1
    return counts


# ------------------------------------------------------------------------------------------------ base
class TaskSchedule:
    """Base class: decides the tasks of each optimizer step of an epoch (see the module docstring).

    Subclasses implement :meth:`epoch_plan` and :meth:`num_steps`; dynamic ones also :meth:`update`,
    :meth:`state_dict` and :meth:`load_state_dict`.
    """
    name = "base"

    def epoch_plan(self, epoch: int, sizes: Mapping[str, int], rng=None) -> Plan:
        """The tasks of each optimizer step of epoch ``epoch`` (from 0): ``[["sst"], ["para"], ...]``."""
        raise NotImplementedError

    def num_steps(self, epoch: int, sizes: Mapping[str, int]) -> int:
        """The number of optimizer steps in the plan of ``epoch`` (needs no rng)."""
        raise NotImplementedError

    def update(self, metrics: Mapping[str, float]) -> None:
        """Dev metrics per task after an evaluation; only dynamic schedules use them."""

    def state_dict(self) -> dict:
        """What ``update`` has learned, JSON-ready (for checkpoints)."""
        return {}

    def load_state_dict(self, state: Mapping) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, but got {dict(state)!r}.")

    def __repr__(self) -> str:
        params = inspect.signature(type(self).__init__).parameters
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in params if k != "self" and hasattr(self, k))
        return f"{type(self).__name__}({args})"
