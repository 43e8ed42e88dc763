"""Flat, preallocated per-task gradient buffers over the shared encoder parameters.

Gradient surgery needs each task's gradient of the *shared* parameters as one flat vector, a row of a (K, P)
matrix. The popular PyTorch port of PCGrad rebuilds those vectors every step with ``clone()`` and
``torch.cat`` over *all* parameters, heads included (which both under-projects the shared conflict and leaks
projection coefficients into the heads). Here:

- one float32 buffer for the (K, P) matrix is allocated once, over the shared parameters only;
- it is stored block by block ("embeddings.word", "embeddings.other", "layers.0", ..., "pooler"): block b
  is one contiguous (K, n_b) matrix, so the per-block Gram matrices (the telemetry) and the full one (their
  sum, for PCGrad) come from one pass of contiguous matrix products (slicing columns out of a row-major
  (K, P) matrix instead would make strided products, about twice as slow on a CPU);
- after task k's ``backward()``, ``capture(k)`` copies (first micro-batch of the step) or adds (later
  micro-batches: gradient accumulation) every shared ``.grad`` into row k and sets it to ``None``; the task
  heads' ``.grad`` are never touched;
- the combined update is written once per optimizer step into a preallocated flat buffer, and every shared
  parameter's ``.grad`` becomes a view of it, so the optimizer sees ordinary gradients.

Rows are float32 whatever the parameters' dtype (bf16 autocast keeps float32 parameters, so their grads are
float32 already; a model cast to bf16 has bf16 grads, which are upcast here and written back as bf16).

Taught in notebooks/09_gradient_surgery.ipynb.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from mtkit.model.names import block_of, canonical_block_order, infer_num_layers, strip_encoder_prefix
from mtkit.surgery.gramian import gram_matrix

__all__ = ["FlatGradBuffers", "strip_encoder_prefix", "infer_num_layers", "canonical_block_order"]


def _default_block_fn() -> Callable[[str, int], str]:

    return block_of


class FlatGradBuffers:
    """A (K, P) float32 matrix of per-task gradients over shared parameters, plus the flat update buffer.

    Column j of the matrix is shared number j in the layout ``names`` / ``offsets`` (block by block); the
    matrix is stored as one contiguous (K, n_b) chunk per block (``chunks``). ``rows`` assembles the (K, P)
    matrix as a copy, for inspection.

    ``named_params``: (name, parameter) pairs of the shared parameters (frozen ones are left out).
    ``num_rows``: K, the number of tasks. ``block_fn(name, num_layers) -> block`` groups parameters for
    telemetry (default ``mtkit.model.names.block_of``); names may carry a prefix such as ``encoder.``.
    """

    def __init__(self, named_params: Iterable[tuple[str, torch.nn.Parameter]], num_rows: int,
                 num_layers: int | None = None, block_fn: Callable[[str, int], str] | None = None) -> None:
        pairs = [(name, p) for name, p in named_params if p.requires_grad]
        if not pairs:
            raise ValueError("FlatGradBuffers got no trainable shared parameters.")
        names = [n for n, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError("shared parameter names must be unique; got duplicates: "
                             f"{sorted({n for n in names if names.count(n) > 1})}")
        if len({id(p) for _, p in pairs}) != len(pairs):
            raise ValueError("the same shared parameter is listed twice (tied weights?); list each tensor once.")
        devices = {p.device for _, p in pairs}
        if len(devices) != 1:
            raise ValueError(f"shared parameters live on several devices {sorted(map(str, devices))}; "
                             "move the model to one device before building gradient surgery.")
        self.device = devices.pop()
        self.num_layers = infer_num_layers(names) if num_layers is None else int(num_layers)
        block_fn = block_fn or _default_block_fn()
        blocks = []
        for name in names:
            try:
                blocks.append(block_fn(strip_encoder_prefix(name), self.num_layers))
            except KeyError:
                raise ValueError(
                    f"Gradient surgery projects the shared encoder only, but {name!r} is not an encoder parameter "
                    "(expected names like 'embeddings.word_embeddings.weight' or 'layers.3.ffn.up.weight', "
                    "optionally prefixed by 'encoder.'). Pass model.encoder.named_parameters(): task heads are "
                    "never projected.") from None
        self.block_names = canonical_block_order(blocks)
        rank = {b: i for i, b in enumerate(self.block_names)}
        # Stable sort by block, so each block is one contiguous column range of the rows.
        order = sorted(range(len(pairs)), key=lambda i: rank[blocks[i]])
        self.names = [names[i] for i in order]
        self.params = [pairs[i][1] for i in order]
        self.param_blocks = [blocks[i] for i in order]
        self.numels = [p.numel() for p in self.params]
        self.offsets = []
        offset = 0
        for n in self.numels:
            self.offsets.append(offset)
            offset += n
        self.num_params = offset  # P
        self.block_bounds: list[tuple[int, int]] = []  # (start, end) column range of each block
        for block in self.block_names:
            idx = [i for i, b in enumerate(self.param_blocks) if b == block]
            start, end = self.offsets[idx[0]], self.offsets[idx[-1]] + self.numels[idx[-1]]
            self.block_bounds.append((start, end))
        self.num_rows = int(num_rows)
        K, P = self.num_rows, self.num_params
        self.storage = torch.zeros(K * P, dtype=torch.float32, device=self.device)  # the (K, P) matrix, by block
        self.chunks = [self.storage[K * s: K * e].view(K, e - s) for s, e in self.block_bounds]  # B x (K, n_b)
        self.update = torch.zeros(P, dtype=torch.float32, device=self.device)  # (P,)
        block_index = {b: i for i, b in enumerate(self.block_names)}
        self._row_views = [[self._chunk_view(block_index[self.param_blocks[i]], k, i) for i in range(len(self.params))]
                           for k in range(K)]  # K lists of param-shaped views into the chunks
        # The .grad views handed to the optimizer: into `update` for float32 parameters, else into a buffer
        # of the parameter's dtype filled from `update` at write time.
        self._cast = {dt: torch.zeros(P, dtype=dt, device=self.device)
                      for dt in {p.dtype for p in self.params} if dt != torch.float32}
        self._grad_views = [self._view(self._cast.get(p.dtype, self.update), i) for i, p in enumerate(self.params)]
        self.captured = [False] * K  # has row k received a gradient since the last reset?

    # ---- layout helpers ---------------------------------------------------------------------------------
    def _chunk_view(self, b: int, k: int, i: int) -> torch.Tensor:
        start = self.offsets[i] - self.block_bounds[b][0]  # offset of parameter i inside its block
        return self.chunks[b][k, start: start + self.numels[i]].view(self.params[i].shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.storage.dtype

    @property
    def rows(self) -> torch.Tensor:
        """The (K, P) matrix of task gradients, assembled as a copy (row k = task k, in this layout)."""
        return torch.cat(self.chunks, dim=1)

    def _view(self, flat: torch.Tensor, i: int) -> torch.Tensor:
        return flat[self.offsets[i]: self.offsets[i] + self.numels[i]].view(self.params[i].shape)

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [self._view(flat, i) for i in range(len(self.params))]

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat (P,) vector in this layout as {name: tensor shaped like the parameter}."""
        return {name: self._view(flat, i) for i, name in enumerate(self.names)}

    def flatten(self, tensors: dict[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-parameter tensors (by name, or in ``self.names`` order) as one (P,) float32 vector in this layout."""
        if isinstance(tensors, dict):
            tensors = [tensors[name] for name in self.names]
        return torch.cat([t.reshape(-1).float() for t in tensors])

    # ---- capture -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def capture(self, k: int) -> None:
        """Move the shared parameters' ``.grad`` into row k (copy on the first call of a step, add after)."""
        grads = [p.grad for p in self.params]
        have = [i for i, g in enumerate(grads) if g is not None]
        for i in have:
            g = grads[i]
            if g.is_sparse:
                raise ValueError(f"{self.names[i]} has a sparse gradient; gradient surgery needs dense gradients "
                                 "(build the embedding with sparse=False).")
            if g.device != self.device:
                raise ValueError(f"{self.names[i]}'s gradient is on {g.device} but the surgery buffers are on "
                                 f"{self.device}: build GradientSurgery after model.to(device).")
        views = self._row_views[k]
        if not self.captured[k] and len(have) != len(grads):
            self._zero_row(k)  # some parameter got no gradient from this task: its slice must read 0
        if not self.captured[k] and len(have) == len(grads):
            _foreach_copy([views[i] for i in have], [grads[i] for i in have])
        else:
            torch._foreach_add_([views[i] for i in have], [grads[i].to(torch.float32) for i in have])
        for p in self.params:
            p.grad = None
        self.captured[k] = True

    def finalize_rows(self) -> None:
        """Zero the rows of tasks that captured nothing this step (they hold last step's gradient)."""
        for k, done in enumerate(self.captured):
            if not done:
                self._zero_row(k)

    def _zero_row(self, k: int) -> None:
        for chunk in self.chunks:
            chunk[k].zero_()

    def reset(self) -> None:
        """Mark every row empty. Rows are not zeroed here: the next capture overwrites instead of adding."""
        self.captured = [False] * self.num_rows

    # ---- statistics and write-back -------------------------------------------------------------------------
    @torch.no_grad()
    def block_grams(self) -> torch.Tensor:
        """(B, K, K) float64: per block b, the dot products of the K rows restricted to b's columns."""
        return torch.stack([gram_matrix(chunk) for chunk in self.chunks])  # (B, K, K)

    @torch.no_grad()
    def write_update(self, coefficients: torch.Tensor) -> None:
        """update = coefficients @ rows, then every shared ``.grad`` becomes a view of it."""
        c = coefficients.to(device=self.device, dtype=torch.float32)  # (K,)
        for (s, e), chunk in zip(self.block_bounds, self.chunks):
            torch.mv(chunk.T, c, out=self.update[s:e])  # (n_b,) = (n_b, K) @ (K,)
        self._publish()

    @torch.no_grad()
    def write_flat(self, update: torch.Tensor) -> None:
        """Every shared ``.grad`` becomes a view of ``update``, a (P,) vector in this layout (``rows``' columns)."""
        if tuple(update.shape) != (self.num_params,):
            raise ValueError(f"the update must be one flat vector of the {self.num_params} shared parameters, shape "
                             f"({self.num_params},); got {tuple(update.shape)}.")
        self.update.copy_(update)
        self._publish()

    def _publish(self) -> None:
        for flat in self._cast.values():
            flat.copy_(self.update)
        for p, view in zip(self.params, self._grad_views):
            p.grad = view


def _foreach_copy(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    if hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(dst, src)
    else:  # older torch
        for d, s in zip(dst, src):
            d.copy_(s)