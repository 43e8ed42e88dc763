"""Whose answers run: the learner's (``exercises/``), the worked ones (``solutions/``) or any folder, and loading
one exercise file by path (fresh each time, so edits are picked up without a restart)."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType

from mtkit.util.paths import find_root

__all__ = ["SOURCE_ENV", "in_ci", "resolve_source", "source_folder", "load_module", "find_root"]


SOURCE_ENV = "MTKIT_EXERCISE_SOURCE"


def in_ci() -> bool:
    """True under continuous integration: the ``CI`` environment variable is set to anything but 0/false/no
    (GitHub Actions, GitLab CI and most others set ``CI=true``; so does ``.ci/run``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def resolve_source(source: str | None) -> str:
    """Whose answers a notebook checks: ``source`` when given; for None, ``$MTKIT_EXERCISE_SOURCE`` if set,
    else ``"exercises"`` (yours). The notebook tests set the variable to ``"solutions"``."""
    if source is not None:
        return str(source)
    return os.environ.get(SOURCE_ENV) or "exercises"


def source_folder(source: str, root: str | Path | None = None) -> Path:
    """The folder of a source: ``"exercises"`` and ``"solutions"`` (or any name) inside the repository, an
    absolute path as it is, a relative path that exists from the working directory as that folder."""
    path = Path(source)
    if path.is_absolute():
        return path
    if source not in ("exercises", "solutions") and path.is_dir():
        return path.resolve()
    return find_root(root) / source


def load_module(name: str, source: str = "solutions", root: str | Path | None = None) -> ModuleType:
    """Import ``<root>/<source>/<name>.py`` by path, fresh each time (edits are picked up without a restart).

    ``source`` is ``"solutions"`` (the worked answers), ``"exercises"`` (your answers) or another folder
    (:func:`source_folder`).
    """
    folder = source_folder(source, root)
    path = folder / f"{name}.py"
    if not path.is_file():
        available = sorted(p.stem for p in folder.glob("*.py")) if folder.is_dir() else []
        hint = (" Generate the exercises with `make exercises`." if source == "exercises" and not available
                else f" Available: {available}.")
        raise FileNotFoundError(f"No {source} file {path}.{hint}")
    if re.fullmatch(r"\w+", source):
        tag = source
    else:  # a folder given by path: its name plus a short hash, so two folders never share a module name
        tag = re.sub(r"\W", "_", folder.name) + "_" + hashlib.sha256(str(folder).encode()).hexdigest()[:8]
    module_name = f"mtkit_{tag}_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module
