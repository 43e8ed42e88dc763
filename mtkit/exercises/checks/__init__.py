"""Checks that teach: verify a learner's function against mtkit's reference, and explain a failure.

Each ``check_<exercise>(fn)`` runs ``fn`` on a few random and edge-case inputs (fixed seeds, so a failure
repeats) and compares with the reference implementation in mtkit (or torch). On success it returns a
:class:`CheckResult` that lists the cases passed. On failure it raises :class:`CheckFailure` saying which case,
what was expected and what came back (shapes, dtypes, a few values, where the largest difference is) and a
hint; when the wrong answer matches a classic mistake (a missing 1/sqrt(d), a softmax over the wrong axis,
eps in the wrong place...) the hint names that mistake. A stub that still raises ``NotImplementedError``
gives a ``NotImplementedError`` whose message names the function to write and its file.

The helpers of CS231n's assignments are here too: :func:`rel_error` and a numerical gradient check
(:func:`numerical_gradient`, :func:`gradient_check`) by central differences.

=========================  ==================================  ===========================================
exercise file              function                            check (reference)
=========================  ==================================  ===========================================
attention.py               ``attention(q, k, v, mask)``        ``check_attention`` (torch SDPA)
transformer_layer.py       ``layer_forward(layer, x, mask)``   ``check_layer_forward`` (mtkit.model.bert.BertLayer)
adamw.py                   ``adamw_step(p, g, m, v, t, ...)``  ``check_adamw_step`` (mtkit.optim.adamw)
mean_pooling.py            ``mean_pool(h, mask)``              ``check_mean_pool`` (mtkit.model.pooling)
pair_features.py           ``pair_features(u, v)``             ``check_pair_features`` (mtkit.tasks.heads)
llrd.py                    ``llrd_param_groups(model, ...)``   ``check_llrd_groups`` (mtkit.optim.llrd)
pcgrad.py                  ``project_conflicting(g_i, g_j)``   ``check_pcgrad_projection`` (mtkit.surgery)
pcgrad.py                  ``pcgrad(grads, orders)``           ``check_pcgrad`` (mtkit.surgery)
gradient_cosine.py         ``gradient_cosine(gs_i, gs_j)``     ``check_gradient_cosine`` (mtkit.surgery)
=========================  ==================================  ===========================================

``check_exercise("attention", source="exercises")`` loads a file (``mtkit.exercises.load_module``) and runs
every check of it in order.

In a notebook, :class:`Workbook` runs one exercise's check at a time and never stops the notebook::

    book = Workbook(exercise_source)          # None: your exercises/ (see mtkit.exercises.resolve_source)
    attention = book.check("attention")       # prints passed / failed (the check's message) / not written yet
    ...
    save_results(..., checks=book.record())   # per exercise: whose code was checked, and the outcome

``book.check`` returns the function the rest of the notebook should use: yours when it passed, otherwise the
worked answer from ``solutions/``, and it says so.

Taught in notebooks/03_attention_and_minbert.ipynb (first use) and every notebook with an exercise.
"""
from __future__ import annotations


from mtkit.exercises.checks.adamw import check_adamw_step
from mtkit.exercises.checks.attention import check_attention, check_layer_forward
from mtkit.exercises.checks.by_exercise import EXERCISES, check_exercise
from mtkit.exercises.checks.llrd import check_llrd_groups
from mtkit.exercises.checks.pcgrad import check_gradient_cosine, check_pcgrad, check_pcgrad_projection
from mtkit.exercises.checks.runner import (
           CheckFailure,
           CheckResult,
           NotWrittenYet,
           gradient_check,
           numerical_gradient,
           rel_error,
)
from mtkit.exercises.checks.sentence import check_mean_pool, check_pair_features
from mtkit.exercises.checks.workbook import Outcome, Workbook

__all__ = ["CheckFailure", "CheckResult", "NotWrittenYet", "Outcome", "Workbook", "rel_error", "numerical_gradient",
           "gradient_check",
           "check_attention", "check_layer_forward", "check_adamw_step", "check_mean_pool", "check_pair_features",
           "check_llrd_groups", "check_pcgrad_projection", "check_pcgrad", "check_gradient_cosine",
           "EXERCISES", "check_exercise"]

