"""Helpers a notebook calls: where its data comes from, and saving its headline metrics for the runner's
summary."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from mtkit.data.demo import demo_data_dir
from mtkit.data.locate import DataSource, find_data_dir
from mtkit.util.jsonable import to_plain
from mtkit.util.paths import find_root

__all__ = ['data_source', 'results_dir_default', 'save_results']


# ---------------------------------------------------------------------------------------------- notebook helpers
def data_source(data_dir=None, verbose: bool = True):
    """Which data a notebook uses, as a :class:`mtkit.data.locate.DataSource`.

    ``"demo"``: mtkit's demo set; ``None``: the usual search (:func:`mtkit.data.locate.find_data_dir`:
    $MTKIT_DATA, then the project's ``data/`` folder found from the project root, so a notebook running in
    ``notebooks/`` finds what ``mtkit data fetch --dest ./data`` wrote from the root; else the demo set); a
    folder: the CS224N files there (an error if they are missing). Prints one line saying which, naming the
    folder used and why (without the machine-specific cache path for the demo set).
    """
    if isinstance(data_dir, str) and data_dir.strip().lower() == "demo":
        source = DataSource(demo_data_dir(), "demo", "mtkit's demo set (synthetic; not the CS224N data)")
    else:
        source = find_data_dir(data_dir)
    if verbose:
        if source.kind == "demo":
            print("Data: mtkit's demo set (synthetic sentences in the CS224N file formats; not the real data). "
                  "Set data_dir to a folder with the CS224N files to use them.")
        else:
            print(f"Data: {source.description}")
    return source


def results_dir_default() -> Path:
    """``<repository>/runs/notebooks/results`` when run from the repository, else a temporary folder."""
    try:
        return find_root() / "runs" / "notebooks" / "results"
    except FileNotFoundError:
        return Path(tempfile.gettempdir()) / "mtkit-notebook-results"


def save_results(notebook: str, metrics: dict, results_dir=None, **meta) -> Path:
    """Write ``<results_dir>/<notebook>.json``: ``{"notebook", "metrics", ...meta}``; returns the path.

    Keep ``metrics`` small and flat (numbers, short strings): the runner puts them in its summary table.
    """
    folder = Path(results_dir) if results_dir else results_dir_default()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{notebook}.json"
    record = {"notebook": notebook, "metrics": to_plain(metrics, nonfinite="null")} | to_plain(meta, nonfinite="null")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
