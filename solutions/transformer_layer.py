"""Exercise: the forward pass of one transformer encoder layer, as minBERT computes it.

BERT's layer (Devlin et al. 2019) is the Transformer encoder layer of Vaswani et al. 2017 with post-LayerNorm
("add & norm" after each sub-layer) and exact GELU:

    x = attention_norm(x + output(MultiHeadAttention(query(x), key(x), value(x))))
    x = ffn_norm(x + down(gelu(up(x))))

Taught in notebooks/03_attention_and_minbert.ipynb. Check your answer with::

    from mtkit.exercises.checks import check_layer_forward
    check_layer_forward(layer_forward)

The reference is ``mtkit.model.bert.BertLayer`` in eval mode (dropout off).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def layer_forward(layer, x: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  attention_fn: Callable | None = None) -> torch.Tensor:
    """One ``mtkit.model.bert.BertLayer`` applied to ``x``, without dropout (eval mode).

    Args:
        layer: a ``BertLayer``. It holds ``layer.attention.query``, ``.key``, ``.value``, ``.output`` (each an
            ``nn.Linear`` from H to H), ``layer.attention.num_heads``, ``layer.attention_norm`` and
            ``layer.ffn_norm`` (``nn.LayerNorm``), ``layer.ffn.up`` (H -> 4H) and ``layer.ffn.down`` (4H -> H).
        x: (B, T, H) token vectors.
        attention_mask: (B, T), 1 for real tokens and 0 for padding, or None.
        attention_fn: optional ``fn(q, k, v, attention_mask) -> (context, probs)`` on (B, heads, T, D) tensors,
            e.g. your ``attention`` from the previous exercise; None uses
            ``torch.nn.functional.scaled_dot_product_attention``.

    Returns:
        (B, T, H): the layer's output.

    Hints: split H into ``num_heads`` heads of size D = H / num_heads with ``view(B, T, heads, D)`` then
    ``transpose(1, 2)``; join them back with ``transpose(1, 2).reshape(B, T, H)``; the activation is
    ``F.gelu`` (exact, not the tanh approximation).
    """
    ### BEGIN SOLUTION
    B, T, H = x.shape
    heads = layer.attention.num_heads
    D = H // heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(B, T, heads, D).transpose(1, 2)  # (B, T, H) -> (B, heads, T, D)

    q = split(layer.attention.query(x))
    k = split(layer.attention.key(x))
    v = split(layer.attention.value(x))
    if attention_fn is not None:
        context, _ = attention_fn(q, k, v, attention_mask)  # (B, heads, T, D)
    else:
        keep = None if attention_mask is None else attention_mask[:, None, None, :].bool()  # (B, 1, 1, T)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # (B, heads, T, D)
    context = context.transpose(1, 2).reshape(B, T, H)  # (B, T, H): the heads side by side again
    x = layer.attention_norm(x + layer.attention.output(context))  # add & norm
    x = layer.ffn_norm(x + layer.ffn.down(F.gelu(layer.ffn.up(x))))  # add & norm
    return x
    ### END SOLUTION
