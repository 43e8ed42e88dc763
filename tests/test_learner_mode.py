"""Learner mode: the notebooks check the learner's exercises by default, one at a time, and never stop on them.

The acceptance test runs notebooks 03 and 04 through papermill on the untouched stubs: they run to the end,
each exercise cell says "not written yet" naming its file, and the results file records it. The rest checks the
pieces: the parameters' default, the runner's choice of the worked answers, and the committed outputs.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from mtkit.exercises import generate, is_pristine
from mtkit.exercises.checks import EXERCISES
from mtkit.teach import notebook_runner as nr

REPO = Path(__file__).resolve().parents[1]
EXERCISE_CELLS = {"03_attention_and_minbert": ["attention", "transformer_layer"], "04_adamw": ["adamw"]}


@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> tuple[str, str]:
    """(source to pass, folder the messages name): exercises/ when it is untouched, else a fresh copy."""
    names = [n for cells in EXERCISE_CELLS.values() for n in cells]
    if all(is_pristine((REPO / "exercises" / f"{n}.py").read_text(encoding="utf-8")) for n in names):
        return "exercises", "exercises"
    folder = tmp_path_factory.mktemp("untouched") / "exercises"  # this machine's exercises are a learner's
    generate(REPO / "solutions", folder)
    return str(folder), str(folder)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXERCISE_CELLS))
def test_on_the_untouched_stubs_the_notebook_runs_to_the_end_and_says_not_written_yet(name, stubs, tmp_path):
    source, shown = stubs
    (run,) = nr.run_notebooks(tmp_path, profile="small", only=[name[:2]], exercise_source=source,
                              log=lambda *_: None, timeout=300)
    assert run.status == "ok", f"{name} stopped: {run.error} (executed copy: {run.output})"
    assert run.parameters["exercise_source"] == source
    nb = nbformat.read(run.output, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "every cell ran"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    for exercise in EXERCISE_CELLS[name]:
        cell = next(c for c in code if f'book.check("{exercise}"' in c.source)
        text = "".join(o.get("text", "") for o in cell.outputs)
        function = EXERCISES[exercise][0][0]
        assert f"not written yet: open {shown}/{exercise}.py, function {function}()" in text, text
        assert f"this notebook uses the worked answer, solutions/{exercise}.py" in text
        recorded = run.results["checks"][exercise]
        assert recorded["source"] == source and recorded["outcome"] == "not written yet"
        assert recorded["functions"] == {function: "not written yet"}
        assert recorded["used_instead"] == f"solutions/{exercise}.py"
    assert set(run.results["checks"]) == set(EXERCISE_CELLS[name])


def test_the_parameters_default_is_the_learners_exercises_and_the_environment_can_change_it(monkeypatch):
    import papermill as pm

    from mtkit.exercises import SOURCE_ENV, resolve_source
    from mtkit.exercises.checks import Workbook
    for name in ("03_attention_and_minbert", "04_adamw", "06_sentence_bert", "08_layerwise_lr_decay",
                 "09_gradient_surgery"):
        declared = pm.inspect_notebook(str(REPO / "notebooks" / f"{name}.ipynb"))
        assert declared["exercise_source"]["default"] == "None", name
    assert pm.inspect_notebook(str(REPO / "notebooks" / "05_sentiment_finetuning.ipynb"))["implementations"][
        "default"] == "None"
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    assert resolve_source(None) == "exercises" and Workbook(None).source == "exercises"
    monkeypatch.setenv(SOURCE_ENV, "solutions")
    assert resolve_source(None) == "solutions" and resolve_source("exercises") == "exercises"
    assert Workbook(None).from_environment and not Workbook("solutions").from_environment


def test_the_runner_passes_the_worked_answers_unless_told_otherwise(tmp_path, monkeypatch):
    import papermill as pm
    seen = {}

    def fake_execute(path, output, parameters, **kwargs):
        seen[Path(path).stem] = parameters
        nr.save_results(Path(path).stem, {"x": 1}, parameters["results_dir"], data="demo")

    monkeypatch.setattr(pm, "execute_notebook", fake_execute)
    nr.run_notebooks(tmp_path, only=["03", "05"], log=lambda *_: None)
    assert seen["03_attention_and_minbert"]["exercise_source"] == "solutions"
    assert "implementations" not in seen["03_attention_and_minbert"]  # only what a notebook declares
    assert seen["05_sentiment_finetuning"]["implementations"] == "solutions"
    nr.run_notebooks(tmp_path, only=["03"], log=lambda *_: None, exercise_source="exercises")
    assert seen["03_attention_and_minbert"]["exercise_source"] == "exercises"


def test_the_committed_outputs_are_the_worked_answers_and_say_so():
    """nbval runs the committed notebooks as they are, with MTKIT_EXERCISE_SOURCE=solutions (notebooks/conftest.py);
    the stored outputs come from the same setting, and every check cell says whose answers it checked."""
    conftest = (REPO / "notebooks" / "conftest.py").read_text()
    assert 'os.environ["MTKIT_EXERCISE_SOURCE"] = "solutions"' in conftest
    for name in ("03_attention_and_minbert", "04_adamw", "06_sentence_bert", "08_layerwise_lr_decay",
                 "09_gradient_surgery"):
        nb = nbformat.read(str(REPO / "notebooks" / f"{name}.ipynb"), as_version=4)
        cells = [c for c in nb.cells if c.cell_type == "code" and "book.check(" in c.source]
        assert cells, name
        for cell in cells:
            assert "nbval-ignore-output" not in cell.metadata.get("tags", []), f"{name}: check outputs are compared"
            text = "".join(o.get("text", "") for o in cell.outputs)
            assert "in solutions/" in text and "passed all" in text, (name, text)
            assert "These are the worked answers" in text and "check yours" in text, (name, text)


def test_results_record_whose_code_was_checked_and_the_outcome(tmp_path):
    from mtkit.exercises.checks import Workbook
    book = Workbook("solutions", verbose=False)
    book.check("pcgrad", "project_conflicting")
    book.check("pcgrad", "pcgrad")
    path = nr.save_results("nb", {}, tmp_path, checks=book.record())
    assert json.loads(path.read_text())["checks"] == {"pcgrad": {
        "source": "solutions", "file": "solutions/pcgrad.py", "outcome": "passed",
        "functions": {"project_conflicting": "passed", "pcgrad": "passed"}}}


# ------------------------------------------------------------------------------------------------ learner edits
def _learner_checkout(tmp_path: Path) -> Path:
    """A copy of what the sync tests read (tests/test_exercises.py, solutions/, exercises/), with one exercise
    written the way a learner would: its stub replaced by a working answer."""
    import shutil
    root = tmp_path / "checkout"
    (root / "tests").mkdir(parents=True)
    (root / "mtkit").mkdir()  # find_root looks for solutions/ beside mtkit/
    shutil.copy(REPO / "tests" / "test_exercises.py", root / "tests" / "test_exercises.py")
    shutil.copytree(REPO / "solutions", root / "solutions")
    (root / "exercises").mkdir()
    generate(root / "solutions", root / "exercises")
    exercise = root / "exercises" / "mean_pooling.py"
    stub = "    # YOUR CODE HERE\n    raise NotImplementedError()"
    answer = ("    keep = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)\n"
              "    return (last_hidden_state * keep).sum(1) / keep.sum(1).clamp(min=1.0)")
    exercise.write_text(exercise.read_text().replace(stub, answer))
    return root


def _pytest(args, cwd, ci: str | None):
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def test_an_edited_exercise_is_yours_on_a_learners_machine_and_a_failure_in_ci(tmp_path):
    root = _learner_checkout(tmp_path)
    learner = _pytest(["tests/test_exercises.py"], root, ci=None)
    assert learner.returncode == 0, learner.stdout[-3000:]
    assert "exercises/mean_pooling.py is yours (edited), not checked for sync" in learner.stdout
    assert " failed" not in learner.stdout
    ci = _pytest(["tests/test_exercises.py", "-x"], root, ci="true")
    assert ci.returncode == 1 and "exercises/mean_pooling.py was edited" in ci.stdout, ci.stdout[-3000:]


def _tiny_kit_notebooks(tmp_path: Path) -> Path:
    """notebooks/ with the kit's conftest and sanitizers and one small notebook, built and stamped like the
    kit's (its name is one of the kit's so that only the fingerprint decides)."""
    import shutil

    from mtkit.teach.notebook_outputs import stamp
    folder = tmp_path / "kit" / "notebooks"
    folder.mkdir(parents=True)
    for name in ("conftest.py", "sanitize.cfg"):
        shutil.copy(REPO / "notebooks" / name, folder / name)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)"), nbformat.v4.new_code_cell("'the kit'")]
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    nb.cells[1].outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "'the kit'"},
                                                  execution_count=2)]
    for i, cell in enumerate(nb.cells):
        cell.execution_count = i + 1
        cell.id = f"c{i}"
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    stamp(nb)
    nbformat.write(nb, str(folder / "01_setup_and_data.ipynb"))
    return folder


@pytest.mark.slow
def test_a_notebook_saved_by_the_learner_is_skipped_with_a_message_except_in_ci(tmp_path):
    folder = _tiny_kit_notebooks(tmp_path)
    args = ["--nbval", "notebooks", "--nbval-current-env", "--nbval-sanitize-with", "notebooks/sanitize.cfg"]
    assert _pytest(args, folder.parent, ci=None).returncode == 0  # as built: compared, and it passes
    path = folder / "01_setup_and_data.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[0].outputs[0].text = "41\n"  # as if the learner ran it with other code and saved it
    nbformat.write(nb, str(path))
    (folder / "01_setup_and_data-Copy1.ipynb").write_text(path.read_text())  # and saved a copy beside it
    learner = _pytest(args, folder.parent, ci=None)
    assert learner.returncode == 0, learner.stdout[-3000:]
    assert "01_setup_and_data.ipynb: its outputs were changed since the kit stored them" in learner.stdout
    assert "01_setup_and_data-Copy1.ipynb is not one of the kit's notebooks" in learner.stdout
    assert "passed" not in learner.stdout.splitlines()[-1]  # everything was skipped
    ci = _pytest(args, folder.parent, ci="true")
    assert ci.returncode == 1 and "failed" in ci.stdout.splitlines()[-1], ci.stdout[-3000:]


def test_the_fingerprint_sees_changed_outputs_only(tmp_path):
    from mtkit.teach.notebook_outputs import changed_locally, outputs_fingerprint, stored_fingerprint
    path = _tiny_kit_notebooks(tmp_path) / "01_setup_and_data.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    assert changed_locally(path) is None and stored_fingerprint(nb) == outputs_fingerprint(nb)
    nb.cells[0].metadata["collapsed"] = True  # a front end's view state is not an output
    nb.metadata["language_info"] = {"name": "python", "version": "3.12"}
    nbformat.write(nb, str(path))
    assert changed_locally(path) is None
    nb.cells[1].execution_count = 7  # re-run
    nbformat.write(nb, str(path))
    assert "outputs were changed" in changed_locally(path)
    del nb.metadata["mtkit"]  # built before fingerprints: compared as always
    nbformat.write(nb, str(path))
    assert changed_locally(path) is None
    path.write_text("{not json")
    assert "cannot be read" in changed_locally(path)


def test_every_committed_notebook_matches_the_outputs_fingerprint_it_carries():
    from mtkit.teach.notebook_outputs import outputs_fingerprint, stored_fingerprint
    for name in nr.NOTEBOOKS:
        nb = nbformat.read(str(REPO / "notebooks" / f"{name}.ipynb"), as_version=4)
        stored = stored_fingerprint(nb)
        assert stored is None or stored == outputs_fingerprint(nb), f"{name}: rebuild it (tools/build_notebooks.py)"
