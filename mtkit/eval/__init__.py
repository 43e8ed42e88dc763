"""The evaluation box: metrics, the overall score, prediction files and frozen-encoder baselines.

May import: ``mtkit.model``, ``mtkit.tasks``, ``mtkit.data`` and ``mtkit.util``; never ``mtkit.train``.
Taught in notebooks/10_experiments_and_error_analysis.ipynb.
"""
