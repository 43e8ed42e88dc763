"""The tasks box: one head and one loss per task on top of the shared encoder.

``heads.py`` (sentiment, pair features, cosine, cross-encoder, buckets), ``losses.py`` (CE, BCE, MSE, cosine
losses, CoSENT, MNRL, bucketed CE) and ``multitask.py`` (MultitaskModel: one encoder, one head per task, and
the builders that assemble it from task specs).

May import: ``mtkit.model``, ``mtkit.data`` and ``mtkit.util``. Taught in notebooks/05 and 06.
"""
