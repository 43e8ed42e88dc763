"""Docs that run: every shell command of README.md and docs/*.md is executed here, or skipped with its reason.

The commands are the lines of the fenced ``bash`` / ``sh`` blocks (comments stripped, ``\\`` continuations
joined). Each one must be in ``COMMANDS``, the explicit table below, as either

- ``Run``: executed in a temporary copy of the project (its ``.venv`` is the interpreter's environment running
  this test), with the small changes the entry names (a tiny encoder, the demo set, a few steps, a local server
  instead of the network), and its effect checked; or
- ``Skip``: not executed, with the reason (real data, a GPU, too long), which pytest prints (``-ra``). Where a
  cheap check exists (the make target exists, the arguments parse), it runs before the skip.

A command in the docs that the table does not list fails ``test_every_documented_command_is_in_the_table``, and
so does an entry whose command left the docs: the table cannot rot. A second test resolves every ``mtkit.``
dotted path (an importable module, or an attribute of one) and every ``mtkit/`` file path the same files name.
"""
from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}


# ------------------------------------------------------------------------------------------------ extraction
def _strip_comment(line: str) -> str:
    """The line without a trailing shell comment (a ``#`` at the start of a word, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def documented_commands() -> dict[str, list[str]]:
    """command -> where it appears (``file:line``), for every command line of the docs' shell blocks."""
    found: dict[str, list[str]] = {}
    for path in DOC_FILES:
        lines = path.read_text(encoding="utf-8").splitlines()
        fence, pending, start = None, "", 0
        for number, raw in enumerate(lines, start=1):
            stripped = raw.strip()
            if fence is None:
                if stripped.startswith("```"):
                    fence = stripped[3:].strip().split()[0].lower() if stripped[3:].strip() else ""
                continue
            if stripped.startswith("```"):
                fence = None
                continue
            if fence not in SHELL_BLOCKS:
                continue
            text = _strip_comment(raw).strip()
            if not pending:
                start = number
            if text.endswith("\\"):
                pending += text[:-1].strip() + " "
                continue
            command = " ".join((pending + text).split())
            pending = ""
            if command:
                found.setdefault(command, []).append(f"{path.relative_to(REPO)}:{start}")
    return found


# ------------------------------------------------------------------------------------------------ the workspace
class Workspace:
    """A copy of the project in a temporary folder, its ``.venv`` linked to this interpreter's environment."""

    def __init__(self, root: Path, cache: Path, url: str):
        self.root, self.url = root, url
        venv_bin = self.root / ".venv" / "bin"
        self.env = {k: v for k, v in os.environ.items() if k not in ("MTKIT_DATA", "PYTHONPATH", "MPLBACKEND")}
        self.env |= {"PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(root),
                     "MTKIT_CACHE": str(cache), "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
        self.done: set[str] = set()

    def sh(self, command: str, timeout: float = 300) -> str:
        done = subprocess.run(["bash", "-c", command], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"`{command}` exited with {done.returncode}:\n{output[-4000:]}"
        return output


def _copy_project(target: Path) -> Path:
    ignore = shutil.ignore_patterns(".venv", ".git", "runs", "artifacts", "data", "__pycache__", "*.egg-info",
                                    ".pytest_cache", "predictions", "*.tmp")
    shutil.copytree(REPO, target, ignore=ignore)  # copy2: modification times kept, so make sees setup as done
    venv = Path(sys.prefix)
    (target / ".venv").symlink_to(venv, target_is_directory=True)
    return target


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from _fetch_server import serve

    from mtkit.data.demo import write_demo_data
    from mtkit.data.fetch import DEFAULT_FILES
    base = tmp_path_factory.mktemp("docs-commands")
    served = write_demo_data(base / "served", seed=1, sizes={"train": 40, "dev": 24, "test": 8})
    with serve({name: (served / name).read_bytes() for name in DEFAULT_FILES}) as (url, _handler):
        yield Workspace(_copy_project(base / "project"), base / "cache", url)


# ------------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Run:
    how: Callable[[Workspace, str], None]  # runs the command (as adapted) in the workspace and checks its effect
    changes: str = "as written"  # what the test changes, printed with -v
    needs: tuple[str, ...] = ()  # documented commands that must have run first (in the same workspace)


@dataclass(frozen=True)
class Skip:
    reason: str
    check: Callable[[str], None] | None = None  # a cheap check made before skipping


# Small settings for every training command: the random 2-layer encoder, mtkit's demo set, three steps.
TINY_TRAINING = ("--data-dir demo --quiet --set encoder=tiny --set max_steps=3 --set train_limit=24 "
                 "--set dev_limit=16 --set max_length=32 --set eval_batch_size=16")


SPLIT_TRAIN_ROWS = 16  # the carve's "quora-train.csv=16000", scaled to the served files


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def _train(output_dir: str) -> Callable[[Workspace, str], None]:
    def how(ws: Workspace, command: str) -> None:
        if "--use_gpu" in command and not _cuda():  # --use_gpu asks for CUDA, which this machine lacks
            command = command.replace(" --use_gpu", "")
        out = ws.sh(f"{command} {TINY_TRAINING}")
        assert f"mtkit run in {output_dir}" in out, out[-2000:]
        assert (ws.root / output_dir / "best").is_dir() and (ws.root / output_dir / "history.jsonl").is_file()
    return how


def _fetch(ws: Workspace, command: str) -> None:
    from mtkit.data.fetch import DEFAULT_FILES
    out = ws.sh(f"{command} --base-url {ws.url} --no-progress")
    n = len(DEFAULT_FILES)  # a second fetch into the same folder finds the files complete
    assert f"downloaded {n}" in out or f"already complete {n}" in out, out
    assert sorted(p.name for p in (ws.root / "data").glob("*.csv")) == sorted(DEFAULT_FILES)


def _split(ws: Workspace, command: str) -> None:
    """The RESULTS carve, with the sizes scaled to the small fetched files (24 Quora dev rows here)."""
    import hashlib

    from mtkit.data.fetch import read_sums
    from mtkit.data.locate import find_data_dir
    assert "quora-train.csv=16000" in command
    shutil.rmtree(ws.root / "data" / "results", ignore_errors=True)  # each documented copy makes the folder anew
    ws.sh(command.replace("quora-train.csv=16000", f"quora-train.csv={SPLIT_TRAIN_ROWS}"))
    dest = ws.root / "data" / "results"
    source = find_data_dir(dest, allow_demo=False)  # the six train/dev files a protocol reads are all there
    assert source.kind == "real", source
    sums = read_sums(dest / "SHA256SUMS")
    assert {"quora-train.csv", "quora-dev.csv", "ids-sst-train.csv", "sts-dev.csv"} <= set(sums), sums
    for name, digest in sums.items():
        assert hashlib.sha256((dest / name).read_bytes()).hexdigest() == digest, name
    assert list(dest.glob("mtkit-split-*.json")), sorted(p.name for p in dest.iterdir())
    rows = {name: len((dest / name).read_text(encoding="utf-8").splitlines()) - 1
            for name in ("quora-train.csv", "quora-dev.csv")}
    served = len((ws.root / "data" / "quora-dev.csv").read_text(encoding="utf-8").splitlines()) - 1
    assert rows == {"quora-train.csv": SPLIT_TRAIN_ROWS, "quora-dev.csv": served - SPLIT_TRAIN_ROWS}, rows


def _evaluate(ws: Workspace, command: str) -> None:
    out = ws.sh(command)
    for task in ("sst", "para", "sts"):
        assert re.search(rf"^{task}: \w+ [\d.]+", out, re.M), out
    assert re.search(r"^overall: [\d.]+", out, re.M), out


def _predict(ws: Workspace, command: str) -> None:
    from mtkit.eval.metrics import read_predictions
    ws.sh(command)
    path = ws.root / "predictions" / "sst-test-output.csv"
    assert path.is_file() and len(read_predictions(path)) > 0
    assert (ws.root / "predictions" / "sts-dev-output.csv").is_file()  # the other files: ./predictions


def _export(ws: Workspace, command: str) -> None:
    """The export command as written (on the tiny run), then the folder is loaded by the library it is for."""
    import json
    words = shlex.split(command)
    out, fmt = words[words.index("--out") + 1], words[words.index("--format") + 1]
    shutil.rmtree(ws.root / out, ignore_errors=True)  # a documented command run twice writes a fresh folder
    printed = ws.sh(command)
    assert "exporting best/step-" in printed, printed
    folder = ws.root / out
    assert json.loads((folder / "config.json").read_text())["model_type"] == "bert"
    assert {"heads.safetensors", "heads.json", "README.md", "vocab.txt"} <= {p.name for p in folder.iterdir()}
    load = ("from sentence_transformers import SentenceTransformer as M; M(%r, device='cpu').encode(['a b'])"
            if fmt == "sentence-transformers" else "from transformers import AutoModel as M; M.from_pretrained(%r)")
    ws.sh(f"python -c {shlex.quote(load % out)}")


def _hub_client_has_upload(command: str) -> None:
    """The documented client is installed and has the subcommand: ``hf upload --help`` (nothing is uploaded)."""
    client = Path(sys.prefix) / "bin" / "hf"
    assert command.startswith(".venv/bin/hf upload ") and client.is_file(), client
    done = subprocess.run([str(client), "upload", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "REPO_ID" in done.stdout, done.stdout + done.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lab(ws: Workspace, command: str) -> None:
    """Start the documented JupyterLab command (no browser, a local port, a token) and check, through its REST
    API, that it is rooted at the project root with exercises/, notebooks/ in reach and opens notebook 01."""
    port, token = _free_port(), secrets.token_hex(8)
    options = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        options += " --allow-root"
    if command.startswith("make "):  # setup is done (-o: not remade), options through the Makefile's LAB_OPTIONS
        command = f"make -o .venv/.installed {command[5:]} LAB_OPTIONS={shlex.quote(options)}"
    else:
        command = f"{command} {options}"
    home = ws.root.parent / f"jupyter-{port}"
    env = ws.env | {"JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
                    "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
                    "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTER_PLATFORM_DIRS": "1"}
    log = open(ws.root.parent / f"lab-{port}.log", "w+")
    proc = subprocess.Popen(["bash", "-c", command], cwd=ws.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> dict:
        import json
        with urllib.request.urlopen(f"{base}{path}{'&' if '?' in path else '?'}token={token}", timeout=10) as r:
            return json.loads(r.read())

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                listing = get("/api/contents/?content=1")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"JupyterLab did not start ({command}):\n{log.read()[-3000:]}")
                time.sleep(0.5)
        names = {item["name"] for item in listing["content"]}
        assert {"exercises", "notebooks", "solutions", "mtkit"} <= names, names  # rooted at the project root
        assert get("/api/contents/exercises?content=0")["type"] == "directory"
        assert get("/api/contents/notebooks/01_setup_and_data.ipynb?content=0")["type"] == "notebook"
        opened = list((home / "runtime").glob("jpserver-file-to-run-*.html"))  # what the browser would open
        assert opened and f"{base}/lab/tree/notebooks/01_setup_and_data.ipynb" in opened[0].read_text(), opened
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _make_target_exists(command: str) -> None:
    """``make -n`` of the command's target: the target exists and its recipe expands (nothing is run)."""
    words = shlex.split(command)
    target = words[words.index("make") + 1]
    done = subprocess.run(["make", "-n", "-o", ".venv/.installed", target], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"make -n {target}: {done.stderr}"


def _runner_arguments(expected_only: list[str] | None, expected_extra: dict) -> Callable[[str], None]:
    """The notebook runner's command parses and reaches run_notebooks with these notebooks and parameters."""
    def check(command: str) -> None:
        from mtkit.teach import notebook_runner
        argv = shlex.split(command)[3:]  # after "python -m mtkit.teach.notebook_runner"
        seen = {}

        def record(out, profile, data_dir, only, timeout, extra_parameters, **options):
            seen.update(only=only, extra=extra_parameters, profile=profile)
            raise ValueError("dry run")

        original = notebook_runner.run_notebooks
        notebook_runner.run_notebooks = record
        try:
            assert notebook_runner.main(argv) == 2  # the recorder's ValueError
        finally:
            notebook_runner.run_notebooks = original
        assert seen["only"] == expected_only and seen["extra"] == expected_extra, seen
    return check


COMMANDS: dict[str, Run | Skip] = {
    # README.md
    "make demo": Skip("too long: runs all ten notebooks (about 10 minutes on 2 cores); the nbval half of make test "
                      "and tests/test_notebooks_papermill.py run them", _make_target_exists),
    "make test": Skip("the whole test suite, this test included", _make_target_exists),
    "make lab": Run(_lab, "--no-browser on a free local port with a token (LAB_OPTIONS); stopped after the check"),
    ".venv/bin/jupyter lab --ServerApp.root_dir=. notebooks/01_setup_and_data.ipynb":
        Run(_lab, "--no-browser on a free local port with a token; stopped after the check"),
    "MTKIT_DATA=/path/to/data make reproduce": Skip("needs the real CS224N data and a GPU (every notebook with full "
                                                    "parameters)", _make_target_exists),
    ".venv/bin/mtkit data fetch --dest ./data": Run(_fetch, "--base-url of a local server holding files in the "
                                                            "CS224N formats (no network), --no-progress"),
    ".venv/bin/mtkit train --fine-tune-mode full-model --lr 1e-5 --batch_size 32 --epochs 3 --use_gpu":
        Run(_train("runs/mtkit"), f"{TINY_TRAINING}; --use_gpu dropped without CUDA"),
    ".venv/bin/mtkit train --config examples/report_d.yaml --resume": Run(_train("runs/report_d"), TINY_TRAINING),
    ".venv/bin/mtkit evaluate runs/mtkit": Run(_evaluate, needs=(
        ".venv/bin/mtkit train --fine-tune-mode full-model --lr 1e-5 --batch_size 32 --epochs 3 --use_gpu",)),
    ".venv/bin/mtkit predict runs/mtkit --sst_test_out predictions/sst-test-output.csv": Run(_predict, needs=(
        ".venv/bin/mtkit train --fine-tune-mode full-model --lr 1e-5 --batch_size 32 --epochs 3 --use_gpu",)),
    ".venv/bin/mtkit export runs/mtkit --out exported/mtkit-st --format sentence-transformers": Run(_export, needs=(
        ".venv/bin/mtkit train --fine-tune-mode full-model --lr 1e-5 --batch_size 32 --epochs 3 --use_gpu",)),
    ".venv/bin/mtkit export runs/mtkit --out exported/mtkit-hf --format transformers": Run(_export, needs=(
        ".venv/bin/mtkit train --fine-tune-mode full-model --lr 1e-5 --batch_size 32 --epochs 3 --use_gpu",)),
    ".venv/bin/hf upload your-name/mtkit-minilm exported/mtkit-st": Skip(
        "uploads to the Hugging Face Hub: needs the network and an account's token (hf auth login); checked: the "
        "client is installed and has `hf upload`", _hub_client_has_upload),
    ".venv/bin/mtkit data split data/quora-dev.csv --into quora-train.csv=16000 --into quora-dev.csv=rest "
    "--seed 224 --dest data/results --copy data/ids-sst-*.csv data/sts-*.csv": Run(
        _split, f"quora-train.csv={SPLIT_TRAIN_ROWS} instead of 16000 (the fetched test files are small)",
        needs=(".venv/bin/mtkit data fetch --dest ./data",)),
    "MTKIT_DATA=data/results make results": Skip("too long: 14 runs of about 10 minutes on 2 cores, on the real "
                                                 "data; tests/test_results_protocol.py runs the protocol on the "
                                                 "demo set", _make_target_exists),
    '.venv/bin/python -m pytest tests -m "not slow"': Skip("the quick unit suite, this test included"),
    "make bench": Skip("too long: timing benchmarks (minutes), measured as ratios in one run; not a test",
                       _make_target_exists),
    # docs/RESULTS.md (the same recipe, with the kit installed on the PATH)
    "mtkit data fetch --dest data": Run(_fetch, "--base-url of a local server (no network), --no-progress"),
    "mtkit data split data/quora-dev.csv --into quora-train.csv=16000 --into quora-dev.csv=rest --seed 224 "
    "--dest data/results --copy data/ids-sst-*.csv data/sts-*.csv": Run(
        _split, f"quora-train.csv={SPLIT_TRAIN_ROWS} instead of 16000 (the fetched test files are small)",
        needs=("mtkit data fetch --dest data",)),
    # docs/NOTEBOOKS.md
    "python -m mtkit.teach.notebook_runner --out runs/demo": Skip(
        "too long: `make demo` itself (all ten notebooks, about 10 minutes on 2 cores); checked: its arguments "
        "reach the runner", _runner_arguments(None, {})),
    "python -m mtkit.teach.notebook_runner --out runs/compact --profile compact --data-dir DIR": Skip(
        "needs the real CS224N data (DIR)"),
    "python -m mtkit.teach.notebook_runner --out runs/full --profile full --data-dir DIR": Skip(
        "needs the real CS224N data (DIR) and a GPU"),
    "python -m mtkit.teach.notebook_runner --out runs/x --only 03 --only 09 -p epochs 3": Skip(
        "too long: notebooks 03 and 09 with 3 epochs took 7.4 minutes on 2 shared cores; checked: --only 03 "
        "--only 09 and -p epochs 3 reach the runner", _runner_arguments(["03", "09"], {"epochs": 3})),
}

DOCUMENTED = documented_commands()


def test_every_documented_command_is_in_the_table():
    missing = {c: DOCUMENTED[c] for c in DOCUMENTED if c not in COMMANDS}
    stale = [c for c in COMMANDS if c not in DOCUMENTED]
    assert not missing, ("commands in the docs that tests/test_docs_commands.py neither runs nor skips with a "
                         "reason; add each to COMMANDS: " + "; ".join(f"{c!r} ({', '.join(w)})"
                                                                      for c, w in missing.items()))
    assert not stale, f"COMMANDS lists commands that are no longer in the docs (remove them): {stale}"


def test_the_extraction_sees_every_shell_block():
    """A guard on the extractor itself: it finds the commands of each shell block it is meant to read."""
    assert "make demo" in DOCUMENTED and "make test" in DOCUMENTED
    assert any(c.startswith(".venv/bin/mtkit train") for c in DOCUMENTED)
    assert _strip_comment('make demo    # set up, then run') == "make demo"
    assert _strip_comment('pytest -m "not slow"   # the quick subset') == 'pytest -m "not slow"'
    assert _strip_comment("echo 'a # b'") == "echo 'a # b'"


def _run(ws: Workspace, command: str) -> None:
    entry = COMMANDS[command]
    for needed in entry.needs:
        if needed not in ws.done:
            _run(ws, needed)
    if command not in ws.done:
        entry.how(ws, command)
        ws.done.add(command)


@pytest.mark.parametrize("command", [  # the commands that run take seconds to a minute each: marked slow
    pytest.param(c, id=c[:60], marks=[pytest.mark.slow] if isinstance(COMMANDS[c], Run) else [])
    for c in DOCUMENTED if c in COMMANDS])
def test_documented_command(command, request):
    entry = COMMANDS[command]
    if isinstance(entry, Skip):
        if entry.check is not None:
            entry.check(command)
        pytest.skip(f"{command!r} ({', '.join(DOCUMENTED[command])}) is not run: {entry.reason}")
    ws = request.getfixturevalue("workspace")
    print(f"running {command!r} ({', '.join(DOCUMENTED[command])}); changes: {entry.changes}")
    _run(ws, command)


# ------------------------------------------------------------------------------------------------ names in the docs
DOTTED = re.compile(r"(?<![\w./-])mtkit(?:\.[A-Za-z_]\w*)+")
FILE_PATH = re.compile(r"(?<![\w./-])mtkit/[\w./-]*")


def _mentions(pattern: re.Pattern) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in DOC_FILES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for match in pattern.finditer(line):
                found.setdefault(match.group(0).rstrip("."), []).append(f"{path.relative_to(REPO)}:{number}")
    return found


def resolve_dotted(name: str):
    """The object a dotted path names: the longest importable module prefix, then attributes."""
    import importlib
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as err:
            if err.name is not None and not ".".join(parts[:i]).startswith(err.name):
                raise  # the module exists but imports something missing: a real error
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(name)


def test_every_dotted_mtkit_name_in_the_docs_resolves():
    mentions = _mentions(DOTTED)
    assert "mtkit.teach.notebook_runner" in mentions  # the pattern finds what the docs name
    broken = []
    for name, where in sorted(mentions.items()):
        try:
            resolve_dotted(name)
        except (ImportError, AttributeError) as err:
            broken.append(f"{name} ({', '.join(where)}): {type(err).__name__}: {err}")
    assert not broken, "names in README.md / docs/*.md that do not resolve:\n  " + "\n  ".join(broken)


def test_every_mtkit_file_path_in_the_docs_exists():
    mentions = _mentions(FILE_PATH)
    assert mentions
    missing = [f"{p} ({', '.join(w)})" for p, w in sorted(mentions.items()) if not (REPO / p).exists()]
    assert not missing, "paths in README.md / docs/*.md that do not exist:\n  " + "\n  ".join(missing)
