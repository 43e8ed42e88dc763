"""Attention maps: where each token of a sentence looks, per layer and head, as figures and as a widget.

``attention_maps(model, tokenizer, sentence)`` runs minBERT with ``output_attentions=True`` and returns the
probabilities of every layer and head (the rows of softmax(Q K^T / sqrt(d)) of Vaswani et al. 2017), with the
tokens. ``plot_attention`` draws one map (queries down, keys across), ``plot_attention_heads`` every head of one
layer, and ``AttentionViewer`` is an ipywidgets wrapper with sliders for the layer and the head (or the mean
over heads). Clark et al. 2019, "What Does BERT Look At? An Analysis of BERT's Attention" (arXiv 1906.04341)
describe the patterns to look for: heads that attend to the previous or next token, to [SEP], to [CLS], or
broadly.

Figures are built without pyplot's global state (``matplotlib.figure.Figure``) so that they can be shown,
saved or tested; the widget keeps the figure it shows in ``.figure`` and any error of its callbacks in
``.errors`` (re-raised outside a kernel, or when ``MTKIT_WIDGET_ERRORS=raise``), as ``mtkit.teach.widgets`` does.

Taught in notebooks/03_attention_and_minbert.ipynb.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = ["AttentionMaps", "attention_maps", "plot_attention", "plot_attention_heads", "AttentionViewer"]

MEAN = -1  # the head value meaning "mean over heads"


@dataclass
class AttentionMaps:
    """Attention probabilities of one sentence (or pair): ``probs`` (layers, heads, T, T) and its ``tokens``."""

    probs: np.ndarray  # (L, heads, T, T); row t = how query token t spreads its attention over the keys
    tokens: list[str]
    text: str = ""

    def __post_init__(self) -> None:
        self.probs = np.asarray(self.probs)
        if self.probs.ndim != 4 or self.probs.shape[2] != self.probs.shape[3]:
            raise ValueError(f"probs must have shape (layers, heads, T, T), got {self.probs.shape}.")
        if len(self.tokens) != self.probs.shape[2]:
            raise ValueError(f"{len(self.tokens)} tokens for maps over {self.probs.shape[2]} positions; pass one "
                             "token string per position ([CLS] and [SEP] included).")

    @property
    def num_layers(self) -> int:
        return self.probs.shape[0]

    @property
    def num_heads(self) -> int:
        return self.probs.shape[1]

    def map(self, layer: int, head: int = MEAN) -> np.ndarray:
        """(T, T) probabilities of one head, or the mean over heads for ``head=-1``."""
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"layer {layer} is out of range: this model has layers 0..{self.num_layers - 1}.")
        if head == MEAN:
            return self.probs[layer].mean(axis=0)
        if not 0 <= head < self.num_heads:
            raise ValueError(f"head {head} is out of range: each layer has heads 0..{self.num_heads - 1} "
                             f"(or -1 for the mean over heads).")
        return self.probs[layer, head]


@torch.no_grad()
def attention_maps(model, tokenizer, sentence: str, pair: str | None = None, max_length: int = 64) -> AttentionMaps:
    """Run ``model`` (a minBERT ``BertModel``) on one sentence (or pair) and collect its attention maps."""
    if not isinstance(sentence, str):
        raise TypeError(f"sentence must be a string, got {type(sentence).__name__}.")
    batch = tokenizer([sentence], pairs=None if pair is None else [pair], max_length=max_length)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = model(batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                    token_type_ids=batch["token_type_ids"].to(device), output_attentions=True)
    finally:
        model.train(was_training)
    probs = torch.stack([a[0] for a in out.attentions]).float().cpu().numpy()  # (L, heads, T, T)
    tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    text = sentence if pair is None else f"{sentence} [SEP] {pair}"
    return AttentionMaps(probs=probs, tokens=list(tokens), text=text)


def _draw(ax, matrix: np.ndarray, tokens: list[str], title: str, labels: bool = True, vmax: float = 1.0):
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=vmax, aspect="equal")
    T = len(tokens)
    if labels:
        ax.set_xticks(range(T), tokens, rotation=90, fontsize="small")
        ax.set_yticks(range(T), tokens, fontsize="small")
        ax.set_xlabel("key (the token attended to)")
        ax.set_ylabel("query (the token attending)")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title, fontsize="medium")
    return image


def plot_attention(maps: AttentionMaps, layer: int = 0, head: int = MEAN, ax=None) -> Figure:
    """One attention map as a heatmap: row = query token, column = key token, colour = probability (0 to 1)."""
    matrix = maps.map(layer, head)
    which = "mean over heads" if head == MEAN else f"head {head}"
    if ax is None:
        size = 2.5 + 0.32 * len(maps.tokens)
        fig = Figure(figsize=(size + 1.2, size), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    image = _draw(ax, matrix, maps.tokens, f"Attention, layer {layer}, {which}")
    fig.colorbar(image, ax=ax, label="attention probability (each row sums to 1)")
    return fig


def plot_attention_heads(maps: AttentionMaps, layer: int = 0, columns: int = 6) -> Figure:
    """Every head of one layer as small multiples (no token labels: look for shapes, then zoom in)."""
    heads = maps.num_heads
    rows = -(-heads // columns)
    fig = Figure(figsize=(2.0 * columns, 2.1 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    image = None
    for h, ax in enumerate(axes):
        if h < heads:
            image = _draw(ax, maps.map(layer, h), maps.tokens, f"head {h}", labels=False)
        else:
            ax.axis("off")
    fig.suptitle(f"Layer {layer}: all {heads} heads (rows = queries, columns = keys, {len(maps.tokens)} tokens)")
    fig.colorbar(image, ax=list(axes), shrink=0.6, label="attention probability")
    return fig


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython  # imported here: IPython exists only inside a notebook kernel
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class AttentionViewer:
    """Sliders for the layer and the head (-1 = mean over heads) and a dropdown of sentences; shows the map.

    ``maps``: one :class:`AttentionMaps` or a dict {label: AttentionMaps}. ``.figure`` is the figure shown,
    ``.selection`` the current choices, ``.errors`` the tracebacks of failed updates. Display it by leaving it
    as the last expression of a cell, or with ``display(viewer)``.
    """

    def __init__(self, maps, raise_errors: bool | None = None) -> None:
        import ipywidgets as w  # imported here: ipywidgets is optional (notebooks only)

        if isinstance(maps, AttentionMaps):
            maps = {maps.text or "sentence": maps}
        if not maps:
            raise ValueError("AttentionViewer needs at least one AttentionMaps (from attention_maps()).")
        self.maps = dict(maps)
        if raise_errors is None:
            raise_errors = not _in_kernel() or os.environ.get("MTKIT_WIDGET_ERRORS", "") == "raise"
        self.raise_errors = bool(raise_errors)
        self.errors: list[str] = []
        self.figure = None
        first = next(iter(self.maps.values()))
        self.sentence = w.Dropdown(options=list(self.maps), description="sentence",
                                   layout=w.Layout(width="90%"))
        self.layer = w.IntSlider(value=0, min=0, max=first.num_layers - 1, description="layer",
                                 continuous_update=False)
        self.head = w.IntSlider(value=MEAN, min=MEAN, max=first.num_heads - 1, description="head (-1 = mean)",
                                continuous_update=False, style={"description_width": "initial"})
        self.out = w.Output()
        for control in (self.sentence, self.layer, self.head):
            control.observe(self._update, names="value")
        self.widget = w.VBox([self.sentence, w.HBox([self.layer, self.head]), self.out])
        self._update()

    @property
    def selection(self) -> dict:
        return {"sentence": self.sentence.value, "layer": self.layer.value, "head": self.head.value}

    def update(self) -> None:
        maps = self.maps[self.sentence.value]
        self.layer.max = maps.num_layers - 1
        self.head.max = maps.num_heads - 1
        self.figure = plot_attention(maps, self.layer.value, self.head.value)
        self.out.clear_output(wait=True)
        if _in_kernel():
            from IPython.display import display  # imported here: IPython exists only inside a notebook kernel
            with self.out:
                display(self.figure)

    def _update(self, *_change) -> None:
        try:
            self.update()
        except Exception as err:
            self.errors.append("".join(traceback.format_exception(type(err), err, err.__traceback__)))
            self.out.clear_output(wait=True)
            self.out.append_stderr(f"AttentionViewer could not update: {err}\n")
            if self.raise_errors:
                raise

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
