"""nbval settings for `pytest --nbval notebooks` (see docs/NOTEBOOKS.md).

The kernels inherit this process's environment, so it is set here, before any kernel starts:

- ``MPLBACKEND`` is removed: the Makefile sets it to Agg for scripts, but a notebook kernel then has no inline
  backend and figures would be shown as text only (ipykernel installs the inline backend only when it is unset);
- ``MTKIT_DATA=demo``: the committed outputs come from the demo set, so the comparison must too, whatever
  ``MTKIT_DATA`` says and whatever the checkout's ``data/`` folder holds;
- ``MTKIT_WIDGET_ERRORS=raise``: a widget callback that fails raises in the cell (and fails the test) instead of
  printing a traceback inside the widget that nobody reads;
- ``MTKIT_EXERCISE_SOURCE=solutions``: a notebook's ``exercise_source = None`` (your exercises/, when you run it)
  checks the worked answers here, as when its outputs were stored, so your own exercises never change what is
  compared.

nbval waits only 5 s for a cell's last output message by default; figures and widgets on a busy CI machine can
take longer, so each cell gets 60 s.

Outside CI (``$CI`` unset), a notebook you have run and saved is skipped with a message instead of failing: its
outputs no longer match the fingerprint the build stored (``mtkit.teach.notebook_outputs``); so is a notebook in this
folder that is not one of the kit's (a copy of yours). In CI every notebook is compared.
"""
import os
from pathlib import Path

import pytest

os.environ.pop("MPLBACKEND", None)
os.environ["MTKIT_DATA"] = "demo"
os.environ["MTKIT_WIDGET_ERRORS"] = "raise"
os.environ["MTKIT_EXERCISE_SOURCE"] = "solutions"
os.environ.setdefault("PYTHONHASHSEED", "0")


def _skip_reason(path: Path) -> str | None:
    """Why a notebook is not compared here (None: it is). Never skips in CI."""
    from mtkit.exercises import in_ci
    from mtkit.teach.notebook_outputs import changed_locally
    from mtkit.teach.notebook_runner import NOTEBOOKS
    if in_ci():
        return None
    if path.stem not in NOTEBOOKS:
        return (f"{path.name} is not one of the kit's notebooks (a copy of yours?); nbval compares only the kit's "
                "notebooks with their committed outputs. Keep your copies outside notebooks/ (e.g. in work/).")
    return changed_locally(path)


def pytest_collection_modifyitems(config, items):
    reasons: dict[Path, str | None] = {}
    for item in items:
        if type(item).__name__ == "IPyNbCell":
            item.output_timeout = 60
            path = Path(str(item.path))
            if path not in reasons:
                reasons[path] = _skip_reason(path)
            if reasons[path]:
                item.add_marker(pytest.mark.skip(reason=reasons[path]))
