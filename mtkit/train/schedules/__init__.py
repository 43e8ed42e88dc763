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

import inspect

from mtkit.train.loss_weights import TaskWeights, main_aux
from mtkit.train.schedules.base import TaskSchedule, as_numpy_rng, count_batches
from mtkit.train.schedules.dynamic import DynamicSchedule
from mtkit.train.schedules.ordered import EqualSchedule, RoundRobinSchedule, SequentialSchedule
from mtkit.train.schedules.sampled import ProportionalSchedule, SqrtSchedule, TemperatureSchedule
from mtkit.util.registry import Registry

__all__ = ["SCHEDULES", "SCHEDULE_REGISTRY", "TaskSchedule", "SequentialSchedule", "RoundRobinSchedule", "ProportionalSchedule",
           "TemperatureSchedule", "SqrtSchedule", "EqualSchedule", "DynamicSchedule", "TaskWeights", "main_aux",
           "make_task_schedule", "schedule_options", "count_batches", "as_numpy_rng"]


# ------------------------------------------------------------------------------------------------ factory
# The task schedules a config may name: a new one is one TaskSchedule class and one line here.
SCHEDULE_REGISTRY = Registry("task schedule", {
    "sequential": SequentialSchedule,
    "round-robin": RoundRobinSchedule,
    "proportional": ProportionalSchedule,
    "temperature": TemperatureSchedule,
    "sqrt": SqrtSchedule,
    "equal": EqualSchedule,
    "dynamic": DynamicSchedule,
}, plural="schedules", owner="schedule",
                             normalize=lambda name: name.replace("_", "-"))
SCHEDULES = SCHEDULE_REGISTRY.names  # the built-in schedules (read SCHEDULE_REGISTRY.names for any added later)


def schedule_options(name: str) -> dict:
    """The options of a schedule and their defaults (``inspect.Parameter.empty`` when required)."""
    return SCHEDULE_REGISTRY.options(name)


def make_task_schedule(name: str, **options) -> TaskSchedule:
    """Build a schedule by name: ``make_task_schedule("sequential", order=["sst", "para", "sts"])``.

    Names and options: ``"sequential"`` (order), ``"round-robin"`` (until, order), ``"proportional"``
    (replacement, steps), ``"temperature"`` (temperature, anneal_to, over_epochs, steps), ``"sqrt"``
    (anneal_to, over_epochs, steps), ``"equal"`` (steps, order), ``"dynamic"`` (targets, min_share, steps).
    An unknown name or option, or a missing required one, raises ValueError listing the valid ones.
    """
    allowed = schedule_options(name)
    SCHEDULE_REGISTRY.check_options(name, options)
    required = [k for k, d in allowed.items() if d is inspect.Parameter.empty and k not in options]
    if required:
        raise ValueError(f"schedule {name!r} needs option(s) {required}, e.g. schedule_options: "
                         f"{{targets: {{sst: 0.52, para: 0.88, sts: 0.85}}}}.")
    return SCHEDULE_REGISTRY[name](**options)