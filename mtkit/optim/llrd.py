"""Layer-wise learning-rate decay (LLRD): parameter groups whose lr shrinks from the task heads down to the
embeddings.

Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text Classification" (arXiv 1801.06146) call it
discriminative fine-tuning; Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?"
(arXiv 1905.05583, section 5.3.4) apply it to BERT with eta^(k-1) = xi * eta^k, the top layer L at the base lr
eta^L, and report xi = 0.95 as a good setting; report D uses the same rule (the i-th layer from the top at
lr * xi^(i-1), heads at lr). Depth counts from the top (``mtkit.model.names.depth_of``), lr = lr * decay ** depth::

    task heads                      lr (or head_lr)
    top encoder layer and pooler    depth 0       lr
    layers.i (0 = bottom, of L)     depth L-1-i   lr * decay ** (L - 1 - i)
    embeddings                      depth L       lr * decay ** L

A common off-by-one starts the decay at the top layer (top layer at lr * decay, every layer one factor too
low); both papers start it one layer below the top, and ``mtkit.exercises.checks.check_llrd_groups`` names that mistake.

Biases and LayerNorm weights get no weight decay. Two mistakes that are silent elsewhere are errors here: a
parameter whose name is not recognised (some libraries quietly give it the top lr), and a parameter that would
land in no group or in two. The groups carry their lr directly (not an ``lr_scale`` that only some schedulers
read), so any ``torch.optim.lr_scheduler`` keeps the ratios (see ``mtkit.optim.schedules``).

Taught in notebooks/08_layerwise_lr_decay.ipynb.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from mtkit.model.names import block_of, depth_of

__all__ = ["LayerwiseGroups", "layerwise_lr_groups", "uses_weight_decay"]

_NO_DECAY = " (no decay)"


def uses_weight_decay(name: str) -> bool:
    """False for biases and normalisation weights (``*.bias``, ``*norm*``, ``*LayerNorm*``), True otherwise.

    Decaying a bias or a LayerNorm gain towards 0 only fights the scale the layer needs; BERT's own recipe
    excludes them.
    """
    return not (name == "bias" or name.endswith(".bias") or "norm" in name.lower())


@dataclass
class LayerwiseGroups:
    """The parameter groups (``.groups``, ready for any torch optimizer) and a table describing them.

    Each group is a dict with ``params``, ``lr``, ``weight_decay`` and three descriptive keys that torch
    optimizers keep untouched: ``name`` (the name pattern, plus " (no decay)" for the half without weight decay),
    ``depth`` (the exponent of ``decay``; 0 for the heads, the top layer and the pooler) and ``block``
    (``"heads"`` for parameters under a head prefix, else the encoder block: ``"layers.3"``, ``"pooler"``,
    ``"embeddings"``). ``members`` maps each group name to its parameter names. ``print(result)`` shows the table;
    ``result.table()`` returns it as a DataFrame.
    """

    groups: list[dict]
    members: dict[str, list[str]]  # group name -> names of its parameters, in model order
    lr: float
    decay: float
    weight_decay: float
    head_lr: float | None = None
    frozen: list[str] = field(default_factory=list)  # names of parameters left out because requires_grad=False

    def table(self):
        """One row per group: name pattern, which parameters, depth, lr multiplier, lr, weight decay, counts."""
        import pandas as pd  # imported here: pandas is heavy and only this function needs it

        rows = [{
            "name pattern": g["name"].removesuffix(_NO_DECAY),
            "parameters": "biases, norms" if g["name"].endswith(_NO_DECAY) else "weights",
            "depth": g["depth"],
            "lr multiplier": self.decay ** g["depth"],  # from layer-wise decay (head_lr aside)
            "lr": g["lr"],
            "weight decay": g["weight_decay"],
            "tensors": len(g["params"]),
            "parameters (numel)": sum(p.numel() for p in g["params"]),
        } for g in self.groups]
        return pd.DataFrame(rows)

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for g in self.groups for p in g["params"])

    def _header(self) -> str:
        frozen = f"; {len(self.frozen)} frozen tensors left out" if self.frozen else ""
        head = f", head_lr {self.head_lr:g}" if self.head_lr is not None else ""
        return (f"{len(self.groups)} parameter groups, {self.num_trainable:,} trainable parameters (lr {self.lr:g}"
                f"{head}, decay {self.decay:g}, weight_decay {self.weight_decay:g}{frozen})")

    def __str__(self) -> str:
        body = self.table().to_string(index=False, float_format=lambda v: f"{v:.4g}")
        return f"{self._header()}\n{body}"

    def _repr_html_(self) -> str:  # a notebook cell ending in the result shows the table
        return f"<p>{self._header()}</p>" + self.table().to_html(index=False, float_format=lambda v: f"{v:.4g}")


def _find_encoder(model: nn.Module, encoder_prefix: str) -> nn.Module:
    if encoder_prefix == "":
        return model
    path = encoder_prefix.rstrip(".")
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        raise ValueError(
            f"The model has no submodule {path!r} (encoder_prefix={encoder_prefix!r}). Pass the prefix under which "
            "the BERT encoder's parameters are named, e.g. encoder_prefix='encoder.' for a MultitaskModel, or "
            "encoder_prefix='' when the model is a bare BertModel.") from err


def _num_layers(encoder: nn.Module) -> int:
    config = getattr(encoder, "config", None)
    if config is not None and hasattr(config, "num_hidden_layers"):
        return int(config.num_hidden_layers)
    layers = getattr(encoder, "layers", None)
    if isinstance(layers, nn.ModuleList):
        return len(layers)
    raise ValueError(f"Cannot tell how many layers the encoder ({type(encoder).__name__}) has: it has neither "
                     "config.num_hidden_layers nor a ModuleList called 'layers'. Pass num_layers=.")


def layerwise_lr_groups(model: nn.Module, lr: float, decay: float, weight_decay: float = 0.0,
                        encoder_prefix: str = "encoder.", head_prefixes: tuple[str, ...] = ("heads.",),
                        num_layers: int | None = None, head_lr: float | None = None) -> LayerwiseGroups:
    """Parameter groups for layer-wise learning-rate decay; pass ``result.groups`` to an optimizer.

    Args:
        model: a model whose encoder parameters are named ``{encoder_prefix}<minBERT name>`` (docs/ARCHITECTURE.md)
            and whose task-specific parameters start with one of ``head_prefixes``. A ``MultitaskModel`` fits the
            defaults; for a bare ``BertModel`` pass ``encoder_prefix=""``.
        lr: the base learning rate: the heads', the top encoder layer's and the pooler's (depth 0).
        decay: the factor per layer going down (1.0 turns LLRD off but still splits off the no-decay set).
        weight_decay: for weight matrices and embeddings; biases and norm weights get 0.
        encoder_prefix: the prefix of the encoder's parameter names, with its trailing dot.
        head_prefixes: prefixes of parameters trained at the full lr (heads, a shared layer before the heads...).
        num_layers: the encoder's layer count; read from ``encoder.config`` when None.
        head_lr: a different lr for the heads (e.g. 1e-3 for fresh heads over a 2e-5 encoder); None: ``lr``.
            The encoder keeps ``lr * decay ** depth`` either way.

    Parameters with ``requires_grad=False`` are left out (listed in ``result.frozen``). A trainable parameter
    that is neither under a head prefix nor a known encoder parameter raises ``ValueError``.

    Taught in notebooks/08_layerwise_lr_decay.ipynb.
    """
    if not lr >= 0:
        raise ValueError(f"lr={lr!r} must be >= 0.")
    if not decay > 0:
        raise ValueError(f"decay={decay!r} must be > 0; values just below 1 (0.8 to 0.95) are the usual choice.")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay={weight_decay!r} must be >= 0.")
    if head_lr is not None and not head_lr >= 0:
        raise ValueError(f"head_lr={head_lr!r} must be >= 0 (or None for the same lr as the encoder's top).")
    if isinstance(head_prefixes, str):
        head_prefixes = (head_prefixes,)
    if num_layers is None:
        num_layers = _num_layers(_find_encoder(model, encoder_prefix))

    # 1. Sort every trainable parameter into a block (a head prefix, embeddings, layers.i or pooler).
    blocks: dict[str, dict] = {}  # block key -> {"pattern", "depth", "decay": [...], "no_decay": [...]}
    frozen, unknown = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            frozen.append(name)
            continue
        head = next((prefix for prefix in head_prefixes if name.startswith(prefix)), None)
        if head is not None:
            key, pattern, depth = f"head:{head}", f"{head}*", 0  # heads: the base lr, like the top layer
        elif name.startswith(encoder_prefix):
            bare = name[len(encoder_prefix):]
            try:
                block = block_of(bare, num_layers)
                depth = depth_of(bare, num_layers)
            except KeyError as err:
                unknown.append(f"{name} ({err.args[0] if err.args else err})")
                continue
            block = "embeddings" if block.startswith("embeddings") else block
            key, pattern = block, f"{encoder_prefix}{block}.*"
        else:
            unknown.append(f"{name} (neither under encoder_prefix {encoder_prefix!r} nor a head prefix "
                           f"{tuple(head_prefixes)})")
            continue
        entry = blocks.setdefault(key, {"pattern": pattern, "depth": depth, "decay": [], "no_decay": []})
        entry["decay" if uses_weight_decay(name) else "no_decay"].append((name, param))
    if unknown:
        shown = "\n  ".join(unknown[:10]) + (f"\n  ... and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise ValueError(
            f"Layer-wise decay cannot place {len(unknown)} parameter(s), and will not guess their lr:\n  {shown}\n"
            "Add the prefix of task-specific parameters to head_prefixes (they then get the full lr), fix "
            "encoder_prefix, or freeze them (requires_grad=False).")

    # 2. One group per (block, decay / no decay), heads first, then from the top layer down to the embeddings.
    groups, members = [], {}
    def top_down(item):  # within one depth: heads, pooler, layer, embeddings
        key, entry = item
        rank = 3 if key == "embeddings" else 1 if key == "pooler" else 2 if key.startswith("layers.") else 0
        return entry["depth"], rank, key

    for key, entry in sorted(blocks.items(), key=top_down):
        for kind, wd, suffix in (("decay", weight_decay, ""), ("no_decay", 0.0, _NO_DECAY)):
            if not entry[kind]:
                continue
            group_name = entry["pattern"] + suffix
            groups.append({
                "params": [p for _, p in entry[kind]],
                "lr": head_lr if key.startswith("head:") and head_lr is not None else lr * decay ** entry["depth"],
                "weight_decay": wd,
                "name": group_name,
                "depth": entry["depth"],
                "block": "heads" if key.startswith("head:") else key,
            })
            members[group_name] = [n for n, _ in entry[kind]]

    # 3. Every trainable parameter in exactly one group.
    trainable = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    placed = [id(p) for g in groups for p in g["params"]]
    if len(placed) != len(set(placed)) or set(placed) != set(trainable):
        missing = sorted(trainable[i] for i in set(trainable) - set(placed))
        twice = sorted({trainable.get(i, "?") for i in placed if placed.count(i) > 1})
        raise AssertionError(f"Every trainable parameter must land in exactly one group; missing: {missing[:10]}, "
                             f"in more than one group: {twice[:10]}.")
    return LayerwiseGroups(groups=groups, members=members, lr=lr, decay=decay, weight_decay=weight_decay,
                           head_lr=head_lr, frozen=frozen)
