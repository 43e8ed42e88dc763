"""Task schedules: which task's batch goes into each optimizer step of a multitask epoch.

The contract with the trainer (mtkit/train/trainer.py)::

    schedule = make_task_schedule("temperature", temperature=2)
    plan = schedule.epoch_plan(epoch, sizes, rng)      # -> list[list[str]]
    for step_tasks in plan:                            # one optimizer step per inner list
        loss = sum(weights(t) * loss_of(next(batches[t])) for t in step_tasks)
        ...
    schedule.update(dev_metrics)                       # dynamic schedules react to dev results

- ``epoch`` counts from 0.
- ``sizes`` maps each task to its number of training batches per epoch (``len(dataloader)``); the plan lists
  the tasks of each step (an inner list has one task, or several whose losses are summed in that step).
- ``rng`` is a ``numpy.random.Generator``, a ``torch.Generator`` or an int seed; the plan is a pure function
  of (schedule state, epoch, sizes, rng state). Seed it from (seed, epoch), e.g.
  ``numpy.random.default_rng([seed, epoch])``, and a resumed run rebuilds the same plan.
- A plan may ask a task for more batches than it has (the re-sampling and sampled schedules) or fewer
  ("shortest"): the trainer keeps one endless iterator per task that reshuffles and starts again when it runs
  out ("re-sampled"), and carries the position of each iterator across epochs or restarts it, as it prefers.
- :meth:`TaskSchedule.num_steps` gives the plan's length without an rng, for learning-rate schedules.
- :meth:`TaskSchedule.state_dict` / ``load_state_dict`` hold what ``update`` learned, for checkpoints.

The schedules, and where they come from:

================  ======================================================================  =================
name              each epoch                                                              from
================  ======================================================================  =================
``sequential``    all of task A's batches, then B's, then C's (``order``)                 reports A, E
``round-robin``   one batch of each task in turn (``until``: all / shortest / longest)    report B
``proportional``  one task per step, chosen in proportion to its size                     sentence-transformers
``temperature``   one task per step with p_i ∝ n_i^(1/T), T annealed over epochs          Stickland & Murray 2019
``sqrt``          ``temperature`` with T = 2: p_i ∝ sqrt(n_i)
``equal``         every step has one batch of every task, losses summed                   report D
``dynamic``       more batches to the task furthest below its target dev metric           report B
================  ======================================================================  =================

Annealed sampling is Stickland & Murray 2019, "BERT and PALs: Projected Attention Layers for Efficient
Adaptation in Multi-Task Learning" (arXiv 1902.02671, section 4): p_i ∝ N_i^alpha with
alpha = 1 - 0.8 (e - 1) / (E - 1), i.e. ``TemperatureSchedule(temperature=1, anneal_to=5, over_epochs=E)``.
Temperature sampling over tasks also appears in Arivazhagan et al. 2019 (massively multilingual NMT).
Main + auxiliary loss weights (:func:`main_aux`) follow MTRec, Bi et al. 2022 (report C: lambda = 0.3).

Taught in notebooks/07_multitask_training.ipynb.
"""
from __future__ import annotations

import difflib
import inspect
import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["SCHEDULES", "TaskSchedule", "SequentialSchedule", "RoundRobinSchedule", "ProportionalSchedule",
           "TemperatureSchedule", "SqrtSchedule", "EqualSchedule", "DynamicSchedule", "TaskWeights", "main_aux",
           "make_task_schedule", "schedule_options", "count_batches", "as_numpy_rng"]

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


class ProportionalSchedule(TaskSchedule):
    """One task per step, chosen in proportion to its number of batches (sentence-transformers' default).

    ``replacement=False`` (default): each task's batches are used exactly once per epoch, in a random
    interleaving (a shuffle of ``[A]*n_A + [B]*n_B + ...``). ``replacement=True``: ``steps`` independent draws
    with p_i = n_i / sum(n) (default steps: sum(n)), the same as a temperature of 1.
    """
    name = "proportional"

    def __init__(self, replacement: bool = False, steps: int | None = None):
        self.replacement = bool(replacement)
        self.steps = _check_steps(steps, "ProportionalSchedule")
        if steps is not None and not self.replacement:
            raise ValueError("ProportionalSchedule: steps applies to replacement=True; without replacement an "
                             "epoch is every batch of every task once (sum of sizes).")

    def epoch_plan(self, epoch: int, sizes: Mapping[str, int], rng=None) -> Plan:
        sizes = _check_sizes(sizes, "ProportionalSchedule")
        if rng is None:
            raise ValueError("ProportionalSchedule: pass rng (e.g. numpy.random.default_rng([seed, epoch])).")
        if not self.replacement:
            return _shuffled_multiset(sizes, rng)
        return _sample_steps({t: float(n) for t, n in sizes.items()}, self.num_steps(epoch, sizes), rng)

    def num_steps(self, epoch: int, sizes: Mapping[str, int]) -> int:
        sizes = _check_sizes(sizes, "ProportionalSchedule")
        return self.steps if self.steps is not None else sum(sizes.values())


class TemperatureSchedule(TaskSchedule):
    """One task per step, drawn with p_i ∝ n_i^(1/T); T = 1 is proportional, T -> inf is uniform.

    T = 2 is square-root sampling. With ``anneal_to`` and ``over_epochs`` the exponent 1/T moves linearly from
    ``1/temperature`` at epoch 0 to ``1/anneal_to`` at epoch ``over_epochs - 1`` and stays there: Stickland &
    Murray 2019's annealed sampling is ``temperature=1, anneal_to=5, over_epochs=E`` (alpha from 1 to 0.2).
    Small tasks get more steps than their share, so their batches are re-sampled. ``steps`` per epoch:
    default sum(n).
    """
    name = "temperature"

    def __init__(self, temperature: float = 2.0, anneal_to: float | None = None, over_epochs: int | None = None,
                 steps: int | None = None):
        who = type(self).__name__
        self.temperature = self._positive(temperature, "temperature", who)
        if (anneal_to is None) != (over_epochs is None):
            raise ValueError(f"{who}: annealing needs both anneal_to (the final temperature) and over_epochs (how "
                             f"many epochs it takes); got anneal_to={anneal_to!r}, over_epochs={over_epochs!r}.")
        self.anneal_to = None if anneal_to is None else self._positive(anneal_to, "anneal_to", who)
        if over_epochs is not None and (isinstance(over_epochs, bool) or not isinstance(over_epochs, int)
                                        or over_epochs < 1):
            raise ValueError(f"{who}: over_epochs must be a whole number >= 1, got {over_epochs!r}.")
        self.over_epochs = over_epochs
        self.steps = _check_steps(steps, who)

    @staticmethod
    def _positive(value, name: str, who: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{who}: {name} must be a positive number, got {value!r}.")
        return float(value)

    def exponent_at(self, epoch: int) -> float:
        """alpha = 1/T at ``epoch`` (from 0): p_i ∝ n_i^alpha."""
        start = 1.0 / self.temperature
        if self.anneal_to is None:
            return start
        end = 1.0 / self.anneal_to
        frac = 1.0 if self.over_epochs == 1 else min(max(epoch, 0) / (self.over_epochs - 1), 1.0)
        return start + (end - start) * frac

    def temperature_at(self, epoch: int) -> float:
        """T at ``epoch`` (from 0)."""
        return 1.0 / self.exponent_at(epoch)

    def probabilities(self, epoch: int, sizes: Mapping[str, int]) -> dict[str, float]:
        """p_i = n_i^alpha / sum_j n_j^alpha at ``epoch``."""
        sizes = _check_sizes(sizes, type(self).__name__)
        alpha = self.exponent_at(epoch)
        weights = {t: (float(n) ** alpha if n > 0 else 0.0) for t, n in sizes.items()}
        total = sum(weights.values())
        return {t: w / total for t, w in weights.items()}

    def epoch_plan(self, epoch: int, sizes: Mapping[str, int], rng=None) -> Plan:
        if rng is None:
            raise ValueError(f"{type(self).__name__}: pass rng (e.g. numpy.random.default_rng([seed, epoch])).")
        return _sample_steps(self.probabilities(epoch, sizes), self.num_steps(epoch, sizes), rng)

    def num_steps(self, epoch: int, sizes: Mapping[str, int]) -> int:
        sizes = _check_sizes(sizes, type(self).__name__)
        return self.steps if self.steps is not None else sum(sizes.values())


class SqrtSchedule(TemperatureSchedule):
    """Square-root sampling, p_i ∝ sqrt(n_i): :class:`TemperatureSchedule` with temperature 2."""
    name = "sqrt"

    def __init__(self, anneal_to: float | None = None, over_epochs: int | None = None, steps: int | None = None):
        super().__init__(temperature=2.0, anneal_to=anneal_to, over_epochs=over_epochs, steps=steps)


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


# ------------------------------------------------------------------------------------------------ factory
_SCHEDULE_CLASSES = {
    "sequential": SequentialSchedule,
    "round-robin": RoundRobinSchedule,
    "proportional": ProportionalSchedule,
    "temperature": TemperatureSchedule,
    "sqrt": SqrtSchedule,
    "equal": EqualSchedule,
    "dynamic": DynamicSchedule,
}
SCHEDULES = tuple(_SCHEDULE_CLASSES)  # the names a config may use for ``schedule``


def _check_name(name: str) -> str:
    if name not in _SCHEDULE_CLASSES:
        close = difflib.get_close_matches(str(name).replace("_", "-"), SCHEDULES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"task schedule {name!r} is not known.{hint} Valid schedules: {', '.join(SCHEDULES)}.")
    return name


def schedule_options(name: str) -> dict:
    """The options of a schedule and their defaults (``inspect.Parameter.empty`` when required)."""
    params = inspect.signature(_SCHEDULE_CLASSES[_check_name(name)].__init__).parameters
    return {key: p.default for key, p in params.items() if key != "self"}


def make_task_schedule(name: str, **options) -> TaskSchedule:
    """Build a schedule by name: ``make_task_schedule("sequential", order=["sst", "para", "sts"])``.

    Names and options: ``"sequential"`` (order), ``"round-robin"`` (until, order), ``"proportional"``
    (replacement, steps), ``"temperature"`` (temperature, anneal_to, over_epochs, steps), ``"sqrt"``
    (anneal_to, over_epochs, steps), ``"equal"`` (steps, order), ``"dynamic"`` (targets, min_share, steps).
    An unknown name or option, or a missing required one, raises ValueError listing the valid ones.
    """
    cls = _SCHEDULE_CLASSES[_check_name(name)]
    allowed = schedule_options(name)
    for key in options:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"schedule {name!r} has no option {key!r}.{hint} Its options: "
                             f"{', '.join(allowed) or '(none)'}.")
    required = [k for k, d in allowed.items() if d is inspect.Parameter.empty and k not in options]
    if required:
        raise ValueError(f"schedule {name!r} needs option(s) {required}, e.g. schedule_options: "
                         f"{{targets: {{sst: 0.52, para: 0.88, sts: 0.85}}}}.")
    return cls(**options)
