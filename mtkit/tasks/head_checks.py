"""What the heads share: input checks that say what was expected, and the dropout + linear classifier."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ['DEFAULT_DROPOUT']
DEFAULT_DROPOUT = 0.3  # the CS224N starter's hidden_dropout_prob


# ------------------------------------------------------------------------------------------------ checks
def _check_vector(x, hidden: int | None, who: str, name: str = "u") -> None:
    """``x`` must be a pooled (B, H) tensor with H == hidden; the message says what probably went wrong."""
    H = "H" if hidden is None else f"H={hidden}"
    if not isinstance(x, torch.Tensor):
        hint = "; pool output.last_hidden_state first (mtkit.model.pooling)" if hasattr(x, "last_hidden_state") else ""
        raise TypeError(f"{who}: expected {name}, a pooled tensor of shape (B, {H}), got {type(x).__name__}{hint}.")
    if x.dim() == 3:
        raise ValueError(f"{who}: expected {name} of shape (B, {H}) but got (B, T, H) = {tuple(x.shape)}: did you "
                         f"forget to pool? Use mtkit.model.pooling (e.g. mean_pool(last_hidden_state, attention_mask)).")
    if x.dim() != 2:
        raise ValueError(f"{who}: expected {name} of shape (B, {H}), got {tuple(x.shape)}; a single example still "
                         f"needs its batch dimension (x.unsqueeze(0)).")
    if hidden is not None and x.shape[-1] != hidden:
        raise ValueError(f"{who}: expected {name} of shape (B, H={hidden}) but got {tuple(x.shape)}: the head was "
                         f"built for vectors of width {hidden}. Build it with the encoder's hidden size (or, after "
                         f"a SharedPairLayer, that layer's out_dim).")
    if not x.is_floating_point():
        raise TypeError(f"{who}: {name} must be floating point, got {x.dtype}; did you pass token ids?")


def _check_pair(u, v, hidden: int | None, who: str) -> None:
    _check_vector(u, hidden, who, "u")
    _check_vector(v, hidden, who, "v")
    if u.shape != v.shape:
        raise ValueError(f"{who}: u {tuple(u.shape)} and v {tuple(v.shape)} must have the same shape: one vector "
                         f"per sentence, sentence 1 in u and sentence 2 in v, in the same order.")


def _check_range(label_range, who: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in label_range)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: label_range must be two numbers (low, high), got {label_range!r}.") from None
    if not lo < hi:
        raise ValueError(f"{who}: label_range must have low < high, got {label_range!r}.")
    return lo, hi


def _squeeze_one(x: torch.Tensor) -> torch.Tensor:
    """(B, 1) -> (B,): one output per example, the shape of its label."""
    return x.squeeze(-1) if x.shape[-1] == 1 else x


class _Classifier(nn.Module):
    """dropout -> linear, or dropout -> linear -> ReLU -> dropout -> linear when ``hidden_layer`` is set."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float, hidden_layer: int | None = None):
        super().__init__()
        if hidden_layer is None:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden_layer), nn.ReLU(),
                                     nn.Dropout(dropout), nn.Linear(hidden_layer, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _positive_int(value, name: str, who: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{who}: {name} must be a whole number >= {minimum}, got {value!r}.")
    return value
