"""nbval settings for `pytest --nbval notebooks` (see docs/NOTEBOOKS.md).

The kernels inherit this process's environment, so it is set here, before any kernel starts:

- ``MPLBACKEND`` is removed: the Makefile sets it to Agg for scripts, but a notebook kernel then has no inline
  backend and figures would be shown as text only (ipykernel installs the inline backend only when it is unset);
- ``MTKIT_DATA=demo``: the committed outputs come from the demo set, so the comparison must too, whatever
  ``MTKIT_DATA`` says and whatever the checkout's ``data/`` folder holds;
- ``MTKIT_WIDGET_ERRORS=raise``: a widget callback that fails raises in the cell (and fails the test) instead of
  printing a traceback inside the widget that nobody reads.

nbval waits only 5 s for a cell's last output message by default; figures and widgets on a busy CI machine can
take longer, so each cell gets 60 s.
"""
import os

os.environ.pop("MPLBACKEND", None)
os.environ["MTKIT_DATA"] = "demo"
os.environ["MTKIT_WIDGET_ERRORS"] = "raise"
os.environ.setdefault("PYTHONHASHSEED", "0")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if type(item).__name__ == "IPyNbCell":
            item.output_timeout = 60
