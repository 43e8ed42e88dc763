"""Gradient-conflict telemetry: where and when do the tasks pull the shared encoder apart?

At every telemetry step we keep the per-block Gram matrices of the K task gradients: for each block b
("embeddings.word", "embeddings.other", "layers.{i}", "pooler") and each pair of tasks (i, j), the dot
product g_i[b] . g_j[b]. Everything else follows from those few numbers:

- the cosine of a pair over all shared parameters (sum the blocks first) and per block;
- whether a pair conflicts (negative dot product, the condition PCGrad acts on);
- each task's gradient norm (the square root of the diagonal), overall and per block;

plus what surgery did: the norm of the plain combination (sum or mean), of the update actually applied, and of
what surgery removed, overall and per task. Yu et al. (2020) define conflict as a negative cosine; Mueller et
al. (2022, "Do Text-to-Text Learners Suffer From Multi-Task Conflict?") also look at gradient-norm
differences ("magnitude conflict"), which the norm-ratio plot shows.

Storage is a handful of small arrays (S steps x B blocks x K x K floats), saved as ``.npz`` with a JSON
header: no pickle, so any run (finished or interrupted) can be loaded and explored later. ``to_frame()``
gives the long pandas table the plots and widgets read.

Taught in notebooks/09_gradient_surgery.ipynb.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["GradientTelemetry", "FRAME_COLUMNS", "TASK_FRAME_COLUMNS", "ALL_BLOCKS"]

ALL_BLOCKS = "all"  # the block label of statistics over all shared parameters
FORMAT_VERSION = 1
FRAME_COLUMNS = ["step", "task_i", "task_j", "block", "dot", "cosine", "conflict", "norm_i", "norm_j",
                 "plain_norm", "update_norm", "removed_norm"]
TASK_FRAME_COLUMNS = ["step", "task", "block", "norm", "present", "removed_norm"]


class GradientTelemetry:
    """A growing record of per-block task-gradient Gram matrices and surgery norms.

    ``tasks``: task names (K); ``blocks``: block names (B) in display order; ``meta``: free JSON-able facts
    about the run (method, reduction, ...). Filled by ``GradientSurgery`` every ``telemetry_every`` steps.
    """

    def __init__(self, tasks: list[str], blocks: list[str], meta: dict | None = None) -> None:
        self.tasks = list(tasks)
        self.blocks = list(blocks)
        self.meta = dict(meta or {})
        self._steps: list[int] = []
        self._grams: list[np.ndarray] = []  # S x (B, K, K) float32
        self._present: list[np.ndarray] = []  # S x (K,) bool: did the task contribute a gradient that step
        self._norms: list[np.ndarray] = []  # S x (3,) float32: plain, update, removed
        self._removed_task: list[np.ndarray] = []  # S x (K,) float32 (NaN where undefined)

    def __len__(self) -> int:
        return len(self._steps)

    def __repr__(self) -> str:
        span = f"steps {self._steps[0]}..{self._steps[-1]}" if self._steps else "empty"
        return (f"GradientTelemetry({len(self)} records, {span}, tasks={self.tasks}, "
                f"{len(self.blocks)} blocks)")

    # ---- recording -------------------------------------------------------------------------------------------
    def record(self, step: int, block_grams: torch.Tensor, present: torch.Tensor, plain_norm: torch.Tensor,
               update_norm: torch.Tensor, removed_norm: torch.Tensor, removed_per_task: torch.Tensor) -> None:
        """Store one step. The only host synchronisation of the telemetry happens here (a few small copies)."""
        B, K = len(self.blocks), len(self.tasks)
        if tuple(block_grams.shape) != (B, K, K):
            raise ValueError(f"block_grams must be (B, K, K) = ({B}, {K}, {K}); got {tuple(block_grams.shape)}")
        scalars = torch.stack([plain_norm, update_norm, removed_norm]).float()  # (3,)
        self._steps.append(int(step))
        self._grams.append(block_grams.detach().float().cpu().numpy())
        self._present.append(present.detach().cpu().numpy().astype(bool))
        self._norms.append(scalars.detach().cpu().numpy())
        self._removed_task.append(removed_per_task.detach().float().cpu().numpy())

    # ---- arrays ----------------------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The stored arrays: steps (S,), grams (S, B, K, K), present (S, K), norms (S, 3), removed_task (S, K)."""
        B, K = len(self.blocks), len(self.tasks)
        if not self._steps:
            return {"steps": np.zeros(0, np.int64), "grams": np.zeros((0, B, K, K), np.float32),
                    "present": np.zeros((0, K), bool), "norms": np.zeros((0, 3), np.float32),
                    "removed_task": np.zeros((0, K), np.float32)}
        return {"steps": np.asarray(self._steps, np.int64), "grams": np.stack(self._grams).astype(np.float32),
                "present": np.stack(self._present), "norms": np.stack(self._norms).astype(np.float32),
                "removed_task": np.stack(self._removed_task).astype(np.float32)}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        S = len(arrays["steps"])
        self._steps = [int(s) for s in arrays["steps"]]
        self._grams = [np.asarray(arrays["grams"][s], np.float32) for s in range(S)]
        self._present = [np.asarray(arrays["present"][s], bool) for s in range(S)]
        self._norms = [np.asarray(arrays["norms"][s], np.float32) for s in range(S)]
        self._removed_task = [np.asarray(arrays["removed_task"][s], np.float32) for s in range(S)]

    # ---- the long table ----------------------------------------------------------------------------------------
    def to_frame(self):
        """One row per (step, task pair, block), block "all" included. Columns: ``FRAME_COLUMNS``.

        ``dot`` and ``cosine`` are g_i . g_j and its cosine over the block; ``norm_i``/``norm_j`` the two tasks'
        gradient norms over the block; ``conflict`` is ``dot < 0`` (False when a task had no gradient that
        step, where the cosine is NaN); ``plain_norm``, ``update_norm``, ``removed_norm`` are per step (the
        same on every row of a step): |plain sum or mean|, |update applied|, |plain - update|.
        """
        import pandas as pd  # imported here: pandas is heavy and only this function needs it

        a = self.arrays()
        S, K = len(a["steps"]), len(self.tasks)
        grams = np.concatenate([a["grams"].sum(axis=1, keepdims=True), a["grams"]], axis=1)  # (S, B+1, K, K)
        block_labels = [ALL_BLOCKS] + self.blocks
        iu, ju = np.triu_indices(K, k=1)  # the K (K - 1) / 2 pairs
        if S == 0 or len(iu) == 0:
            return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in FRAME_COLUMNS})
        sq = np.clip(np.diagonal(grams, axis1=2, axis2=3), 0, None)  # (S, B+1, K) squared norms
        norms = np.sqrt(sq.astype(np.float64))  # (S, B+1, K)
        dot = grams[:, :, iu, ju].astype(np.float64)  # (S, B+1, pairs)
        norm_i, norm_j = norms[:, :, iu], norms[:, :, ju]  # (S, B+1, pairs)
        both = a["present"][:, iu] & a["present"][:, ju]  # (S, pairs)
        both = np.broadcast_to(both[:, None, :], dot.shape)
        denom = norm_i * norm_j
        with np.errstate(invalid="ignore", divide="ignore"):
            cosine = np.where(both & (denom > 0), dot / np.where(denom > 0, denom, 1.0), np.nan)
        conflict = both & (dot < 0)
        n_pairs, n_blocks = len(iu), len(block_labels)
        shape = (S, n_blocks, n_pairs)
        frame = pd.DataFrame({
            "step": np.broadcast_to(a["steps"][:, None, None], shape).ravel(),
            "task_i": np.broadcast_to(np.asarray(self.tasks, dtype=object)[iu][None, None, :], shape).ravel(),
            "task_j": np.broadcast_to(np.asarray(self.tasks, dtype=object)[ju][None, None, :], shape).ravel(),
            "block": np.broadcast_to(np.asarray(block_labels, dtype=object)[None, :, None], shape).ravel(),
            "dot": dot.ravel(),
            "cosine": cosine.ravel(),
            "conflict": conflict.ravel(),
            "norm_i": norm_i.ravel(),
            "norm_j": norm_j.ravel(),
            "plain_norm": np.broadcast_to(a["norms"][:, 0, None, None], shape).ravel().astype(np.float64),
            "update_norm": np.broadcast_to(a["norms"][:, 1, None, None], shape).ravel().astype(np.float64),
            "removed_norm": np.broadcast_to(a["norms"][:, 2, None, None], shape).ravel().astype(np.float64),
        })
        frame["block"] = pd.Categorical(frame["block"], categories=block_labels, ordered=True)
        return frame

    def task_frame(self):
        """One row per (step, task, block): the task's gradient norm, and what surgery removed from it
        (``removed_norm``, on the "all" rows only; NaN elsewhere and when the method does not define it)."""
        import pandas as pd  # imported here: pandas is heavy and only this function needs it

        a = self.arrays()
        S, _K = len(a["steps"]), len(self.tasks)
        block_labels = [ALL_BLOCKS] + self.blocks
        if S == 0:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in TASK_FRAME_COLUMNS})
        grams = np.concatenate([a["grams"].sum(axis=1, keepdims=True), a["grams"]], axis=1)  # (S, B+1, K, K)
        norms = np.sqrt(np.clip(np.diagonal(grams, axis1=2, axis2=3), 0, None).astype(np.float64))  # (S, B+1, K)
        shape = norms.shape
        removed = np.full(shape, np.nan)
        removed[:, 0, :] = a["removed_task"]
        frame = pd.DataFrame({
            "step": np.broadcast_to(a["steps"][:, None, None], shape).ravel(),
            "task": np.broadcast_to(np.asarray(self.tasks, dtype=object)[None, None, :], shape).ravel(),
            "block": np.broadcast_to(np.asarray(block_labels, dtype=object)[None, :, None], shape).ravel(),
            "norm": norms.ravel(),
            "present": np.broadcast_to(a["present"][:, None, :], shape).ravel(),
            "removed_norm": removed.ravel(),
        })
        frame["block"] = pd.Categorical(frame["block"], categories=block_labels, ordered=True)
        return frame

    # ---- per-step summaries -----------------------------------------------------------------------------------
    def removed_fraction(self) -> np.ndarray:
        """(S,) per recorded step: |plain - update| / |plain|, the share of the plain combination's norm that
        surgery took away (0 without surgery; NaN where the plain combination is 0). A small number means the
        surgery barely changed the step."""
        norms = self.arrays()["norms"].astype(np.float64)  # (S, 3): plain, update, removed
        plain, removed = norms[:, 0], norms[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(plain > 0, removed / np.where(plain > 0, plain, 1.0), np.nan)

    def norm_ratio(self) -> np.ndarray:
        """(S,) per recorded step: the largest task-gradient norm over the smallest (over all shared parameters,
        among the tasks with a non-zero gradient that step; NaN with fewer than two). Large: one task dominates
        the summed step, the "magnitude conflict" of Mueller et al. (2022)."""
        a = self.arrays()
        sq = np.clip(np.diagonal(a["grams"].sum(axis=1), axis1=1, axis2=2), 0, None).astype(np.float64)  # (S, K)
        norms = np.where(a["present"] & (sq > 0), np.sqrt(sq), np.nan)  # (S, K)
        counts = np.sum(np.isfinite(norms), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN, as documented
            ratio = np.nanmax(norms, axis=1) / np.nanmin(norms, axis=1)
        return np.where(counts >= 2, ratio, np.nan)

    # ---- persistence ---------------------------------------------------------------------------------------------
    def _header(self) -> dict:
        return {"format": "mtkit.gradient_telemetry", "version": FORMAT_VERSION, "tasks": self.tasks,
                "blocks": self.blocks, "meta": self.meta}

    def save(self, path: str | os.PathLike) -> Path:
        """Write everything to ``path`` (.npz, no pickle), atomically: a crash never leaves half a file."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, header=np.array(json.dumps(self._header())), **self.arrays())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> GradientTelemetry:
        """Read a file written by ``save`` (numpy with ``allow_pickle=False``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No telemetry file at {path}. A training run writes telemetry.npz into its output "
                                    "folder (GradientTelemetry.save); an interrupted run keeps it in its checkpoints: "
                                    "GradientTelemetry.from_state_dict(state['surgery']['telemetry']).")
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                arrays = {k: data[k] for k in ("steps", "grams", "present", "norms", "removed_task")}
        except (KeyError, ValueError, OSError) as err:
            raise ValueError(f"{path} is not an mtkit gradient-telemetry file ({err}).") from err
        if header.get("format") != "mtkit.gradient_telemetry":
            raise ValueError(f"{path} is not an mtkit gradient-telemetry file (format {header.get('format')!r}).")
        if header.get("version", 0) > FORMAT_VERSION:
            raise ValueError(f"{path} was written by a newer mtkit (telemetry format {header['version']}); "
                             "upgrade mtkit to read it.")
        telemetry = cls(header["tasks"], header["blocks"], header.get("meta"))
        telemetry._set_arrays(arrays)
        return telemetry

    def state_dict(self) -> dict:
        """Tensors, strings and numbers only, so a checkpoint loads with ``torch.load(weights_only=True)``."""
        a = self.arrays()
        return {"header": json.dumps(self._header()),
                **{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in a.items()}}

    @classmethod
    def from_state_dict(cls, state: dict) -> GradientTelemetry:
        """Rebuild from ``state_dict()`` output, e.g. ``checkpoint["surgery"]["telemetry"]`` of an interrupted run."""
        header = json.loads(state["header"])
        telemetry = cls(header["tasks"], header["blocks"], header.get("meta"))
        telemetry.load_state_dict(state)
        return telemetry

    def load_state_dict(self, state: dict) -> None:
        header = json.loads(state["header"])
        if header["tasks"] != self.tasks or header["blocks"] != self.blocks:
            raise ValueError(f"telemetry state is for tasks {header['tasks']} and blocks {header['blocks']}, "
                             f"not {self.tasks} and {self.blocks}: resume with the same tasks and encoder.")
        self.meta = dict(header.get("meta") or self.meta)
        self._set_arrays({k: state[k].numpy() for k in ("steps", "grams", "present", "norms", "removed_task")})

    def truncate(self, last_step: int) -> None:
        """Drop records after ``last_step`` (resuming from an earlier checkpoint must not keep later steps)."""
        keep = [i for i, s in enumerate(self._steps) if s <= last_step]
        arrays = {k: v[keep] for k, v in self.arrays().items()}
        self._set_arrays(arrays)


def _dtype(column: str) -> str:
    if column in ("task_i", "task_j", "block"):
        return "object"
    if column == "conflict":
        return "bool"
    if column == "step":
        return "int64"
    return "float64"
