"""Schedules that sample tasks by size: proportional, temperature (Arivazhagan et al. 2019), and square root."""
from __future__ import annotations

import math
from collections.abc import Mapping

from mtkit.train.schedules.base import Plan, TaskSchedule, _check_sizes, _check_steps, _sample_steps, _shuffled_multiset

__all__ = ['ProportionalSchedule', 'TemperatureSchedule', 'SqrtSchedule']


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
