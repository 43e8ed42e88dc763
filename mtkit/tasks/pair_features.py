"""Sentence-BERT's pair features (Reimers and Gurevych 2019): (u, v, |u - v|, u * v) from two sentence vectors,
and the pair input of the bi-encoder heads."""
from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import nn

from mtkit.tasks.head_checks import (
    _check_pair,
    _check_vector,
)

__all__ = ['FEATURES', 'PairFeatures']

FEATURES = ("u", "v", "|u-v|", "u*v")


# ------------------------------------------------------------------------------------------------ pairs
def _parse_features(features) -> tuple[str, ...]:
    if isinstance(features, str):
        features = [f for f in features.replace(";", ",").split(",")]
    try:
        names = tuple(str(f).replace(" ", "") for f in features)
    except TypeError:
        raise ValueError(f"PairFeatures: features must be a list drawn from {list(FEATURES)}, "
                         f"got {features!r}.") from None
    if not names:
        raise ValueError(f"PairFeatures: features is empty; pick from {list(FEATURES)}, e.g. ['u', 'v', '|u-v|'].")
    for name in names:
        if name not in FEATURES:
            close = difflib.get_close_matches(name, FEATURES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"PairFeatures: unknown feature {name!r}{hint}; use any of {list(FEATURES)} in any order.")
    if len(set(names)) != len(names):
        raise ValueError(f"PairFeatures: features {list(names)} repeat a feature; list each at most once.")
    return names


class PairFeatures(nn.Module):
    """The feature vector of a pair: ``u``, ``v``, ``|u-v|`` and ``u*v`` concatenated in the order given.

    ``PairFeatures(("u", "v", "|u-v|"))(u, v) -> (B, 3H)``, Sentence-BERT's classification input. Note that
    ``|u-v|`` and ``u*v`` are symmetric in u and v while ``[u; v]`` is not. No parameters.
    """

    def __init__(self, features: Sequence[str] = ("u", "v", "|u-v|")):
        super().__init__()
        self.features = _parse_features(features)

    def width(self, hidden: int) -> int:
        """The output width for input vectors of width ``hidden``."""
        return len(self.features) * hidden

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        _check_pair(u, v, None, "PairFeatures")
        parts = {"u": lambda: u, "v": lambda: v, "|u-v|": lambda: (u - v).abs(), "u*v": lambda: u * v}
        return torch.cat([parts[name]() for name in self.features], dim=-1)  # (B, len(features) * H)

    def extra_repr(self) -> str:
        return f"features={list(self.features)}"


class _PairInput(nn.Module):
    """Either pair features of (u, v), or (``features=None``) one pooled vector of a joined pair."""

    def __init__(self, hidden: int, features, who: str):
        super().__init__()
        self.hidden, self.who = hidden, who
        self.features = None if features is None else PairFeatures(features)
        self.num_inputs = 1 if features is None else 2
        self.width = hidden if features is None else self.features.width(hidden)

    def forward(self, u: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        if self.features is None:
            if v is not None:
                raise TypeError(f"{self.who}: built with features=None for one vector of the joined pair (cross "
                                f"layout), but got u and v; build it with features=('u', 'v', '|u-v|') for the "
                                f"bi-encoder layout.")
            _check_vector(u, self.hidden, self.who)
            return u  # (B, H)
        if v is None:
            raise TypeError(f"{self.who}: needs both u and v (the two sentences' pooled vectors); for one vector of a "
                            f"joined pair, build it with features=None.")
        _check_pair(u, v, self.hidden, self.who)
        return self.features(u, v)  # (B, len(features) * H)
