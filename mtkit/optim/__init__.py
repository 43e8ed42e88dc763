"""Optimization: AdamW from scratch, layer-wise learning-rate decay, lr schedules and fine-tune modes.

* ``adamw.py``: ``AdamW`` with the CS224N handout's semantics (notebooks/04_adamw.ipynb).
* ``llrd.py``: ``layerwise_lr_groups`` and its printable table (notebooks/08_layerwise_lr_decay.ipynb).
* ``schedules.py``: constant, linear and cosine lr schedules with warmup, for any torch optimizer.
* ``finetune.py``: the fine-tune modes ``full-model``, ``last-linear-layer`` and ``two-stage``.
"""
from mtkit.optim.adamw import AdamW
from mtkit.optim.finetune import (
                                  FINETUNE_MODES,
                                  Stage,
                                  TwoStagePlan,
                                  apply_finetune_mode,
                                  check_finetune_mode,
                                  start_stage_two,
)
from mtkit.optim.llrd import LayerwiseGroups, layerwise_lr_groups, uses_weight_decay
from mtkit.optim.schedules import SCHEDULES, constant_schedule, cosine_schedule, linear_schedule, make_scheduler

__all__ = [
    "AdamW",
    "LayerwiseGroups", "layerwise_lr_groups", "uses_weight_decay",
    "SCHEDULES", "constant_schedule", "linear_schedule", "cosine_schedule", "make_scheduler",
    "FINETUNE_MODES", "Stage", "TwoStagePlan", "apply_finetune_mode", "check_finetune_mode", "start_stage_two",
]
