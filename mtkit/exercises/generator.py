"""Exercises generated from worked solutions, with nbgrader's markers.

A solution file in ``solutions/`` is ordinary, importable Python. The body a learner should write sits between
two marker lines (the syntax of nbgrader, https://nbgrader.readthedocs.io)::

    def mean_pool(last_hidden_state, attention_mask):
        \"\"\"The docstring stays in the exercise.\"\"\"
        ### BEGIN SOLUTION
        ...the worked answer...
        ### END SOLUTION

``python -m mtkit.exercises solutions exercises`` (``make exercises``) writes ``exercises/<same name>.py`` with
each block replaced, at the marker's indent, by::

        # YOUR CODE HERE
        raise NotImplementedError()

so the signature, the docstring and everything outside the blocks stay, and a banner at the top names the file
to edit. There is one source of truth for each exercise (the solution); the exercise is never edited by hand.

Safety and checks:

- Each generated file carries a fingerprint of its own text. Regenerating overwrites a file that is still
  exactly as generated (stale or not), but refuses to overwrite one a learner has edited, unless ``--force``.
- ``--check`` writes nothing: it fails (exit status 1) when an exercise is missing, differs from what would be
  generated, or has no solution any more. CI runs it, so a solution changed without regenerating fails.
  On a learner's machine an exercise they have edited is theirs: ``--check`` reports it as "yours, not checked
  for sync" and does not fail on it. In CI (the ``CI`` environment variable is set, as CI services and
  ``.ci/run`` do; or ``--strict``) every exercise must be exactly as generated.
- Every run also checks that no line from inside a solution block appears in the exercise (a leak) and that
  the exercise compiles.

``load_module("attention", source="solutions")`` imports one file by path, for notebooks and tests
(``mtkit.exercises.checks`` verifies the functions it holds). A notebook's ``exercise_source = None`` means your answers,
``exercises/``, unless ``$MTKIT_EXERCISE_SOURCE`` names another folder (:func:`resolve_source`; the notebook
tests set it to ``solutions``, the worked answers the committed outputs come from).

Taught in notebooks/03_attention_and_minbert.ipynb (the first exercise) and used by every notebook with one.
"""
from __future__ import annotations

import argparse
import difflib
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mtkit.exercises.sources import in_ci

__all__ = ["BEGIN", "END", "ExerciseError", "make_exercise", "solution_lines", "leaked_lines", "generate",
           "GenerateReport", "is_pristine", "main"]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
_BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION[ \t]*$")
_END_RE = re.compile(r"^[ \t]*### END SOLUTION[ \t]*$")
_FINGERPRINT_RE = re.compile(r"^# fingerprint: (?P<hash>[0-9a-f]{16}|-+)$", re.MULTILINE)
_FINGERPRINT_BLANK = "# fingerprint: " + "-" * 16
# Lines that carry no answer: closing brackets and bare keywords may appear anywhere without giving anything away.
_TRIVIAL = re.compile(r"^([)\]}:,]+|else:|try:|finally:|pass|break|continue|return|return None)$")


class ExerciseError(ValueError):
    """A solution file whose markers cannot be turned into an exercise; the message names the file and line."""


def _banner(exercise_path: str, solution_path: str, command: str) -> list[str]:
    rule = "# " + "=" * 110
    return [
        rule,
        f"# EXERCISE FILE: edit this file, {exercise_path}",
        "# Replace each `raise NotImplementedError()` (below a `# YOUR CODE HERE`) with your code; keep the",
        "# signatures. The module docstring says which notebook teaches it and which mtkit.exercises.checks function",
        "# checks it. Stuck? The worked answer is in " + solution_path + ".",
        f"# Generated from {solution_path} by `{command}` (`make exercises`).",
        "# Regenerating never overwrites this file once you have edited it (unless you pass --force).",
        _FINGERPRINT_BLANK,
        rule,
    ]


def _fingerprint(text: str) -> str:
    """The fingerprint of a generated text, computed with its fingerprint line blanked."""
    blanked = _FINGERPRINT_RE.sub(_FINGERPRINT_BLANK, text, count=1)
    return hashlib.sha256(blanked.encode("utf-8")).hexdigest()[:16]


def _stamp(text: str) -> str:
    return text.replace(_FINGERPRINT_BLANK, f"# fingerprint: {_fingerprint(text)}", 1)


def is_pristine(text: str) -> bool:
    """True when ``text`` is a generated exercise nobody has edited since (its fingerprint still matches)."""
    match = _FINGERPRINT_RE.search(text)
    return bool(match) and match.group("hash") == _fingerprint(text)


def _blocks(source: str, where: str) -> list[tuple[int, int, str]]:
    """(first line, last line, indent) of each solution block, 0-based and inclusive of the markers."""
    blocks, start, indent = [], None, ""
    for number, line in enumerate(source.splitlines()):
        begin = _BEGIN_RE.match(line)
        if begin:
            if start is not None:
                raise ExerciseError(f"{where}:{number + 1}: '{BEGIN}' inside the block opened at line {start + 1}; "
                                    f"close it with '{END}' first (blocks do not nest).")
            start, indent = number, begin.group("indent")
        elif _END_RE.match(line):
            if start is None:
                raise ExerciseError(f"{where}:{number + 1}: '{END}' without a '{BEGIN}' before it.")
            blocks.append((start, number, indent))
            start = None
        elif BEGIN in line or END in line:
            raise ExerciseError(f"{where}:{number + 1}: a solution marker must be alone on its line (only "
                                f"indentation before it), got {line.strip()!r}.")
    if start is not None:
        raise ExerciseError(f"{where}:{start + 1}: '{BEGIN}' is never closed; add '{END}' after the solution.")
    return blocks


def make_exercise(source: str, exercise_path: str = "exercises/exercise.py",
                  solution_path: str = "solutions/exercise.py",
                  command: str = "python -m mtkit.exercises solutions exercises") -> str:
    """The exercise text for one solution text: blocks become stubs at the same indent, a banner goes on top.

    Raises ``ExerciseError`` for unbalanced markers, a file without any block, a block with nothing in it, or
    an exercise that would not compile.
    """
    blocks = _blocks(source, solution_path)
    if not blocks:
        raise ExerciseError(f"{solution_path} has no '{BEGIN}' block: every file in solutions/ is an exercise "
                            f"and needs at least one.")
    lines = source.splitlines()
    out, cursor = [], 0
    for start, stop, indent in blocks:
        body = [line for line in lines[start + 1:stop] if line.strip()]
        if not body:
            raise ExerciseError(f"{solution_path}:{start + 1}: the solution block is empty.")
        out.extend(lines[cursor:start])
        out.extend(indent + stub for stub in STUB)
        cursor = stop + 1
    out.extend(lines[cursor:])
    text = "\n".join(_banner(exercise_path, solution_path, command) + out).rstrip("\n") + "\n"
    try:
        compile(text, exercise_path, "exec")
    except SyntaxError as err:
        raise ExerciseError(f"{solution_path}: the generated exercise does not compile ({err.msg}, line "
                            f"{err.lineno}); a solution block must hold whole statements.") from None
    return _stamp(text)


def solution_lines(source: str, where: str = "<solution>") -> list[str]:
    """The stripped, non-trivial lines inside the solution blocks of ``source``."""
    lines = source.splitlines()
    found = []
    for start, stop, _ in _blocks(source, where):
        for line in lines[start + 1:stop]:
            stripped = line.strip()
            if stripped and not _TRIVIAL.match(stripped):
                found.append(stripped)
    return found


def leaked_lines(solution: str, exercise: str, where: str = "<solution>") -> list[str]:
    """Lines from inside the solution blocks that also appear (stripped) anywhere in the exercise."""
    exercise_lines = {line.strip() for line in exercise.splitlines()}
    return [line for line in solution_lines(solution, where) if line in exercise_lines]


@dataclass
class GenerateReport:
    """What ``generate`` did or, with ``check=True``, found."""

    written: list[str] = field(default_factory=list)  # exercise files (re)written
    unchanged: list[str] = field(default_factory=list)  # already up to date
    kept_edited: list[str] = field(default_factory=list)  # edited by a learner: left alone (no --force)
    yours: list[str] = field(default_factory=list)  # --check outside CI: edited by a learner, not compared
    problems: list[str] = field(default_factory=list)  # --check failures, leaks, stale files

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        parts = [f"{len(self.written)} written", f"{len(self.unchanged)} unchanged"]
        if self.kept_edited:
            parts.append(f"{len(self.kept_edited)} edited by you and kept ({', '.join(self.kept_edited)}; "
                         "pass --force to overwrite)")
        if self.yours:
            parts.append(f"{len(self.yours)} yours, not checked for sync ({', '.join(self.yours)})")
        text = "exercises: " + ", ".join(parts)
        if self.problems:
            text += "\n" + "\n".join(f"  - {p}" for p in self.problems)
        return text


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def generate(solutions_dir: str | Path, exercises_dir: str | Path, check: bool = False,
             force: bool = False, strict: bool | None = None) -> GenerateReport:
    """Write (or, with ``check``, compare) ``exercises_dir/<name>.py`` for every ``solutions_dir/<name>.py``.

    Files starting with ``_`` are skipped. With ``check=True`` nothing is written and every difference becomes a
    problem in the report, except an exercise a learner has edited (its fingerprint no longer matches its
    text): that one is listed in ``yours`` ("yours, not checked for sync"), unless ``strict`` (default: in CI,
    :func:`in_ci`), where it is a problem too. Without ``check``, an edited exercise is kept unless ``force``.
    """
    strict = in_ci() if strict is None else strict
    solutions_dir, exercises_dir = Path(solutions_dir), Path(exercises_dir)
    if not solutions_dir.is_dir():
        raise FileNotFoundError(f"No solutions folder at {solutions_dir}; pass the folder holding the solution "
                                "files, e.g. `python -m mtkit.exercises solutions exercises`.")
    report = GenerateReport()
    sources = sorted(p for p in solutions_dir.glob("*.py") if not p.name.startswith("_"))
    if not sources:
        raise FileNotFoundError(f"{solutions_dir} holds no solution files (*.py).")
    # The text names the folders as given on the command line's usual form (their last component), so the
    # generated files do not depend on the working directory.
    command = f"python -m mtkit.exercises {solutions_dir.resolve().name} {exercises_dir.resolve().name}"
    expected_names = set()
    for solution in sources:
        target = exercises_dir / solution.name
        expected_names.add(solution.name)
        source = solution.read_text(encoding="utf-8")
        text = make_exercise(source, f"{exercises_dir.resolve().name}/{solution.name}",
                             f"{solutions_dir.resolve().name}/{solution.name}", command)
        leaks = leaked_lines(source, text, _display(solution))
        if leaks:
            report.problems.append(f"{_display(solution)}: solution lines leak into the exercise: {leaks[:3]}")
            continue
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current == text:
            report.unchanged.append(_display(target))
            continue
        if check:
            if current is not None and not is_pristine(current) and not strict:
                report.yours.append(_display(target))
                continue
            if current is None:
                report.problems.append(f"{_display(target)} is missing; run `{command}`.")
            else:
                diff = difflib.unified_diff(current.splitlines(), text.splitlines(), _display(target),
                                            "generated", lineterm="", n=1)
                shown = "\n      ".join(list(diff)[:12])
                report.problems.append(f"{_display(target)} differs from what {_display(solution)} generates; run "
                                       f"`{command}`.\n      {shown}")
            continue
        if current is not None and not is_pristine(current) and not force:
            report.kept_edited.append(_display(target))
            continue
        exercises_dir.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8", newline="\n")
        report.written.append(_display(target))
    if exercises_dir.is_dir():
        for extra in sorted(exercises_dir.glob("*.py")):
            if extra.name not in expected_names and not extra.name.startswith("_"):
                current = extra.read_text(encoding="utf-8")
                if is_pristine(current):
                    report.problems.append(f"{_display(extra)} has no solution in {_display(solutions_dir)} any more; "
                                           "delete it.")
    return report


# ----------------------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mtkit.exercises",
        description="Generate exercises/ from solutions/ (nbgrader markers ### BEGIN SOLUTION / ### END SOLUTION).")
    parser.add_argument("solutions", help="folder of solution files, e.g. solutions")
    parser.add_argument("exercises", help="folder to write the exercises into, e.g. exercises")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if any exercise is missing, stale or leaks a solution line")
    parser.add_argument("--force", action="store_true", help="overwrite exercises you have edited")
    parser.add_argument("--strict", action="store_true",
                        help="with --check, fail on exercises you have edited too (the default in CI, $CI set)")
    args = parser.parse_args(argv)
    try:
        report = generate(args.solutions, args.exercises, check=args.check, force=args.force,
                          strict=True if args.strict else None)
    except (ExerciseError, FileNotFoundError) as err:
        print(f"mtkit.exercises: {err}", file=sys.stderr)
        return 1
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
