"""One JSON-ready converter for every record mtkit writes (results, configs, history lines)."""
from __future__ import annotations

import math
from pathlib import Path

__all__ = ["to_plain"]

NONFINITE = ("null", "string", "keep")


def to_plain(value, nonfinite: str = "keep"):
    """``value`` with plain Python types only: dict keys become strings, tuples lists, paths strings, numpy and
    torch scalars Python numbers. ``nonfinite`` says what a non-finite float becomes: ``"keep"`` (as it is),
    ``"null"`` (NaN becomes None, so the file stays standard JSON; infinities are kept) or ``"string"``
    (``"nan"``, ``"inf"``, ``"-inf"``)."""
    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}.")
    if isinstance(value, dict):
        return {str(k): to_plain(v, nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v, nonfinite) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # a numpy or torch scalar
    if isinstance(value, float) and not math.isfinite(value):
        if nonfinite == "string":
            return str(value)  # "nan", "inf", "-inf"
        if nonfinite == "null" and value != value:
            return None  # NaN is not JSON
    return value
