"""The committed notebooks' outputs, fingerprinted so that a learner's saved run is told apart from them.

``pytest --nbval notebooks`` (the second half of ``make test``) compares every cell with the outputs stored in
the repository. A learner who runs a notebook in JupyterLab and saves it replaces those outputs with their own
(other numbers, their exercises' messages), and the comparison would then fail on their machine for no fault of
the kit. So ``tools/build_notebooks.py --execute`` stores a fingerprint of the outputs it wrote in the notebook's
metadata (``metadata.mtkit.outputs_sha256``), and ``notebooks/conftest.py`` asks :func:`changed_locally`:

- a notebook whose outputs still match the fingerprint is compared as always;
- one whose outputs were changed since the build is skipped, with a message saying why and how to keep work
  (a copy outside ``notebooks/``, or a git branch) -- except in CI (``$CI`` set), where nothing is skipped;
- one without a fingerprint (built before fingerprints existed) is compared as always.

The fingerprint covers what nbval compares and a run changes: each code cell's outputs and execution count.

Taught in docs/NOTEBOOKS.md ("Tests").
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = ["KEY", "outputs_fingerprint", "stamp", "stored_fingerprint", "changed_locally"]

KEY = "outputs_sha256"  # under metadata["mtkit"]


def _plain(value):
    """Notebook JSON as plain data, with multi-line strings joined (a file may store them as lists of lines)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(v, str) for v in value):
            return "".join(value)
        return [_plain(v) for v in value]
    return value


def outputs_fingerprint(nb) -> str:
    """sha256 of every code cell's (execution count, outputs), in order; ``nb`` is a notebook dict or node."""
    cells = [(cell.get("execution_count"), _plain(cell.get("outputs", [])))
             for cell in nb["cells"] if cell.get("cell_type") == "code"]
    text = json.dumps(cells, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stamp(nb) -> None:
    """Store the fingerprint of ``nb``'s current outputs in its metadata (the build does this)."""
    nb["metadata"].setdefault("mtkit", {})[KEY] = outputs_fingerprint(nb)


def stored_fingerprint(nb) -> str | None:
    return (nb.get("metadata", {}).get("mtkit") or {}).get(KEY)


def changed_locally(path: str | Path) -> str | None:
    """Why the notebook at ``path`` should not be compared with nbval here, or None when it should.

    Its outputs differ from the fingerprint stored at build time (someone ran and saved it), or it cannot be
    read as JSON. A notebook without a fingerprint is compared (None).
    """
    path = Path(path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"{path.name} cannot be read as a notebook ({err})"
    stored = stored_fingerprint(nb)
    if stored is None or stored == outputs_fingerprint(nb):
        return None
    return (f"{path.name}: its outputs were changed since the kit stored them (it was run and saved here), so nbval "
            "cannot compare it with the committed outputs and skips it. Your work is safe; to keep it and test the "
            f"notebook again, save your version under another name outside notebooks/ (e.g. work/{path.name}) or "
            f"commit it on a branch of yours, then restore the kit's with `git checkout -- notebooks/{path.name}`. "
            "(CI never skips.)")
