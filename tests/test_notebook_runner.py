"""The runner behind ``make demo`` is quiet, and holds every notebook to its time budget.

- One notebook run through the runner's command line writes nothing on stderr: no kernel warning (unencrypted
  TCP), no papermill parse warning, no Python warning (run with ``PYTHONWARNINGS=default``, so deprecations
  show too), no stray kernel log line.
- Every notebook's parameters cell parses without a papermill warning, and every parameter gets its default.
- The per-notebook budget (``--max-seconds``, 120 s for the demo profile) fails the run with a message naming
  the notebook; tested on fake runs, no kernel needed.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtkit.teach import notebook_runner as nr

REPO = Path(__file__).resolve().parents[1]


def test_one_notebook_through_the_runner_prints_nothing_on_stderr(tmp_path):
    private_tmp = tmp_path / "tmp"  # this run's own temporary folder: other runs' kernels cannot be counted
    private_tmp.mkdir()
    env = dict(os.environ, PYTHONWARNINGS="default", TMPDIR=str(private_tmp))
    env.pop("MTKIT_DATA", None)
    result = subprocess.run([sys.executable, "-m", "mtkit.teach.notebook_runner", "--out", str(tmp_path / "out"), "--only", "01",
                             "--profile", "small"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", f"unexpected output on stderr:\n{result.stderr}"
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("[runner] 01")] == [
        next(line for line in lines if line.startswith("[runner] 01_setup_and_data: ok in "))], \
        "one line per notebook"
    assert (tmp_path / "out" / "logs" / "01_setup_and_data.kernel.log").is_file()  # the kernel's own log is kept
    record = json.loads((tmp_path / "out" / "summary.json").read_text())["notebooks"][0]
    if sys.platform != "win32":  # getrusage
        assert record["cpu_seconds"] > 0.5, "the kernel's CPU time is recorded beside its runtime"
    assert not list(private_tmp.glob("mtkit-kernel-*")), \
        "the kernel's sockets are removed at shutdown"


def test_the_kernels_use_private_ipc_sockets_where_zmq_has_them(tmp_path):
    import zmq
    if not zmq.has("ipc"):
        pytest.skip("this ZeroMQ has no IPC transport (Windows); the runner uses TCP there")
    km = nr.kernel_manager_class(tmp_path / "k.log")(kernel_name="python3")
    assert km.transport == "ipc"
    assert os.path.isabs(km.ip) and Path(km.ip).parent.name.startswith("mtkit-kernel-")
    other = nr.kernel_manager_class()(kernel_name="python3")
    folders = {Path(km.ip).parent, Path(other.ip).parent}
    assert len(folders) == 2, "each kernel gets its own socket folder"
    for folder in folders:
        shutil.rmtree(folder)


def test_the_kernel_log_filter_keeps_everything_but_the_known_shutdown_line(tmp_path):
    log = tmp_path / "k.log"
    log.write_text("[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.\n\n"
                   "[IPKernelApp] WARNING | something new\n")
    assert nr.unexpected_kernel_log(log) == ["[IPKernelApp] WARNING | something new"]
    assert nr.unexpected_kernel_log(tmp_path / "missing.log") == []


def test_every_parameters_cell_parses_without_a_papermill_warning(caplog):
    import papermill as pm
    caplog.set_level(logging.WARNING, logger="papermill")
    for name in nr.NOTEBOOKS:
        declared = pm.inspect_notebook(str(REPO / "notebooks" / f"{name}.ipynb"))
        assert all(p["default"] not in (None, "") for p in declared.values()), name
    assert not [r.getMessage() for r in caplog.records], "papermill could not parse a parameters cell"


def _run(name, seconds, status="ok", retried=False):
    return nr.NotebookRun(name, status, seconds, {}, f"{name}.ipynb", {"data": "demo", "metrics": {}},
                          extra={"retried": retried, "cpu_seconds": 200.0})


def test_the_time_budget_names_each_notebook_over_it():
    runs = [_run("01_setup_and_data", 8.0), _run("10_experiments_and_error_analysis", 120.8),
            _run("09_gradient_surgery", 130.0, retried=True), _run("07_multitask_training", 500.0, "skipped")]
    assert nr.time_limit_failures(runs, None) == []
    messages = nr.time_limit_failures(runs, 120)
    assert messages == ["10_experiments_and_error_analysis took 120.8 s, over the budget of 120 s per notebook",
                        "09_gradient_surgery took 130.0 s, over the budget of 120 s per notebook (it was retried "
                        "after a timeout)"]
    assert nr.time_limit_failures(runs[:1], 120) == []


def test_the_runner_exits_non_zero_when_a_notebook_is_over_budget(tmp_path, monkeypatch, capsys):
    seconds = {"01_setup_and_data": 30.0, "02_tokens_and_embeddings": 121.0}
    monkeypatch.setattr(nr, "run_notebooks", lambda out, profile, data_dir, only, timeout, **kw: [
        _run(name, seconds[name]) for name in nr.select_notebooks(only)])
    assert nr.PROFILE_LIMITS["demo"]["max_seconds"] == 120
    assert nr.main(["--out", str(tmp_path), "--only", "01"]) == 0
    assert nr.main(["--out", str(tmp_path), "--only", "01", "--only", "02"]) == 1
    err = capsys.readouterr().err
    assert "02_tokens_and_embeddings took 121.0 s, over the budget of 120 s per notebook" in err
    assert "01_setup_and_data" not in err
    summary = (tmp_path / "summary.md").read_text()
    assert "| 02_tokens_and_embeddings | ok | 121.0 | 200.0 |" in summary
    assert "over it: 02_tokens_and_embeddings" in summary
    assert nr.main(["--out", str(tmp_path), "--only", "02", "--max-seconds", "0"]) == 0  # 0: no budget
    assert nr.main(["--out", str(tmp_path), "--only", "02", "--profile", "small"]) == 0  # no budget there
    assert nr.main(["--out", str(tmp_path), "--only", "01", "--max-seconds", "20"]) == 1


def test_each_profile_has_a_cell_timeout_and_the_small_one_is_short():
    assert set(nr.PROFILE_LIMITS) == set(nr.PROFILES)
    assert nr.PROFILE_LIMITS["small"]["cell_timeout"] <= 120, "a hung kernel must not stall the tests for long"
    assert all(limits["cell_timeout"] > 0 for limits in nr.PROFILE_LIMITS.values())


def test_a_notebook_that_times_out_twice_says_which_cell_timed_out(tmp_path, monkeypatch):
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError

    def fake_execute(path, output, parameters, **kwargs):
        raise CellTimeoutError("A cell timed out while it was being executed, after 600 seconds.\n"
                               "Here is a preview of the cell contents:\n-------------------\nfit()\n"
                               "-------------------\n")

    monkeypatch.setattr(pm, "execute_notebook", fake_execute)
    [run] = nr.run_notebooks(tmp_path, only=["01"], log=lambda *_: None)
    assert run.status == "failed" and run.extra["retried"]
    assert run.error == "CellTimeoutError: A cell timed out while it was being executed, after 600 seconds."


def test_kernels_wait_passively_unless_told_otherwise(monkeypatch):
    """OpenMP threads that sleep when idle: spinning ones slowed the notebooks 2-3x on a shared CPU."""
    from mtkit.teach.notebook_runner import kernel_environment
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert kernel_environment()["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert kernel_environment()["OMP_WAIT_POLICY"] == "ACTIVE"
