"""The parameter-name contract of minBERT: which block and which depth a parameter belongs to, the canonical
order of the blocks, and names seen through a wrapper (``encoder.`` / ``bert.``). Layer-wise lr decay, the
gradient telemetry and the plots all read names through it (docs/ARCHITECTURE.md)."""
from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ['block_of', 'depth_of', 'strip_encoder_prefix', 'infer_num_layers', 'canonical_block_order']

_LAYER_RE = re.compile(
    r"^layers\.(\d+)\.(attention\.(query|key|value|output)|attention_norm|ffn\.(up|down)|ffn_norm)\.(weight|bias)$"
)
_EMBEDDING_OTHER = {
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "embeddings.layer_norm.weight",
    "embeddings.layer_norm.bias",
}


def _strip_prefix(name: str) -> str:
    """Accept names seen from a wrapper (``encoder.layers.0...``, ``bert.layers.0...``) as well as bare ones."""
    for prefix in ("encoder.", "bert."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def block_of(name: str, num_layers: int) -> str:
    """The block an encoder parameter belongs to.

    Returns ``"embeddings.word"`` (the word-embedding matrix), ``"embeddings.other"`` (position and token-type
    tables and the embedding LayerNorm), ``"layers.{i}"`` or ``"pooler"``. A leading ``encoder.`` or ``bert.``
    (the name as seen from a model that wraps the encoder) is ignored. Any other name raises ``KeyError``.

    Taught in notebooks/08_layerwise_lr_decay.ipynb.
    """
    bare = _strip_prefix(name)
    if bare == "embeddings.word_embeddings.weight":
        return "embeddings.word"
    if bare in _EMBEDDING_OTHER:
        return "embeddings.other"
    if bare in ("pooler.dense.weight", "pooler.dense.bias"):
        return "pooler"
    match = _LAYER_RE.match(bare)
    if match:
        i = int(match.group(1))
        if i >= num_layers:
            raise KeyError(f"{name!r} names layer {i}, but the encoder has {num_layers} layers (0..{num_layers - 1}).")
        return f"layers.{i}"
    raise KeyError(
        f"{name!r} is not a minBERT encoder parameter. Expected names like 'embeddings.word_embeddings.weight', "
        "'layers.0.attention.query.weight' or 'pooler.dense.bias' (see docs/ARCHITECTURE.md); task heads are "
        "not encoder parameters."
    )


def depth_of(name: str, num_layers: int) -> int:
    """Depth of an encoder parameter counted from the top, for layer-wise learning-rate decay: the exponent of
    the decay factor, so that ``lr_group = lr * decay ** depth``.

    The rule of Sun et al. 2019 ("How to Fine-Tune BERT for Text Classification?", arXiv 1905.05583, section
    5.3.4: eta^(k-1) = xi * eta^k, the top layer at the base lr) and of report D (the i-th layer from the top at
    lr * xi^(i-1)): the top layer ``layers.{L-1}`` is at depth 0 (the base lr), ``layers.{i}`` at ``L - 1 - i``
    (the bottom layer at ``L - 1``), the pooler with the top layer (0), and the embeddings one step below the
    bottom layer, at ``L``. With ``L = num_layers``::

        pooler, layers.{L-1}    depth 0       lr
        layers.{i}              depth L-1-i   lr * decay ** (L - 1 - i)
        layers.0                depth L-1     lr * decay ** (L - 1)
        embeddings.*            depth L       lr * decay ** L

    Task heads are not encoder parameters; ``mtkit.optim.layerwise_lr_groups`` gives them the base lr (or
    ``head_lr``). Unknown names raise ``KeyError`` (see ``block_of``).

    Taught in notebooks/08_layerwise_lr_decay.ipynb.
    """
    block = block_of(name, num_layers)
    if block == "pooler":
        return 0
    if block.startswith("embeddings"):
        return num_layers
    return num_layers - 1 - int(block.split(".")[1])


_ROOTS = ("embeddings", "layers", "pooler")


def strip_encoder_prefix(name: str) -> str:
    """'encoder.layers.3.ffn.up.weight' -> 'layers.3.ffn.up.weight' (names already without a prefix pass)."""
    parts = name.split(".")
    for index, part in enumerate(parts):
        if part in _ROOTS:
            return ".".join(parts[index:])
    return name


def infer_num_layers(names: Iterable[str]) -> int:
    """The number of encoder layers the names mention (largest ``layers.{i}`` index + 1; 0 if none)."""
    indices = [int(m.group(1)) for m in (re.match(r"layers\.(\d+)\.", strip_encoder_prefix(n)) for n in names) if m]
    return max(indices) + 1 if indices else 0


def canonical_block_order(blocks: Iterable[str]) -> list[str]:
    """Embeddings (word, then other), layers by index, pooler, then any other block in first-seen order."""
    seen = list(dict.fromkeys(blocks))

    def key(block: str) -> tuple:
        if block == "embeddings.word":
            return (0, 0)
        if block == "embeddings.other":
            return (1, 0)
        match = re.fullmatch(r"layers\.(\d+)", block)
        if match:
            return (2, int(match.group(1)))
        if block == "pooler":
            return (3, 0)
        return (4, seen.index(block))

    return sorted(seen, key=key)
