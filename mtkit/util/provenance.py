"""Provenance: which mtkit wrote a file, as its version and, in a git checkout, its commit.

Checkpoints record it in their manifest (``"mtkit": {"version", "commit", "dirty"}``) and ``mtkit export``
writes it into the model card, so a model shared on the Hub says which code trained it. The commit is read
with ``git rev-parse HEAD`` in the folder of the installed package; an installation that is not a git checkout
(a wheel) records ``None``. Nothing here fails: without git, or outside a repository, the commit is ``None``.
"""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from mtkit import __version__

__all__ = ["kit_provenance"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(_PACKAGE_DIR), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def kit_provenance() -> dict:
    """``{"version": mtkit.__version__, "commit": "40 hex digits" or None, "dirty": bool or None}``.

    ``dirty`` is True when tracked files of the checkout differ from the commit (uncommitted changes)."""
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return {"version": __version__, "commit": commit, "dirty": dirty}
