"""The training box: the run's config and its validation, task schedules, the training loop, checkpoints,
history and ensembles of trained runs.

May import: every box below it (``model``, ``tasks``, ``data``, ``optim``, ``surgery``, ``eval``,
``exercises``, ``util``); never ``mtkit.teach`` or ``mtkit.cli``. Taught in notebooks/07_multitask_training.ipynb.
"""
