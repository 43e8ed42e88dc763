"""Finding the data: an explicit folder, then ``$MTKIT_DATA``, then the project's ``data/``, else the demo set.

The rules, in order:

1. An explicit ``data_dir`` argument wins. It must exist and hold the task files; otherwise it is an error
   (never a silent switch to the demo set). ``"demo"`` asks for the demo set.
2. The environment variable ``MTKIT_DATA``: the same rules as an explicit folder (``MTKIT_DATA=demo``: the demo set).
3. The project's ``data/`` folder, found from the project root, not from the working directory: a notebook
   running in ``notebooks/`` finds what ``mtkit data fetch --dest ./data`` wrote from the root. The project is
   the mtkit checkout holding the working directory; outside any checkout, ``./data`` of the working
   directory, then the ``data/`` of the checkout mtkit was imported from (:func:`local_candidates`). A folder
   is used when it holds at least one of the expected files; a partial set is an error that lists what is
   missing.
4. Nothing found: with ``allow_demo=True`` mtkit's own demo set (written once into the cache, see
   :mod:`mtkit.data.demo`), and the returned description says so and where it looked; with
   ``allow_demo=False`` a ``FileNotFoundError`` that lists the expected file names, the folders looked at and
   the command that downloads them.

Every :class:`DataSource` says which folder it is and why it was chosen. A folder holding ``mtkit-demo.json`` is
the demo set wherever it is found (kind ``"demo"``). Task files given as absolute paths (a custom task's
``train: /data/cfimdb/train.csv``) are used where they are: when every train and dev file is absolute, no data
folder is needed and none is searched (only an explicit ``data_dir`` is still honoured).

Taught in notebooks/01_setup_and_data.ipynb.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mtkit.data.demo import demo_data_dir, read_demo_info
from mtkit.data.tasks import TaskSpec, default_tasks

logger = logging.getLogger("mtkit.data")

ENV_VAR = "MTKIT_DATA"
FETCH_COMMAND = "mtkit data fetch --dest ./data"


@dataclass
class DataSource:
    path: Path  # the folder holding the task files
    kind: str  # "real" (the CS224N files), "demo" (mtkit's synthetic set) or "custom" (your own tasks)
    description: str  # one line for humans: what this data is and why it was chosen

    def __str__(self) -> str:
        return self.description

    def _repr_pretty_(self, printer, cycle):
        printer.text(self.description)


def required_files(tasks: Sequence[TaskSpec]) -> list[str]:
    """The files a folder must hold: each task's train and dev files (test files are optional)."""
    names = []
    for spec in tasks:
        for split in ("train", "dev"):
            name = getattr(spec, f"{split}_file")
            if name and name not in names:
                names.append(name)
    return names


def _missing(folder: Path, names: Sequence[str]) -> list[str]:
    return [n for n in names if not (Path(n) if Path(n).is_absolute() else folder / n).is_file()]


def _not_found_message(names: Sequence[str], looked: Sequence[str]) -> str:
    listing = ", ".join(names)
    return (f"No task data found (looked at: {'; '.join(looked)}). Expected the files {listing} in one folder. "
            f"Download the public CS224N files with `{FETCH_COMMAND}` (run from the project root), or point mtkit at a folder holding them "
            f"(data_dir=... or the {ENV_VAR} environment variable); or allow the demo set.")


def _check_folder(folder: Path, origin: str, names: Sequence[str], custom: bool) -> DataSource:
    """An explicitly chosen folder (argument or environment): it must exist and be complete."""
    if not folder.exists():
        raise FileNotFoundError(f"The data folder {folder} ({origin}) does not exist. Fix the path, or create it "
                                f"with `mtkit data fetch --dest {folder}`.")
    if not folder.is_dir():
        raise NotADirectoryError(f"The data folder {folder} ({origin}) is a file; give the folder that holds "
                                 "the .csv files.")
    info = read_demo_info(folder)
    missing = _missing(folder, names)
    if missing:
        raise FileNotFoundError(
            f"The data folder {folder} ({origin}) lacks {', '.join(missing)}. Add them (`mtkit data fetch "
            f"--dest {folder}` downloads the CS224N files), or choose another folder.")
    if info is not None:
        return DataSource(folder, "demo", f"mtkit's demo set (synthetic, seed {info.get('seed')}) in {folder} "
                                          f"({origin}); not the CS224N data")
    kind = "custom" if custom else "real"
    what = "your task files" if custom else "the CS224N data"
    return DataSource(folder, kind, f"{what} in {folder} ({origin})")


def _absolute_files(names: Sequence[str]) -> DataSource:
    """Task files given as absolute paths: they must exist; the folder is the one they share."""
    missing = [n for n in names if not Path(n).is_file()]
    if missing:
        raise FileNotFoundError(f"The task file(s) {', '.join(missing)} do not exist. Fix the path(s) in the task's "
                                "train/dev entries (absolute paths are used as they are, without a data folder).")
    folder = Path(os.path.commonpath([str(Path(n).parent) for n in names]))
    return DataSource(folder, "custom", f"your task files at the absolute paths given in the task spec "
                                        f"(under {folder}); no data folder needed")


def project_root(start: str | Path | None = None) -> Path | None:
    """The mtkit project holding ``start`` (default: the working directory): the nearest folder at or above it
    with ``pyproject.toml`` beside the ``mtkit/`` package. None outside any checkout."""
    base = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (base, *base.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "mtkit" / "__init__.py").is_file():
            return folder
    return None


def installed_root() -> Path | None:
    """The checkout this mtkit was imported from (an editable install or a source tree); None for a wheel."""
    return project_root(Path(__file__).resolve().parent)


def local_candidates() -> list[tuple[Path, str]]:
    """The ``data/`` folders searched after ``$MTKIT_DATA``, in order, each with where it comes from.

    Inside a checkout (the working directory is the project root, ``notebooks/`` or any folder below), its
    ``data/``: what ``mtkit data fetch --dest ./data`` run from the root writes, found by a notebook running in
    ``notebooks/`` too. Outside any checkout: ``./data`` of the working directory, then the ``data/`` of the
    checkout mtkit was imported from.
    """
    root = project_root()
    if root is not None:
        found = [(root / "data", "the project's data folder")]
    else:
        found = [(Path.cwd() / "data", "./data of the working directory, outside any mtkit checkout")]
        installed = installed_root()
        if installed is not None:
            found.append((installed / "data", f"the data folder of the mtkit checkout in use ({installed})"))
    unique, seen = [], set()
    for folder, origin in found:
        if folder.resolve() not in seen:
            seen.add(folder.resolve())
            unique.append((folder, origin))
    return unique


def _demo_source(folder: Path, seed: int, why: str) -> DataSource:
    return DataSource(folder, "demo", f"mtkit's demo set (synthetic, seed {seed}) in {folder}: {why}")


def find_data_dir(explicit: str | Path | None = None, allow_demo: bool = True,
                  tasks: Sequence[TaskSpec] | None = None, seed: int = 0, cache: str | Path | None = None,
                  verbose: bool = False) -> DataSource:
    """Where the task files are: explicit argument, then ``$MTKIT_DATA``, then the project's ``data/``, else the
    demo set (the module docstring gives the rules; ``"demo"`` as the argument or the variable asks for it).

    ``tasks``: the task specs whose train/dev files must be present (default: the three CS224N tasks).
    Returns a :class:`DataSource` whose description names the folder used and why; print it to say which
    data a notebook uses.
    """
    tasks = list(tasks) if tasks is not None else default_tasks()
    names = required_files(tasks)
    # "custom" when the tasks read files other than the CS224N ones (the demo set cannot stand in for those);
    # default tasks with other options (a metric, say) still read the CS224N files.
    standard = {getattr(t, f"{split}_file") for t in default_tasks() for split in ("train", "dev", "test")}
    custom = not set(names) <= standard

    def demo(why: str) -> DataSource:
        if custom:
            raise FileNotFoundError(f"The demo set only covers the three CS224N tasks, not custom ones ({why}); "
                                    f"point data_dir or {ENV_VAR} at the folder holding {', '.join(names)}.")
        return _demo_source(demo_data_dir(cache=cache, seed=seed), seed, why)

    relative = [n for n in names if not Path(n).is_absolute()]
    env = os.environ.get(ENV_VAR, "")
    if explicit is not None and str(explicit) != "":
        if str(explicit).strip().lower() == "demo":
            source = demo("asked for with data_dir='demo'")
        else:
            source = _check_folder(Path(explicit).expanduser(), "given as data_dir", names, custom)
    elif not relative:  # every train/dev file is an absolute path: no data folder is needed, none is searched
        source = _absolute_files(names)
    elif env:
        if env.strip().lower() == "demo":
            source = demo(f"asked for with {ENV_VAR}=demo")
        else:
            source = _check_folder(Path(env).expanduser(), f"from ${ENV_VAR}", names, custom)
    else:
        looked = [f"${ENV_VAR} (not set)"]
        source = None
        for local, origin in local_candidates():
            present = [n for n in relative if (local / n).is_file()] if local.is_dir() else []
            if present:
                source = _check_folder(local, origin, names, custom)
                break
            looked.append(f"{local} ({'no task files' if local.is_dir() else 'absent'})")
        if source is None:
            if not allow_demo:
                raise FileNotFoundError(_not_found_message(names, looked))
            if custom:
                raise FileNotFoundError(_not_found_message(names, looked) + " (The demo set only covers the "
                                        "three CS224N tasks, not custom ones.)")
            source = demo(f"no CS224N data was found ({'; '.join(looked)}). For the real data run "
                          f"`{FETCH_COMMAND}` in the project root, or set {ENV_VAR}.")
    logger.info("data: %s", source.description)
    if verbose:
        print(f"[mtkit] data: {source.description}")
    return source


def resolve_data_dir(data_dir: str | Path | None, specs=None) -> Path:
    """A run's ``data_dir`` as a folder: a folder, ``"demo"`` (the demo set, written once into the cache), or None
    (searched, with ``specs`` the tasks it must hold). ``data_dir``: a folder, ``"demo"`` (the demo set, written once into the cache), or None (searched)."""
    if data_dir == "demo":
        return demo_data_dir()
    return Path(find_data_dir(data_dir, tasks=specs).path)
