"""Learner mode: a notebook's Workbook checks one exercise at a time and says what is left to write."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mtkit.exercises.checks.by_exercise import EXERCISES
from mtkit.exercises.checks.runner import CheckFailure, CheckResult, NotWrittenYet, _short_path, _where_raised
from mtkit.exercises.sources import SOURCE_ENV, load_module, resolve_source, source_folder

__all__ = ['Outcome', 'Workbook']

PASSED, FAILED, NOT_WRITTEN = "passed", "failed", "not written yet"


@dataclass
class Outcome:
    """One function's check, run by :class:`Workbook`: whose code (``source``), which file, what happened.

    ``status`` is ``"passed"``, ``"failed"`` or ``"not written yet"``; ``message`` is what the learner reads
    (the check's own message on a failure); ``outcome`` is the short form the results files record.
    """

    exercise: str  # exercise file, e.g. "attention"
    function: str  # e.g. "attention"
    check: str  # e.g. "check_attention"
    source: str  # "exercises", "solutions" or a folder
    file: str  # e.g. "exercises/attention.py"
    status: str
    message: str
    result: CheckResult | None = None
    fallback: str | None = None  # the file whose function the notebook uses instead (None: this one)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def outcome(self) -> str:
        """``"passed"``, ``"not written yet"`` or ``"failed: <the check's first line>"`` (with the classic
        mistake, when the check recognised one)."""
        if self.status != FAILED:
            return self.status
        lines = [line.strip() for line in self.message.splitlines() if line.strip()]
        text = lines[0] if lines else "failed"
        mistake = next((line for line in lines if line.startswith("Your result matches a classic mistake")), None)
        if mistake:
            text += " " + mistake
        return f"failed: {text[:300]}"

    def __str__(self) -> str:
        return self.message


def _first_stub_line(err: NotImplementedError) -> tuple[str, str, int]:
    if isinstance(err, NotWrittenYet):
        return err.function, err.filename, err.line
    return _where_raised(err)


class Workbook:
    """Checks a notebook's exercises one at a time, prints what happened, and records it for the results file.

    ``Workbook(source)``: ``source`` is whose answers to check: ``"exercises"`` (yours), ``"solutions"`` (the
    worked answers) or a folder; None follows :func:`mtkit.exercises.resolve_source` (yours, unless
    ``$MTKIT_EXERCISE_SOURCE`` says otherwise). ``check(exercise, function)`` never raises for the learner's
    code: a stub prints "not written yet: open exercises/X.py, function Y", a wrong answer prints the check's
    message (expected, got, a hint), and either way the function returned is the worked answer's, so that
    the cells after it still run. Only when the worked answers themselves fail (``source="solutions"``), which
    is a bug of the kit, does it raise.

    Taught in notebooks/03_attention_and_minbert.ipynb (first use) and every notebook with an exercise.
    """

    def __init__(self, source: str | None = None, root=None, fallback: str = "solutions", verbose: bool = True):
        self.source = resolve_source(source)
        self.from_environment = source is None and bool(os.environ.get(SOURCE_ENV))
        self.root = root
        self.fallback = fallback
        self.verbose = verbose
        self.outcomes: dict[tuple[str, str], Outcome] = {}

    # ------------------------------------------------------------------------------------------------ checking
    def _file(self, exercise: str, source: str) -> str:
        try:
            return _short_path(str(source_folder(source, self.root) / f"{exercise}.py"))
        except FileNotFoundError:
            return f"{source}/{exercise}.py"

    def _function_name(self, exercise: str, function: str | None) -> str:
        if exercise not in EXERCISES:
            raise KeyError(f"no exercise {exercise!r}; the exercises are {sorted(EXERCISES)}.")
        names = [f for f, _ in EXERCISES[exercise]]
        if function is None:
            if len(names) > 1:
                raise ValueError(f"exercises/{exercise}.py holds {len(names)} functions ({', '.join(names)}); "
                                 f"name the one to check, e.g. book.check({exercise!r}, {names[0]!r}).")
            return names[0]
        if function not in names:
            raise KeyError(f"exercises/{exercise}.py has no checked function {function!r}; it has {names}.")
        return function

    def run(self, exercise: str, function: str | None = None,
            source: str | None = None) -> tuple[Outcome, Callable | None]:
        """Check one function of ``source`` (default: this workbook's) without printing or recording; returns
        the outcome and the function that was checked (None when it could not be loaded)."""
        function = self._function_name(exercise, function)
        source = self.source if source is None else source
        check = dict(EXERCISES[exercise])[function]
        file = self._file(exercise, source)

        def outcome(status, message, result=None):
            return Outcome(exercise, function, check.__name__, source, file, status, message, result)

        try:
            module = load_module(exercise, source=source, root=self.root)
        except FileNotFoundError as err:
            return outcome(FAILED, f"{check.__name__}: {err}"), None
        except Exception as err:  # a syntax error or an import that fails: the learner's file does not load
            detail = f"line {err.lineno}: {err.msg}" if isinstance(err, SyntaxError) else str(err)
            hint = f"  Hint: fix the file so that `python {file}` runs, then run this cell again."
            return outcome(FAILED, f"{check.__name__}: {file} does not load: {type(err).__name__} ({detail})\n"
                                   + hint), None
        fn = getattr(module, function, None)
        if not callable(fn):
            return outcome(FAILED, f"{check.__name__}: {file} has no function {function}(); keep the names and "
                                   f"signatures of the exercise."), None
        try:
            with torch.random.fork_rng(devices=[]):  # the checks seed torch; the caller's random stream is untouched
                result = check(fn)
        except NotImplementedError as err:
            func, filename, line = _first_stub_line(err)
            where = filename if filename.endswith(f"{exercise}.py") else file
            return outcome(NOT_WRITTEN, f"{check.__name__}: not written yet: open {where}, function {func}() "
                                        f"(line {line} still raises NotImplementedError)."), fn
        except CheckFailure as err:
            return outcome(FAILED, str(err)), fn
        except Exception as err:  # the check itself could not run the function (e.g. a wrong signature)
            return outcome(FAILED, f"{check.__name__}: could not check {function}() in {file}: "
                                   f"{type(err).__name__}: {err}\n  Hint: keep the signature of the exercise."), fn
        cases = "\n".join(f"  ok  {case}" for case in result.cases)
        return outcome(PASSED, f"{check.__name__}: {function}() in {file} passed all {len(result.cases)} cases\n"
                               f"{cases}", result), fn

    def check(self, exercise: str, function: str | None = None) -> Callable:
        """Check ``function`` of ``exercise`` (the only one when the file has one), print the outcome, record
        it, and return the function to use from here on: yours when it passed, else the worked answer's."""
        outcome, fn = self.run(exercise, function)
        if not outcome.passed:
            if outcome.source == self.fallback:
                raise RuntimeError(f"the worked answer {outcome.file} fails its own check; this is a bug of "
                                   f"the kit, please report it:\n{outcome.message}")
            fallback_outcome, fn = self.run(exercise, outcome.function, source=self.fallback)
            if not fallback_outcome.passed:
                raise RuntimeError(f"the worked answer {fallback_outcome.file} fails its own check; this is a "
                                   f"bug of the kit, please report it:\n{fallback_outcome.message}")
            outcome.fallback = fallback_outcome.file
        self.outcomes[(exercise, outcome.function)] = outcome
        if self.verbose:
            print(self.describe(outcome))
        return fn

    def describe(self, outcome: Outcome) -> str:
        """What ``check`` prints: the outcome, then whose function the notebook goes on with."""
        text = outcome.message
        if outcome.passed and outcome.source == self.fallback:
            yours = outcome.file.replace(self.fallback, "exercises", 1)
            if self.from_environment:
                text += (f"\n(These are the worked answers: ${SOURCE_ENV} is {self.fallback!r}, as in the kit's "
                         f"tests and in the outputs saved with this notebook. Run the notebook yourself to check "
                         f"yours, {yours}.)")
            else:
                text += (f"\n(These are the worked answers: exercise_source is {self.fallback!r}. Set it to None "
                         f"to check yours, {yours}.)")
        elif outcome.status == NOT_WRITTEN:
            text += (f"\nReplace the `raise NotImplementedError()` under `# YOUR CODE HERE` with your code and run "
                     f"this cell again; until then this notebook uses the worked answer, {outcome.fallback}.")
        elif not outcome.passed:
            text += (f"\nUntil it passes, this notebook uses the worked answer, {outcome.fallback}; fix yours and "
                     f"run this cell again.")
        return text

    # ------------------------------------------------------------------------------------------------ results
    def outcome(self, exercise: str) -> str | None:
        """The exercise's outcome: "passed" when every checked function passed, else the first other one."""
        found = [o for (name, _), o in self.outcomes.items() if name == exercise]
        if not found:
            return None
        failing = next((o for o in found if not o.passed), None)
        return (failing or found[0]).outcome

    def record(self) -> dict:
        """Per exercise: whose code was checked, its file, the outcome, and each checked function's outcome;
        what a notebook passes to ``save_results(..., checks=book.record())``."""
        out: dict[str, dict] = {}
        for (exercise, function), o in self.outcomes.items():
            entry = out.setdefault(exercise, {"source": o.source, "file": o.file, "outcome": None, "functions": {}})
            entry["functions"][function] = o.outcome
            if o.fallback:
                entry["used_instead"] = o.fallback
        for exercise, entry in out.items():
            entry["outcome"] = self.outcome(exercise)
        return out
