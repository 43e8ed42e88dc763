"""Run every notebook headless with papermill, and summarise what each one measured.

``python -m mtkit.teach.notebook_runner --out runs/demo`` (``make demo``) executes ``notebooks/NN_*.ipynb`` in order
with the parameters of a *profile*, writes each executed notebook to the output folder, and collects the
small JSON of key metrics every notebook writes (``<out>/results/<notebook>.json``, through
:func:`save_results`) into ``summary.json`` and ``summary.md``, with each notebook's runtime.

Profiles (``--profile``):

- ``demo`` (default): the notebooks' own defaults, sized for the demo set on a 2-core laptop CPU (about a
  minute each).
- ``compact``: the real CS224N files on a CPU: the defaults plus subset limits where a default reads a whole
  file (Quora alone has 141k training and 20k dev pairs), so the set stays within minutes per notebook.
- ``small``: tiny subsets and one short epoch; what the tests use to check that everything runs.
- ``full``: full-size settings for a GPU and the real data (``make reproduce``).

``--data-dir DIR`` points every notebook at the CS224N files; without it the notebooks use mtkit's demo set
(``data_dir="demo"``). The notebooks check and use the worked answers (``exercise_source="solutions"``, and
``implementations="solutions"`` in notebook 05), so the run shows the kit working end to end;
``--exercise-source exercises`` checks and trains with your own exercises instead (a notebook whose exercise you
have not written yet says so and goes on with the worked answer). ``--only 03`` (repeatable; a number or a name part) runs a subset. ``--docs FILE
--section NAME`` also writes the summary table into a section of a Markdown file (docs/NOTEBOOKS.md), between
markers, so the documentation's numbers come from a run and are never typed by hand.

Time limits (``PROFILE_LIMITS``): every profile has a per-cell timeout (``--timeout``), after which a hung
notebook is stopped and retried once, and the ``demo`` profile a per-notebook budget (``--max-seconds``, 120 s):
a notebook over it fails the run with a message naming it, so the notebooks stay within two minutes each on a
2-core laptop CPU.

The kernels run over the IPC transport (Unix sockets in a private temporary folder) where ZeroMQ supports it:
nothing listens on a network port, there are no port races between kernels started side by side, and the kernel
has no reason to warn about unencrypted TCP. Where IPC is not available (Windows), TCP with CurveZMQ encryption
is used when the kernel declares support for it. Each kernel's own log (its stderr: ipykernel's messages, not the
cells' output) goes to ``<out>/logs/<notebook>.kernel.log``; the runner repeats on stderr every line of it that a
healthy kernel does not write (``KNOWN_KERNEL_LOG_LINES``).

The helpers notebooks call (:func:`data_source`, :func:`save_results`) live here too, so that a notebook
and the runner agree on where results go.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from mtkit.teach.kernels import (
    _children_cpu_seconds,
    _load_average,
    kernel_environment,
    kernel_manager_class,
    unexpected_kernel_log,
)
from mtkit.teach.notebook_helpers import data_source, results_dir_default, save_results
from mtkit.teach.notebook_summary import NotebookRun, summary_table, time_limit_failures, update_docs, write_summary
from mtkit.util.paths import find_root

__all__ = ["NOTEBOOKS", "PROFILES", "PROFILE_LIMITS", "data_source", "save_results", "results_dir_default",
           "profile_parameters", "run_notebooks", "NotebookRun", "time_limit_failures", "kernel_manager_class",
           "unexpected_kernel_log", "write_summary", "update_docs", "main"]

NOTEBOOKS = [
    "01_setup_and_data",
    "02_tokens_and_embeddings",
    "03_attention_and_minbert",
    "04_adamw",
    "05_sentiment_finetuning",
    "06_sentence_bert",
    "07_multitask_training",
    "08_layerwise_lr_decay",
    "09_gradient_surgery",
    "10_experiments_and_error_analysis",
]

# Parameters per profile: "*" applies to every notebook, a notebook's name overrides. Only names a notebook
# declares in its `parameters` cell are passed to it.
PROFILES: dict[str, dict[str, dict]] = {
    "demo": {"*": {}},
    "small": {
        "*": dict(train_limit=48, dev_limit=48, epochs=1, batch_size=16, max_length=32, progress=False),
        "04_adamw": dict(toy_steps=60),
        # enough steps for fine-tuning to beat the majority baseline, which the notebook asserts
        "05_sentiment_finetuning": dict(train_limit=160, dev_limit=100, epochs=2),
        "07_multitask_training": dict(train_limit=32, dev_limit=32),
        "09_gradient_surgery": dict(train_limit=32, dev_limit=32, telemetry_every=1),
        "10_experiments_and_error_analysis": dict(train_limit=32, dev_limit=32),
    },
    # The CS224N files on a CPU: larger training subsets than the demo defaults (real text is harder to learn),
    # and dev subsets of 1000 per task. The dev files are not shuffled (the first 500 SST dev sentences are 46%
    # class 3), so a subset much smaller than the file would give a biased majority baseline.
    "compact": {
        "*": dict(dev_limit=1000),
        "04_adamw": dict(train_limit=2000),
        "05_sentiment_finetuning": dict(train_limit=2000, eval_every=50),
        "06_sentence_bert": dict(train_limit=1000),
        "07_multitask_training": dict(train_limit=1000, eval_every=100),
        "08_layerwise_lr_decay": dict(train_limit=1000),
        "09_gradient_surgery": dict(train_limit=400),
        "10_experiments_and_error_analysis": dict(train_limit=200, eval_every="epoch"),
    },
    "full": {
        "*": dict(train_limit=None, dev_limit=None, epochs=3, batch_size=32, max_length=128),
        "01_setup_and_data": dict(train_limit=None),
        "04_adamw": dict(toy_steps=500),
        # Quora's 141k pairs would dominate the budget; a 20k subset keeps the multitask runs to minutes.
        "07_multitask_training": dict(train_limit=20000, epochs=2),
        "08_layerwise_lr_decay": dict(train_limit=8544, epochs=3),
        "09_gradient_surgery": dict(train_limit=8000, epochs=1, telemetry_every=10),
        # the reports' own learning rates (tuned for full data) instead of the short-budget overrides
        "10_experiments_and_error_analysis": dict(train_limit=6000, epochs=2, lr=None, head_lr=None,
                                                  eval_every="epoch"),
    },
}


# Per profile: the per-cell timeout in seconds (a cell that takes longer is stopped and the notebook retried once:
# a hung kernel must not stall a run, or CI, for long) and the per-notebook budget checked after the run (None: no
# budget). The demo profile is the one a learner runs on a 2-core laptop CPU; every notebook stays well under its
# 120 s there, and the cell timeout is far above any cell's time even on a machine busy with other work (it is
# there for a kernel that hangs, not for a slow one). The small profile (the tests) runs tiny subsets whose
# slowest cell takes seconds.
PROFILE_LIMITS: dict[str, dict[str, float | None]] = {
    "demo": {"cell_timeout": 600, "max_seconds": 120},
    "small": {"cell_timeout": 120, "max_seconds": None},
    "compact": {"cell_timeout": 3600, "max_seconds": None},
    "full": {"cell_timeout": 7200, "max_seconds": None},
}


def notebooks_dir() -> Path:
    return find_root() / "notebooks"


def select_notebooks(only: list[str] | None) -> list[str]:
    if not only:
        return list(NOTEBOOKS)
    chosen = [nb for nb in NOTEBOOKS if any(nb.startswith(o.zfill(2)) or o in nb for o in only)]
    if not chosen:
        raise ValueError(f"--only {only} matches no notebook; the notebooks are {NOTEBOOKS}.")
    return chosen


def profile_parameters(profile: str, notebook: str) -> dict:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {sorted(PROFILES)}.")
    table = PROFILES[profile]
    return dict(table.get("*", {})) | dict(table.get(notebook, {}))


def run_notebooks(out: str | Path, profile: str = "demo", data_dir: str | None = None,
                  only: list[str] | None = None, timeout: int | None = None, kernel: str = "python3",
                  extra_parameters: dict | None = None, log=print, progress: bool = False,
                  exercise_source: str = "solutions") -> list[NotebookRun]:
    """Execute the chosen notebooks in order with papermill; returns one :class:`NotebookRun` each.

    ``timeout``: seconds per cell (None: the profile's, ``PROFILE_LIMITS``); a cell over it, or a kernel that
    dies, stops the notebook, which is retried once. ``progress``: a progress bar per notebook (on stderr).
    ``exercise_source`` is passed as the ``exercise_source`` and ``implementations`` parameters (whose answers
    are checked and used): the worked answers by default, ``"exercises"`` for yours.
    A failing notebook is recorded (its error and the executed copy up to the failure) and the next one runs.
    """
    import papermill as pm  # imported here: papermill is needed only when notebooks run

    if timeout is None:
        timeout = int(PROFILE_LIMITS.get(profile, PROFILE_LIMITS["demo"])["cell_timeout"])
    out = Path(out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    source_dir = notebooks_dir()
    runs: list[NotebookRun] = []
    saved_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(kernel_environment())  # kernels inherit the runner's environment
    try:
        for name in select_notebooks(only):
            path = source_dir / f"{name}.ipynb"
            executed = out / f"{name}.ipynb"
            if not path.is_file():
                runs.append(NotebookRun(name, "skipped", 0.0, {}, str(executed), error=f"{path} does not exist"))
                log(f"[runner] {name}: skipped ({path} does not exist)")
                continue
            declared = pm.inspect_notebook(str(path))
            wanted = profile_parameters(profile, name) | {"exercise_source": exercise_source,
                                                          "implementations": exercise_source}
            wanted |= dict(extra_parameters or {})
            wanted |= {"data_dir": data_dir if data_dir else "demo", "results_dir": str((out / "results").resolve())}
            parameters = {k: v for k, v in wanted.items() if k in declared}
            results_file = out / "results" / f"{name}.json"
            if results_file.exists():
                results_file.unlink()
            kernel_log = out / "logs" / f"{name}.kernel.log"
            if kernel_log.exists():
                kernel_log.unlink()
            start, cpu_start = time.perf_counter(), _children_cpu_seconds()
            status, error, retried = "ok", None, False
            for attempt in range(2):
                try:
                    bar = {"desc": name, "leave": False, "file": sys.stderr} if progress else False
                    pm.execute_notebook(str(path), str(executed), parameters=parameters, kernel_name=kernel,
                                        cwd=str(source_dir), progress_bar=bar, log_output=False,
                                        execution_timeout=timeout, start_timeout=120,
                                        kernel_manager_class=kernel_manager_class(kernel_log))
                    status, error = "ok", None
                except Exception as err:  # PapermillExecutionError, a dead kernel, a timeout: record and go on
                    status = "failed"
                    # A cell that exceeds the timeout, or a kernel that dies, is retried once: a stuck kernel
                    # (a lost message) should not sink a whole run. A Python error in a cell is not retried.
                    hung = any(word in type(err).__name__ for word in ("Timeout", "DeadKernel"))
                    lines = [line for line in str(err).strip().splitlines() if line.strip("- ")]
                    # a cell's error ends with its exception; a timeout starts with what timed out, then the cell
                    error = f"{type(err).__name__}: {(lines[0] if hung else lines[-1]) if lines else err}"
                    if hung and attempt == 0:
                        retried = True
                        log(f"[runner] {name}: {error}; retrying once")
                        continue
                break
            seconds = time.perf_counter() - start
            cpu = _children_cpu_seconds()
            cpu = None if cpu is None or cpu_start is None else cpu - cpu_start
            results = None
            if results_file.is_file():
                results = json.loads(results_file.read_text(encoding="utf-8"))
            elif status == "ok":
                status, error = "failed", f"the notebook wrote no results file ({results_file})"
            runs.append(NotebookRun(name, status, seconds, parameters, str(executed), results, error,
                                    extra={"retried": retried, "cpu_seconds": cpu, "load": _load_average()}))
            for line in unexpected_kernel_log(kernel_log):  # the kernel's own log: shown, and kept in <out>/logs
                print(f"[kernel {name}] {line}", file=sys.stderr)
            shown = ", ".join(f"{k}={v}" for k, v in parameters.items() if k not in ("results_dir", "data_dir"))
            log(f"[runner] {name}: {status} in {seconds:.1f} s" + (f" (cpu {cpu:.1f} s)" if cpu is not None else "")
                + (f" ({shown})" if shown else "")
                + (f" ({error})" if error else ""))
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtkit.teach.notebook_runner",
                                     description="Run every notebook with papermill and summarise their metrics.")
    parser.add_argument("--out", required=True, help="output folder (executed notebooks, results/, summary.*)")
    parser.add_argument("--profile", default="demo", choices=sorted(PROFILES),
                        help="parameter set: demo (the notebooks' defaults), compact (real data on a CPU), "
                             "small (tests), full (real data on a GPU)")
    parser.add_argument("--data-dir", default=None, help="folder of the CS224N files (default: the demo set)")
    parser.add_argument("--only", action="append", default=None,
                        help="run only notebooks whose number or name matches (repeatable)")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds per cell before giving up (a notebook that times out is retried once); "
                             "default: the profile's (demo 600, small 120, compact 3600, full 7200)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="fail when a notebook runs longer than this; default: 120 for the demo profile, no "
                             "limit for the others; 0 turns the check off")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="a progress bar per notebook on stderr (default: when stderr is a terminal)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override one parameter for every notebook (value parsed as JSON when it can be)")
    parser.add_argument("--exercise-source", default="solutions",
                        help="whose exercises the notebooks check and train with: solutions (the worked answers, "
                             "the default), exercises (yours) or a folder")
    parser.add_argument("--docs", default=None, help="also write the table into this Markdown file")
    parser.add_argument("--section", default=None, help="the section name in --docs (default: from the profile)")
    args = parser.parse_args(argv)

    extra = {}
    for name, value in args.parameter:
        try:
            extra[name] = json.loads(value)
        except json.JSONDecodeError:
            extra[name] = value
    if args.data_dir and not Path(args.data_dir).is_dir():
        print(f"mtkit.teach.notebook_runner: --data-dir {args.data_dir} is not a folder. Point it at the folder holding "
              "ids-sst-*.csv, quora-*.csv and sts-*.csv (`mtkit data fetch --dest ./data` downloads them).",
              file=sys.stderr)
        return 2
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    max_seconds = args.max_seconds if args.max_seconds is not None else PROFILE_LIMITS[args.profile]["max_seconds"]
    max_seconds = max_seconds or None  # 0: no budget
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        runs = run_notebooks(args.out, args.profile, data_dir, args.only, args.timeout, extra_parameters=extra,
                             progress=progress, exercise_source=args.exercise_source)
    except ValueError as err:
        print(f"mtkit.teach.notebook_runner: {err}", file=sys.stderr)
        return 2
    json_path, md_path = write_summary(runs, args.out, args.profile, data_dir, max_seconds)
    print(summary_table(runs))
    print(f"[runner] summary: {md_path} and {json_path}")
    over = time_limit_failures(runs, max_seconds)
    for message in over:
        print(f"mtkit.teach.notebook_runner: {message}. Each notebook must run within {max_seconds:g} s on a 2-core CPU "
              f"with the {args.profile} profile: make its defaults smaller, or measure on an idle machine.",
              file=sys.stderr)
    if args.docs:
        section = args.section or f"{args.profile} profile, {'CS224N data' if data_dir else 'demo data'}"
        command = "python -m mtkit.teach.notebook_runner " + shlex.join(argv if argv is not None else sys.argv[1:])
        update_docs(args.docs, section, runs, args.profile, data_dir, command)
        print(f"[runner] wrote the table into {args.docs} (section {section!r})")
    return 0 if all(r.status == "ok" for r in runs) and not over else 1


if __name__ == "__main__":
    raise SystemExit(main())