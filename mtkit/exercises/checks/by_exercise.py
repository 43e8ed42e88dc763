"""Which checks each exercise file runs, and running them all for one file."""
from __future__ import annotations

from collections.abc import Callable

from mtkit.exercises.checks.adamw import check_adamw_step
from mtkit.exercises.checks.attention import check_attention, check_layer_forward
from mtkit.exercises.checks.llrd import check_llrd_groups
from mtkit.exercises.checks.pcgrad import check_gradient_cosine, check_pcgrad, check_pcgrad_projection
from mtkit.exercises.checks.runner import CheckResult
from mtkit.exercises.checks.sentence import check_mean_pool, check_pair_features
from mtkit.exercises.sources import load_module

__all__ = ['EXERCISES', 'check_exercise']


# ---------------------------------------------------------------------------------------------- by exercise file
EXERCISES: dict[str, list[tuple[str, Callable]]] = {
    "attention": [("attention", check_attention)],
    "transformer_layer": [("layer_forward", check_layer_forward)],
    "adamw": [("adamw_step", check_adamw_step)],
    "mean_pooling": [("mean_pool", check_mean_pool)],
    "pair_features": [("pair_features", check_pair_features)],
    "llrd": [("llrd_param_groups", check_llrd_groups)],
    "pcgrad": [("project_conflicting", check_pcgrad_projection), ("pcgrad", check_pcgrad)],
    "gradient_cosine": [("gradient_cosine", check_gradient_cosine)],
}


def check_exercise(name: str, source: str = "solutions", root=None) -> list[CheckResult]:
    """Load ``<source>/<name>.py`` and run every check of that exercise, in order; returns their results.

    ``source="solutions"`` checks the worked answers, ``source="exercises"`` your own. The first function
    still left as a stub raises ``NotImplementedError`` naming it.
    """
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; the exercises are {sorted(EXERCISES)}.")
    module = load_module(name, source=source, root=root)
    results = []
    for function, check in EXERCISES[name]:
        fn = getattr(module, function, None)
        if fn is None:
            raise AttributeError(f"{module.__file__} has no function {function}(); keep the names of the exercise.")
        results.append(check(fn))
    return results
