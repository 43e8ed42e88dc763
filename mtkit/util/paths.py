"""The repository root: where solutions/, exercises/ and notebooks/ are found (a learner may run from anywhere
inside the repository, or from a notebook's folder)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["find_root"]


def find_root(start: str | Path | None = None) -> Path:
    """The repository root: the first folder holding ``solutions/`` above ``start`` (default: the working
    directory, then the folder this package was installed from)."""
    candidates = [Path(start) if start is not None else Path.cwd(), Path(__file__).resolve().parent]
    for base in candidates:
        base = base.resolve()
        for folder in (base, *base.parents):
            if (folder / "solutions").is_dir() and (folder / "mtkit").is_dir():
                return folder
    raise FileNotFoundError("Could not find the mtkit repository (a folder holding solutions/ and mtkit/) above "
                            f"{candidates[0]}; run from inside the repository, or pass root=.")
