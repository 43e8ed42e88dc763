"""Build notebooks/NN_*.ipynb from their sources in tools/notebooks/NN_*.py, and store their outputs.

The sources use the "percent" format (the one jupytext reads), so they diff and review like code::

    # %% [markdown]
    # # A title
    # Some prose.

    # %% tags=["parameters"]
    epochs = 1

    # %% tags=["nbval-ignore-output"]
    train()        # output not compared by nbval (timings, progress bars, floats from training)

Usage::

    python tools/build_notebooks.py --execute       # rebuild every .ipynb from its source and execute it with
                                                    # its default parameters, storing the outputs that
                                                    # `pytest --nbval` compares
    python tools/build_notebooks.py --execute --only 03
    python tools/build_notebooks.py --check         # exit 1 if a committed notebook's cells (sources, tags)
                                                    # differ from its source file (tests run this)
    python tools/build_notebooks.py --strip         # rebuild without outputs (nbval then only runs them)

Outputs must come from the demo data: the build refuses to run when MTKIT_DATA is set, and executes each
notebook in the environment the tests use (notebooks/conftest.py: inline figures, strict widget callbacks, and
``MTKIT_EXERCISE_SOURCE=solutions``: the stored outputs are those of the worked answers, whatever a learner has
written in exercises/).
Cell ids are stable (the cell's position), and no timing metadata is stored, so a rebuild only changes what
really changed. Each notebook stores a fingerprint of the outputs written (``metadata.mtkit.outputs_sha256``,
``mtkit.teach.notebook_outputs``): nbval skips a notebook a learner has run and saved (outside CI), and ``--check``
reports a committed notebook whose outputs no longer match. The committed .ipynb files are the product; edit
the sources here and rebuild.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "tools" / "notebooks"
TARGET = REPO / "notebooks"
_HEADER = re.compile(r"^# %%(?P<rest>.*)$")


def parse(text: str, where: str) -> list[nbformat.NotebookNode]:
    cells = []
    kind, tags, lines = None, [], []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            out = []
            for line in body.splitlines():
                if line.startswith("# "):
                    out.append(line[2:])
                elif line.strip() == "#":
                    out.append("")
                else:
                    raise ValueError(f"{where}: markdown lines must start with '# ', got {line!r}")
            cell = nbformat.v4.new_markdown_cell("\n".join(out))
        else:
            cell = nbformat.v4.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = list(tags)
        cells.append(cell)

    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            flush()
            rest = match.group("rest").strip()
            kind = "markdown" if rest.startswith("[markdown]") else "code"
            rest = rest.removeprefix("[markdown]").strip()
            tags = []
            if rest:
                tag_match = re.fullmatch(r"tags=(\[.*\])", rest)
                if not tag_match:
                    raise ValueError(f"{where}: cannot read the cell header {line!r} (use tags=[\"...\"])")
                tags = json.loads(tag_match.group(1))
            lines = []
        elif kind is not None:
            lines.append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"{where}: code before the first '# %%' header")
    flush()
    return cells


def build(source: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(source.read_text(encoding="utf-8"), str(source))
    for index, cell in enumerate(nb.cells):
        cell.id = f"{source.stem[:2]}-{index:02d}"
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nbformat.validate(nb)
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 900) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    from mtkit.teach.kernels import kernel_environment, kernel_manager_class
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(kernel_environment(exercise_source="solutions"))
    try:
        # the runner's kernel manager: IPC sockets in a private folder (no unencrypted TCP for ipykernel to warn
        # about, no port races), the same kernels `make demo` and the tests start
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                kernel_manager_class=kernel_manager_class(),
                                resources={"metadata": {"path": str(TARGET)}})
        try:
            client.execute()
        except Exception:
            failed = Path(os.environ.get("TMPDIR", "/tmp")) / "mtkit-build-failed.ipynb"
            nbformat.write(nb, str(failed))
            print(f"execution failed; the partly executed notebook is in {failed}", file=sys.stderr)
            raise
    finally:
        os.environ.clear()
        os.environ.update(saved)
    nb.metadata["language_info"] = {"name": "python"}  # drop the exact Python version: it is not content
    return nb


def differences(source: Path) -> list[str]:
    """How the committed notebook's cells differ from what its source builds (empty when they agree)."""
    target = TARGET / f"{source.stem}.ipynb"
    if not target.is_file():
        return [f"{target.relative_to(REPO)} is missing"]
    built, committed = build(source), nbformat.read(str(target), as_version=4)
    problems = []
    if len(built.cells) != len(committed.cells):
        problems.append(f"{target.name}: {len(committed.cells)} cells, the source has {len(built.cells)}")
    for i, (a, b) in enumerate(zip(built.cells, committed.cells)):
        if (a.cell_type, a.source, a.metadata.get("tags", [])) != (b.cell_type, b.source, b.metadata.get("tags", [])):
            problems.append(f"{target.name}: cell {i} differs from {source.relative_to(REPO)}")
            break
    if any(c.cell_type == "code" and c.execution_count is None for c in committed.cells):
        problems.append(f"{target.name}: not executed (run --execute so nbval has outputs to compare)")
    from mtkit.teach.notebook_outputs import outputs_fingerprint, stored_fingerprint
    stored = stored_fingerprint(committed)
    if stored is not None and stored != outputs_fingerprint(committed):
        problems.append(f"{target.name}: its outputs differ from the ones the build stored (saved from a notebook "
                        f"server?); rebuild it with --execute --only {source.stem[:2]}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--execute", action="store_true", help="execute and store outputs (demo data)")
    parser.add_argument("--strip", action="store_true", help="write the notebooks without outputs")
    parser.add_argument("--check", action="store_true", help="compare the committed notebooks with the sources")
    parser.add_argument("--only", action="append", default=None, help="notebook number or name part")
    args = parser.parse_args(argv)
    if not (args.execute or args.strip or args.check):
        parser.error("choose --execute, --check or --strip")
    if args.execute and os.environ.get("MTKIT_DATA"):
        print("MTKIT_DATA is set: committed outputs must come from the demo data; unset it first.", file=sys.stderr)
        return 2
    sources = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if args.only:
        sources = [s for s in sources if any(s.stem.startswith(o.zfill(2)) or o in s.stem for o in args.only)]
    if args.check:
        problems = [p for source in sources for p in differences(source)]
        for problem in problems:
            print(problem)
        print(f"{len(sources)} notebooks checked, {len(problems)} problems")
        return 1 if problems else 0
    for source in sources:
        nb = build(source)
        if args.execute:
            start = time.perf_counter()
            nb = execute(nb)
            print(f"{source.stem}: executed in {time.perf_counter() - start:.1f} s")
        target = TARGET / f"{source.stem}.ipynb"
        from mtkit.teach.notebook_outputs import stamp
        stamp(nb)
        nbformat.write(nb, str(target))
        print(f"wrote {target.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
