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

from mtkit import notebook_runner as nr
from mtkit.checks import EXERCISES
from mtkit.exercises import generate, is_pristine

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
    from mtkit.checks import Workbook
    from mtkit.exercises import SOURCE_ENV, resolve_source
    import papermill as pm
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
    from mtkit.checks import Workbook
    book = Workbook("solutions", verbose=False)
    book.check("pcgrad", "project_conflicting")
    book.check("pcgrad", "pcgrad")
    path = nr.save_results("nb", {}, tmp_path, checks=book.record())
    assert json.loads(path.read_text())["checks"] == {"pcgrad": {
        "source": "solutions", "file": "solutions/pcgrad.py", "outcome": "passed",
        "functions": {"project_conflicting": "passed", "pcgrad": "passed"}}}
