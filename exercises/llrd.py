# ==============================================================================================================
# EXERCISE FILE: edit this file, exercises/llrd.py
# Replace each `raise NotImplementedError()` (below a `# YOUR CODE HERE`) with your code; keep the
# signatures. The module docstring says which notebook teaches it and which mtkit.exercises.checks function
# checks it. Stuck? The worked answer is in solutions/llrd.py.
# Generated from solutions/llrd.py by `python -m mtkit.exercises solutions exercises` (`make exercises`).
# Regenerating never overwrites this file once you have edited it (unless you pass --force).
# fingerprint: 7acb3b10db55df9c
# ==============================================================================================================
"""Exercise: parameter groups for layer-wise learning-rate decay (LLRD).

Howard & Ruder 2018 (ULMFiT, arXiv 1801.06146) and Sun et al. 2019 ("How to Fine-Tune BERT for Text
Classification?", arXiv 1905.05583) give lower layers smaller learning rates: the further a layer is from the
task heads, the less it should move. Sun et al. 2019 (eta^(k-1) = xi * eta^k) and report D (the i-th layer from
the top at lr * xi^(i-1)) keep the top layer at the base lr and start the decay one layer below it. With depth
counted from the top (``mtkit.model.names.depth_of``), lr = lr * decay ** depth::

    task heads                      depth 0       lr
    top layer (and the pooler)      depth 0       lr
    layers.i (0 = bottom, of L)     depth L-1-i   lr * decay ** (L - 1 - i)
    embeddings                      depth L       lr * decay ** L

Biases and LayerNorm weights get no weight decay (``mtkit.optim.llrd.uses_weight_decay``).

Taught in notebooks/08_layerwise_lr_decay.ipynb. Check your answer with::

    from mtkit.exercises.checks import check_llrd_groups
    check_llrd_groups(llrd_param_groups)

The reference is ``mtkit.optim.layerwise_lr_groups``.
"""
from __future__ import annotations

from torch import nn

from mtkit.model.names import depth_of
from mtkit.optim.llrd import uses_weight_decay


def llrd_param_groups(model: nn.Module, lr: float, decay: float, weight_decay: float = 0.0,
                      encoder_prefix: str = "encoder.", head_prefix: str = "heads.") -> list[dict]:
    """Optimizer parameter groups, each a dict with ``"params"``, ``"lr"`` and ``"weight_decay"``.

    ``model``'s encoder parameters are named ``encoder_prefix + <minBERT name>`` (for example
    ``encoder.layers.0.attention.query.weight``) and its task heads start with ``head_prefix``. The encoder's
    depth is ``model.<encoder>.config.num_hidden_layers``.

    Rules: every parameter with ``requires_grad=True`` lands in exactly one group; frozen parameters
    (``requires_grad=False``) in none. A head parameter gets ``lr``; an encoder parameter named n gets
    ``lr * decay ** depth_of(n, num_layers)`` (n without the prefix). Parameters for which
    ``uses_weight_decay(name)`` is False get weight decay 0, the others ``weight_decay``. Any other parameter
    name is an error (raise ValueError naming it). How many groups you make is up to you.

    Hints: ``model.named_parameters()`` gives (name, parameter); a dict keyed by (lr, weight decay) collects
    the groups.
    """
    # YOUR CODE HERE
    raise NotImplementedError()
