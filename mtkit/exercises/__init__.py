"""The learner's code: exercises generated from the worked solutions, loading an exercise file, the checks
that teach, and swapping a learner's implementations into the trainer.

``generator.py`` (nbgrader markers -> exercises/), ``sources.py`` (whose answers: exercises, solutions or a
folder), ``checks.py`` (the checks, one exercise each) and ``implementations.py`` (your attention, layer,
AdamW step, pooling and PCGrad train the model).

May import: ``mtkit.model``, ``mtkit.tasks``, ``mtkit.optim``, ``mtkit.surgery`` and ``mtkit.util``; never
``mtkit.train``, ``mtkit.teach`` or ``mtkit.cli`` (the trainer sits above and imports this box).
Run ``python -m mtkit.exercises solutions exercises`` (``make exercises``) to regenerate exercises/.
"""
from mtkit.exercises.generator import (
                                      BEGIN,
                                      END,
                                      ExerciseError,
                                      GenerateReport,
                                      generate,
                                      is_pristine,
                                      leaked_lines,
                                      main,
                                      make_exercise,
                                      solution_lines,
)
from mtkit.exercises.sources import SOURCE_ENV, find_root, in_ci, load_module, resolve_source, source_folder

__all__ = ["BEGIN", "END", "ExerciseError", "make_exercise", "solution_lines", "leaked_lines", "generate",
           "GenerateReport", "load_module", "find_root", "is_pristine", "in_ci", "resolve_source", "source_folder",
           "SOURCE_ENV", "main"]
