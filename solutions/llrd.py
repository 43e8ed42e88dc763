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
    ### BEGIN SOLUTION
    encoder = model.get_submodule(encoder_prefix.rstrip(".")) if encoder_prefix else model
    num_layers = encoder.config.num_hidden_layers
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue  # frozen: the optimizer never sees it
        if name.startswith(head_prefix):
            group_lr = lr
        elif name.startswith(encoder_prefix):
            group_lr = lr * decay ** depth_of(name[len(encoder_prefix):], num_layers)
        else:
            raise ValueError(f"{name} is neither a head ({head_prefix}*) nor an encoder ({encoder_prefix}*) "
                             "parameter; refusing to guess its learning rate.")
        group_wd = weight_decay if uses_weight_decay(name) else 0.0
        groups.setdefault((group_lr, group_wd), []).append(param)
    return [{"params": params, "lr": group_lr, "weight_decay": group_wd}
            for (group_lr, group_wd), params in groups.items()]
    ### END SOLUTION
