"""Exercises are generated from solutions: no diff, no leaks, solutions pass, exercises fail at their stubs.

The sync tests check generated exercises. On a learner's machine an exercise they have edited (its fingerprint
no longer matches its text) is theirs: those tests report it as "yours, not checked for sync" (a skip), never as
a failure. In CI (``$CI`` set) every exercise must be exactly as generated.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mtkit import exercises as ex
from mtkit.exercises import generator as generate_module
from mtkit.exercises import in_ci, is_pristine
from mtkit.exercises.checks import EXERCISES, check_exercise

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "solutions"
EXERCISES_DIR = REPO / "exercises"
NAMES = sorted(p.stem for p in SOLUTIONS.glob("*.py") if not p.name.startswith("_"))


def _block_lines(text: str) -> list[str]:
    """Lines strictly between the markers, found by a plain scan (independent of mtkit.exercises)."""
    inside, found = False, []
    for line in text.splitlines():
        if line.strip() == "### BEGIN SOLUTION":
            inside = True
        elif line.strip() == "### END SOLUTION":
            inside = False
        elif inside and line.strip():
            found.append(line.strip())
    return found


def generated_exercise(name: str) -> str:
    """The text of exercises/<name>.py when it is as generated; a learner's edited one is skipped (CI: fails)."""
    text = (EXERCISES_DIR / f"{name}.py").read_text(encoding="utf-8")
    if not is_pristine(text):
        if in_ci():
            pytest.fail(f"exercises/{name}.py was edited (its fingerprint does not match its text); CI checks the "
                        f"generated exercises: run `python -m mtkit.exercises solutions exercises --force`.")
        pytest.skip(f"exercises/{name}.py is yours (edited), not checked for sync")
    return text


def test_every_solution_has_checks_and_an_exercise():
    assert NAMES, "solutions/ is empty"
    assert set(NAMES) == set(EXERCISES), "solutions/ and mtkit.exercises.checks.EXERCISES must list the same exercises"
    assert sorted(p.stem for p in EXERCISES_DIR.glob("*.py")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_regenerating_leaves_no_diff(name, tmp_path):
    current = generated_exercise(name)
    out = tmp_path / "exercises"
    report = ex.generate(SOLUTIONS, out)
    assert len(report.written) == len(NAMES) and report.ok
    assert (out / f"{name}.py").read_text(encoding="utf-8") == current, (
        f"exercises/{name}.py is stale: run `make exercises`")


def test_check_mode_of_the_command_passes_on_the_repository():
    result = subprocess.run([sys.executable, "-m", "mtkit.exercises", "solutions", "exercises", "--check"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    edited = [n for n in NAMES if not is_pristine((EXERCISES_DIR / f"{n}.py").read_text(encoding="utf-8"))]
    assert f"{len(NAMES) - len(edited)} unchanged" in result.stdout
    if edited:
        assert f"{len(edited)} yours, not checked for sync" in result.stdout


@pytest.mark.parametrize("name", NAMES)
def test_no_solution_line_leaks_into_the_exercise(name):
    solution = (SOLUTIONS / f"{name}.py").read_text(encoding="utf-8")
    exercise = generated_exercise(name)
    exercise_lines = {line.strip() for line in exercise.splitlines()}
    trivial = {")", "]", "}", "else:", "try:", "pass", "return"}
    block = [line for line in _block_lines(solution) if line not in trivial]
    assert block, f"{name}: no solution lines found"
    assert [line for line in block if line in exercise_lines] == []
    # The stubs replace the blocks one for one, at the marker's indent.
    begins = [m.group(1) for m in re.finditer(r"^([ \t]*)### BEGIN SOLUTION$", solution, re.MULTILINE)]
    stubs = re.findall(r"^([ \t]*)# YOUR CODE HERE\n\1raise NotImplementedError\(\)$", exercise, re.MULTILINE)
    assert stubs == begins
    assert "### BEGIN SOLUTION" not in exercise and "### END SOLUTION" not in exercise


@pytest.mark.parametrize("name", NAMES)
def test_exercise_keeps_signatures_docstrings_and_names_the_file(name):
    import ast
    solution = ast.parse((SOLUTIONS / f"{name}.py").read_text(encoding="utf-8"))
    text = generated_exercise(name)
    exercise = ast.parse(text)
    assert f"edit this file, exercises/{name}.py" in text.splitlines()[1]
    assert ast.get_docstring(exercise) == ast.get_docstring(solution)
    sol_funcs = {f.name: f for f in ast.walk(solution) if isinstance(f, ast.FunctionDef)}
    ex_funcs = {f.name: f for f in ast.walk(exercise) if isinstance(f, ast.FunctionDef)}
    for fname in ex_funcs:
        assert ast.dump(ex_funcs[fname].args) == ast.dump(sol_funcs[fname].args)
        assert ast.get_docstring(ex_funcs[fname]) == ast.get_docstring(sol_funcs[fname])


@pytest.mark.parametrize("name", NAMES)
def test_solutions_pass_all_their_checks(name):
    results = check_exercise(name, source="solutions", root=REPO)
    assert [r.function for r in results] == [f for f, _ in EXERCISES[name]]
    assert all(len(r.cases) >= 3 for r in results)


@pytest.mark.parametrize("name", NAMES)
def test_exercises_fail_at_the_first_stub_and_name_it(name):
    generated_exercise(name)
    first = EXERCISES[name][0][0]
    with pytest.raises(NotImplementedError) as info:
        check_exercise(name, source="exercises", root=REPO)
    message = str(info.value)
    assert message.startswith(f"{first}() is not written yet")
    assert f"exercises/{name}.py" in message


# ---------------------------------------------------------------------------------------------- the generator
SAMPLE = '''"""Module doc."""
import math


def f(x):
    """Doc of f."""
    ### BEGIN SOLUTION
    y = math.sqrt(x)
    return y
    ### END SOLUTION


class C:
    def g(self):
        if True:
            ### BEGIN SOLUTION
            return 42
            ### END SOLUTION
'''


def test_make_exercise_stubs_at_the_same_indent_and_keeps_the_rest():
    text = ex.make_exercise(SAMPLE, "exercises/s.py", "solutions/s.py")
    body = text.split("# " + "=" * 110 + "\n", 2)[2]
    assert body == ('"""Module doc."""\nimport math\n\n\ndef f(x):\n    """Doc of f."""\n'
                    '    # YOUR CODE HERE\n    raise NotImplementedError()\n\n\nclass C:\n    def g(self):\n'
                    '        if True:\n            # YOUR CODE HERE\n            raise NotImplementedError()\n')
    assert ex.is_pristine(text)
    assert not ex.is_pristine(text.replace("raise NotImplementedError()", "return 1", 1))
    assert ex.leaked_lines(SAMPLE, text) == []
    assert ex.leaked_lines(SAMPLE, text + "y = math.sqrt(x)\n") == ["y = math.sqrt(x)"]


@pytest.mark.parametrize("source, words", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "never closed"),
    ("def f():\n    ### END SOLUTION\n", "without a"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n", "nest"),
    ("def f():\n    return 1\n", "no '### BEGIN SOLUTION' block"),
    ("def f():\n    ### BEGIN SOLUTION\n\n    ### END SOLUTION\n", "empty"),
    ("def f():\n    x = 1  ### BEGIN SOLUTION\n", "alone on its line"),
    ("x = (1,\n### BEGIN SOLUTION\n2)\n### END SOLUTION\n", "does not compile"),
])
def test_bad_markers_get_one_clear_error(source, words):
    with pytest.raises(ex.ExerciseError, match=re.escape(words)) as info:
        ex.make_exercise(source, "exercises/bad.py", "solutions/bad.py")
    assert "solutions/bad.py" in str(info.value)


def test_generate_keeps_an_edited_exercise_and_check_mode_reports_it(tmp_path):
    sol, out = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    (sol / "s.py").write_text(SAMPLE, encoding="utf-8")
    assert len(ex.generate(sol, out).written) == 1
    assert ex.generate(sol, out).unchanged and ex.generate(sol, out, check=True).ok
    # A solution change makes the pristine exercise stale: --check fails, a plain run rewrites it.
    (sol / "s.py").write_text(SAMPLE.replace("return 42", "return 43"), encoding="utf-8")
    assert ex.generate(sol, out).ok  # 'return 43' is inside a block: the exercise text does not change
    (sol / "s.py").write_text(SAMPLE.replace('"""Doc of f."""', '"""New doc."""'), encoding="utf-8")
    stale = ex.generate(sol, out, check=True)
    assert not stale.ok and "differs" in stale.problems[0]
    assert ex.main([str(sol), str(out), "--check"]) == 1
    assert len(ex.generate(sol, out).written) == 1
    assert "New doc." in (out / "s.py").read_text()
    # A learner's edit is kept, unless --force.
    edited = (out / "s.py").read_text().replace("raise NotImplementedError()", "return 0", 1)
    (out / "s.py").write_text(edited)
    (sol / "s.py").write_text(SAMPLE, encoding="utf-8")
    report = ex.generate(sol, out)
    assert report.kept_edited and (out / "s.py").read_text() == edited
    assert ex.generate(sol, out, force=True).written
    assert ex.is_pristine((out / "s.py").read_text())
    # An exercise whose solution is gone is reported.
    (sol / "t.py").write_text(SAMPLE, encoding="utf-8")
    ex.generate(sol, out)
    (sol / "t.py").unlink()
    assert any("no solution" in p for p in ex.generate(sol, out, check=True).problems)


def test_load_module_says_what_is_available(tmp_path):
    module = ex.load_module("attention", "solutions", root=REPO)
    assert callable(module.attention)
    with pytest.raises(FileNotFoundError, match="Available"):
        ex.load_module("nope", "solutions", root=REPO)


def test_check_mode_calls_an_edited_exercise_yours_outside_ci_and_a_problem_in_ci(tmp_path, monkeypatch, capsys):
    sol, out = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    (sol / "s.py").write_text(SAMPLE, encoding="utf-8")
    (sol / "t.py").write_text(SAMPLE, encoding="utf-8")
    ex.generate(sol, out)
    (out / "s.py").write_text((out / "s.py").read_text().replace("raise NotImplementedError()", "return 0", 1))
    monkeypatch.delenv("CI", raising=False)
    report = ex.generate(sol, out, check=True)
    assert report.ok and report.yours == [generate_module._display(out / "s.py")] and len(report.unchanged) == 1
    assert "1 yours, not checked for sync" in str(report)
    assert ex.main([str(sol), str(out), "--check"]) == 0
    assert "yours, not checked for sync" in capsys.readouterr().out
    assert ex.main([str(sol), str(out), "--check", "--strict"]) == 1
    monkeypatch.setenv("CI", "true")
    strict = ex.generate(sol, out, check=True)
    assert not strict.ok and "differs" in strict.problems[0] and not strict.yours
    assert ex.main([str(sol), str(out), "--check"]) == 1
    # a stale exercise nobody edited is a problem everywhere: the solution changed without regenerating
    monkeypatch.setenv("CI", "false")
    (sol / "t.py").write_text(SAMPLE.replace('"""Doc of f."""', '"""New doc."""'), encoding="utf-8")
    assert any("t.py differs" in p for p in ex.generate(sol, out, check=True).problems)


@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("false", False), ("no", False),
                                             ("true", True), ("1", True), ("yes", True)])
def test_in_ci_reads_the_ci_variable(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert ex.in_ci() is expected
