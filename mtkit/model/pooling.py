"""Pooling: from one vector per token to one vector per sentence.

BERT gives a hidden state per token, ``last_hidden_state (B, T, H)``; a sentence head needs one vector
``(B, H)``. Sentence-BERT (Reimers & Gurevych 2019, "Sentence-BERT: Sentence Embeddings using Siamese
BERT-Networks", arXiv 1908.10084, Table 6) compares three ways and finds mean pooling best for similarity:

- ``"cls"``: the hidden state of the first token, ``[CLS]`` (position 0; mtkit pads on the right);
- ``"mean"``: the average over the real tokens (``attention_mask == 1``), padding left out;
- ``"max"``: the element-wise maximum over the real tokens.

The mode names are sentence-transformers' ``Pooling`` modes, so learners can move on to that library; the
values agree with ``sentence_transformers.models.Pooling`` on right-padded batches (tests/test_pooling.py).

Half precision (fp16, bf16) and the edge cases, decided once here:

- mean: the masked sum is accumulated in float32 (``sum(dtype=torch.float32)``), divided by the token count in
  float32, then cast back to the input dtype. A long fp16 sentence would otherwise overflow the sum (65504) or
  lose digits in bf16 (8 bits of mantissa).
- max: padding is filled with the smallest value of the dtype (``torch.finfo(dtype).min``), not a hard-coded
  ``-1e9`` (which is ``-inf`` in fp16) and not in place (sentence-transformers writes into the tensor).
- a row whose mask is all zeros (no real token) pools to a vector of zeros for mean and max, never NaN or
  ``-inf``, and its gradient is zero. ``cls`` always reads position 0.
- nothing here reads values back to the CPU (no ``.item()``, no data-dependent branch), so pooling never stalls
  a GPU.

Taught in notebooks/06_sentence_bert.ipynb (and used from notebooks/05_sentiment_finetuning.ipynb on).
"""
from __future__ import annotations

import torch
from torch import nn

from mtkit.util.registry import Registry

__all__ = ["POOLING_MODES", "POOLING_REGISTRY", "Pooling", "cls_pool", "mean_pool", "max_pool", "pool"]



def _check(last_hidden_state, attention_mask, who: str) -> None:
    """Shape checks with messages that say what was expected and what probably went wrong."""
    if not isinstance(last_hidden_state, torch.Tensor):
        hint = ""
        if hasattr(last_hidden_state, "last_hidden_state"):
            hint = " It looks like the whole model output: pass output.last_hidden_state."
        raise TypeError(f"{who}: expected last_hidden_state, a tensor of shape (B, T, H), got "
                        f"{type(last_hidden_state).__name__}.{hint}")
    if last_hidden_state.dim() != 3:
        hint = ""
        if last_hidden_state.dim() == 2:
            hint = " A 2-D tensor (B, H) is already one vector per sentence: was it pooled twice?"
        raise ValueError(f"{who}: expected last_hidden_state of shape (B, T, H), got "
                         f"{tuple(last_hidden_state.shape)}.{hint}")
    if not last_hidden_state.is_floating_point():
        raise TypeError(f"{who}: last_hidden_state must be floating point, got {last_hidden_state.dtype}; "
                        f"did you pass input_ids instead of the encoder's output?")
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor):
            raise TypeError(f"{who}: attention_mask must be a tensor of shape (B, T), got "
                            f"{type(attention_mask).__name__}.")
        B, T, _ = last_hidden_state.shape
        if tuple(attention_mask.shape) != (B, T):
            raise ValueError(f"{who}: attention_mask of shape {tuple(attention_mask.shape)} does not match "
                             f"last_hidden_state {tuple(last_hidden_state.shape)}; expected (B, T) = ({B}, {T}). "
                             f"Use the mask of the same batch (for a pair in the bi-encoder layout, "
                             f"attention_mask_1 goes with sentence 1).")


def cls_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The hidden state of the first token, ``[CLS]``: ``(B, T, H) -> (B, H)``.

    ``attention_mask`` is accepted for a uniform signature and checked for shape only: with right padding the
    first token is always real. (sentence-transformers looks for the first unmasked token, which differs
    only for left-padded batches.)
    """
    _check(last_hidden_state, attention_mask, "cls_pool")
    return last_hidden_state[:, 0]  # (B, H)


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average of the real tokens' hidden states: ``(B, T, H), (B, T) -> (B, H)``.

    Any non-zero mask entry counts as a real token. The sum and the division run in float32 and the result
    is cast back to the input's dtype; a row with no real token gives zeros.
    """
    _check(last_hidden_state, attention_mask, "mean_pool")
    h = last_hidden_state
    if attention_mask is None:
        return h.mean(dim=1, dtype=torch.float32).to(h.dtype)  # (B, H)
    keep = (attention_mask != 0).to(h.dtype).unsqueeze(-1)  # (B, T, 1): 1 for real tokens, 0 for padding
    total = (h * keep).sum(dim=1, dtype=torch.float32)  # (B, H); h * 0/1 is exact in any dtype
    count = keep.sum(dim=1, dtype=torch.float32).clamp(min=1.0)  # (B, 1); an all-padding row divides 0 by 1
    return (total / count).to(h.dtype)  # (B, H)


def max_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Element-wise maximum over the real tokens: ``(B, T, H), (B, T) -> (B, H)``.

    Padding is filled with ``torch.finfo(dtype).min`` so it never wins; a row with no real token gives zeros.
    """
    _check(last_hidden_state, attention_mask, "max_pool")
    h = last_hidden_state
    if attention_mask is None:
        return h.max(dim=1).values  # (B, H)
    real = (attention_mask != 0).unsqueeze(-1)  # (B, T, 1) bool
    filled = h.masked_fill(~real, torch.finfo(h.dtype).min)  # (B, T, H), a new tensor (the input is untouched)
    best = filled.max(dim=1).values  # (B, H)
    any_real = real.any(dim=1)  # (B, 1)
    return torch.where(any_real, best, torch.zeros_like(best))  # (B, H)


# The pooling modes a config may name: a new mode is one function (B, T, H), (B, T) -> (B, H) and one line here.
POOLING_REGISTRY = Registry("pooling mode", {"cls": cls_pool, "mean": mean_pool, "max": max_pool}, plural="modes")
POOLING_MODES = POOLING_REGISTRY.names  # the built-in modes (read POOLING_REGISTRY.names for any added later)


def _check_mode(mode: str) -> str:
    if mode not in POOLING_REGISTRY:
        raise ValueError(f"pooling mode {mode!r} is not known; use one of {list(POOLING_REGISTRY.names)} "
                         f"(the names of sentence-transformers' Pooling modes).")
    return mode


def pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor | None, mode: str = "mean") -> torch.Tensor:
    """Pool with the named mode (``"cls"``, ``"mean"`` or ``"max"``): ``(B, T, H) -> (B, H)``."""
    return POOLING_REGISTRY[_check_mode(mode)](last_hidden_state, attention_mask)


class Pooling(nn.Module):
    """``Pooling(mode)``: a module wrapper of :func:`pool`, so a model can hold its pooling choice.

    ``Pooling("mean")(last_hidden_state, attention_mask) -> (B, H)``. It has no parameters. A multitask model
    can hold one per task (report D: ``[CLS]`` for sentiment, mean for the pairs).
    """

    def __init__(self, mode: str = "mean"):
        super().__init__()
        self.mode = _check_mode(mode)

    def forward(self, last_hidden_state: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return POOLING_REGISTRY[self.mode](last_hidden_state, attention_mask)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
