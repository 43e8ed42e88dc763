"""From a fresh clone: `mtkit data fetch --dest ./data` run in the project root is found by notebook 07 running
with notebooks/ as its working directory (the data lookup is relative to the project root, not to the working
directory). The notebook runs its parameters and setup cells as committed, then loads every file it found.

The files come from a local HTTP server (tests/_fetch_server.py), never the network: the demo set's CS224N-format
files under the real names, without the demo set's marker, so the notebook sees them as the CS224N data. The clone
is the committed state of this checkout; its own mtkit is the one imported (PYTHONPATH), in the CLI and the kernel.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _fetch_server import serve

from mtkit.data.fetch import DEFAULT_FILES

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "07_multitask_training"


@pytest.fixture
def served_files(tmp_path):
    """The nine CS224N file names with demo-set content (small), and nothing that marks them as the demo set."""
    from mtkit.data.demo import write_demo_data
    folder = write_demo_data(tmp_path / "served", seed=3, sizes={"train": 60, "dev": 40, "test": 10})
    files = {name: (folder / name).read_bytes() for name in DEFAULT_FILES}
    with serve(files) as (url, handler):
        yield url, handler


def _environment(clone: Path, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MTKIT_DATA", "PYTHONPATH")}
    env |= {"PYTHONPATH": str(clone), "MTKIT_CACHE": str(tmp_path / "cache"), "PYTHONHASHSEED": "0"}
    env.pop("MPLBACKEND", None)
    return env


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_fetched_data_is_found_by_notebook_07_running_in_notebooks(served_files, tmp_path, monkeypatch):
    import papermill
    url, handler = served_files
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    assert not (clone / "data").exists()
    env = _environment(clone, tmp_path)

    # 1. the README's command, from the project root (plus the local server and no progress bars)
    fetched = subprocess.run([sys.executable, "-m", "mtkit", "data", "fetch", "--dest", "./data", "--base-url", url,
                              "--no-progress"], cwd=clone, env=env, capture_output=True, text=True, timeout=120)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert sorted(p.name for p in (clone / "data").glob("*.csv")) == sorted(DEFAULT_FILES)
    assert {name for name, _ in handler.requests} == set(DEFAULT_FILES)

    # 2. notebook 07 as a learner runs it: working directory notebooks/, data_dir left at None (the search)
    for key, value in env.items():  # the kernel inherits this process's environment
        monkeypatch.setenv(key, value)
    for key in ("MTKIT_DATA", "MPLBACKEND"):
        monkeypatch.delenv(key, raising=False)
    from mtkit.teach.notebook_runner import profile_parameters
    parameters = profile_parameters("small", NOTEBOOK) | {"results_dir": str(tmp_path / "results")}
    assert "data_dir" not in parameters
    notebook = _data_part(clone / "notebooks" / f"{NOTEBOOK}.ipynb", tmp_path / f"{NOTEBOOK}-data-part.ipynb")
    out = tmp_path / f"{NOTEBOOK}-executed.ipynb"
    papermill.execute_notebook(str(notebook), str(out), parameters=parameters, cwd=str(clone / "notebooks"),
                               kernel_name="python3", progress_bar=False, log_output=False, execution_timeout=300)

    printed = "".join("".join(o.get("text", "")) for cell in json.loads(out.read_text())["cells"]
                      for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    data = (clone / "data").resolve()
    assert f"Data: the CS224N data in {data} (the project's data folder)" in printed, printed[-3000:]
    rows = json.loads(printed.split("ROWS ", 1)[1].splitlines()[0])
    assert rows == {"kind": "real", "path": str(data),
                    **{f"{task}-{split}": n for task in ("sst", "para", "sts") for split, n in (("train", 60),
                                                                                              ("dev", 40))}}


def _data_part(source: Path, target: Path) -> Path:
    """Notebook 07 up to the cell that finds the data (its parameters cell included), then one cell that loads
    every task's train and dev file from the folder found. The notebook's training cells take minutes; finding
    and reading the data is what this test is about."""
    import nbformat
    nb = nbformat.read(source, as_version=4)
    finder = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and "data_source(" in cell.source)
    nb.cells = nb.cells[:finder + 1] + [nbformat.v4.new_code_cell(
        "import json\n"
        "from mtkit.data import default_tasks, load_split\n"
        "rows = {'kind': source.kind, 'path': str(source.path)}\n"
        "for spec in default_tasks():\n"
        "    for split in ('train', 'dev'):\n"
        "        rows[f'{spec.name}-{split}'] = len(load_split(spec, source.path, split)[0])\n"
        "print('ROWS', json.dumps(rows))")]
    nbformat.write(nb, target)
    return target
