"""Figures for the kit: gradient-conflict heatmaps and curves, run comparisons, learning curves.

Every function takes plain pandas tables (or a ``GradientTelemetry``, converted with ``to_frame()``) and
returns a ``matplotlib.figure.Figure``, built without pyplot's global state, so that notebooks can show it,
save it (``fig.savefig``) or wrap it in a widget (``mtkit.teach.widgets``) and tests can inspect it.

The conflict plots read the long table of ``mtkit.surgery.telemetry.GradientTelemetry.to_frame()``: one row
per (step, task pair, block) with ``cosine`` (cosine similarity of the two tasks' gradients over the block),
``conflict`` (cosine < 0, the condition on which PCGrad, Yu et al. 2020, projects), the gradient norms and
the per-step norms of the plain combination, the applied update and what surgery removed. Telemetry is
measured *before* surgery, so a PCGrad run and a run without surgery are comparable: the difference between
them is the path training took.

Taught in notebooks/07_multitask_training.ipynb (learning curves) and notebooks/09_gradient_surgery.ipynb.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtkit.model.names import canonical_block_order

__all__ = ["plot_conflict_heatmap", "plot_conflict_rate", "plot_norm_ratio", "compare_runs", "plot_learning_curves",
           "block_groups", "task_pairs", "select_pair", "ordered_blocks", "cosine_matrix", "conflict_rate_table",
           "CONFLICT_CMAP"]

CONFLICT_CMAP = "RdBu"  # diverging: red for negative cosine (conflict), white at 0, blue for agreement
_REQUIRED = ("step", "task_i", "task_j", "block", "cosine", "conflict")


# ---- input handling ---------------------------------------------------------------------------------------------------
def _as_frame(data, required: Sequence[str] = _REQUIRED, what: str = "telemetry") -> pd.DataFrame:
    if hasattr(data, "to_frame") and not isinstance(data, (pd.DataFrame, pd.Series)):
        data = data.to_frame()  # a GradientTelemetry
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame of {what} (GradientTelemetry.to_frame()) or a "
                        f"GradientTelemetry; got {type(data).__name__}.")
    missing = [c for c in required if c not in data.columns]
    if missing:
        raise ValueError(f"the {what} table lacks the columns {missing} (it has {list(data.columns)}); pass "
                         "GradientTelemetry.to_frame() or GradientTelemetry.load(path).")
    if data.empty:
        raise ValueError(f"the {what} table is empty: no telemetry was recorded yet (is telemetry_every > 0, and "
                         "did the run reach a telemetry step?).")
    return data


def task_pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The task pairs in a telemetry table, in the order they appear."""
    pairs = frame[["task_i", "task_j"]].drop_duplicates()
    return [(str(a), str(b)) for a, b in pairs.itertuples(index=False)]


def select_pair(frame: pd.DataFrame, pair: Sequence[str] | None = None) -> tuple[pd.DataFrame, tuple[str, str]]:
    """The rows of one task pair (either order; the first pair when None) and the pair as stored."""
    pairs = task_pairs(frame)
    if not pairs:
        raise ValueError("the telemetry table has no task pairs (a single task has nothing to conflict with).")
    if pair is None:
        pair = pairs[0]
    pair = tuple(pair)
    if pair not in pairs and pair[::-1] in pairs:
        pair = pair[::-1]
    if pair not in pairs:
        raise ValueError(f"no telemetry for the task pair {pair}; the pairs recorded are {pairs}.")
    rows = frame[(frame["task_i"] == pair[0]) & (frame["task_j"] == pair[1])]
    return rows, pair


def ordered_blocks(frame: pd.DataFrame) -> list[str]:
    """Block labels in network order (word embeddings first, "all" last if present)."""
    if isinstance(frame["block"].dtype, pd.CategoricalDtype):
        labels = [str(b) for b in frame["block"].cat.categories if (frame["block"] == b).any()]
    else:
        labels = canonical_block_order(str(b) for b in frame["block"].unique() if b != "all")
        labels = (["all"] if (frame["block"] == "all").any() else []) + labels
    per_block = [b for b in labels if b != "all"]
    return per_block + (["all"] if "all" in labels else [])


def block_groups(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Named groups of blocks for selectors: every block, embeddings, encoder layers, pooler, whole encoder,
    then each block on its own."""
    blocks = ordered_blocks(frame)
    per_block = [b for b in blocks if b != "all"]
    groups = {"every block": blocks,
              "embeddings": [b for b in per_block if b.startswith("embeddings")],
              "encoder layers": [b for b in per_block if b.startswith("layers.")],
              "pooler": [b for b in per_block if b == "pooler"],
              "whole encoder (all)": [b for b in blocks if b == "all"]}
    groups = {name: members for name, members in groups.items() if members}
    for b in per_block:
        groups.setdefault(b, [b])
    return groups


def _resolve_blocks(frame: pd.DataFrame, blocks) -> list[str]:
    if blocks is None:
        return ordered_blocks(frame)
    if isinstance(blocks, str):
        groups = block_groups(frame)
        if blocks in groups:
            return groups[blocks]
        blocks = [blocks]
    known = set(ordered_blocks(frame))
    unknown = [b for b in blocks if b not in known]
    if unknown:
        raise ValueError(f"unknown blocks {unknown}; this telemetry has {ordered_blocks(frame)} "
                         f"(groups: {list(block_groups(frame))}).")
    return list(blocks)


def _select_steps(frame: pd.DataFrame, steps) -> pd.DataFrame:
    if steps is None:
        return frame
    lo, hi = steps
    rows = frame[(frame["step"] >= lo) & (frame["step"] <= hi)]
    if rows.empty:
        raise ValueError(f"no telemetry between steps {lo} and {hi}; recorded steps run from "
                         f"{int(frame['step'].min())} to {int(frame['step'].max())}.")
    return rows


def _new_figure(ncols: int = 1, nrows: int = 1, width: float = 7.0, height: float = 3.8, **kw):
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _symmetric_limit(values: np.ndarray, vmax: float | None) -> float:
    if vmax is not None:
        return float(vmax)
    finite = np.abs(values[np.isfinite(values)])
    return max(float(finite.max()) if finite.size else 1.0, 1e-3)


# ---- conflict plots ------------------------------------------------------------------------------------------------------
def cosine_matrix(frame, pair=None, blocks=None, steps=None) -> pd.DataFrame:
    """The data of the heatmap: blocks (top of the network first) x steps, cosine of the pair's gradients."""
    frame = _as_frame(frame)
    rows, pair = select_pair(frame, pair)
    rows = _select_steps(rows, steps)
    order = _resolve_blocks(frame, blocks)
    rows = rows[rows["block"].astype(str).isin(order)]
    table = rows.pivot_table(index=rows["block"].astype(str), columns="step", values="cosine", aggfunc="mean",
                             dropna=False)
    top_first = [b for b in reversed(order) if b != "all"]
    top_first = (["all"] if "all" in order else []) + top_first
    return table.reindex(top_first)


def plot_conflict_heatmap(frame, pair: Sequence[str] | None = None, blocks=None, steps=None, ax=None,
                          vmax: float | None = None, cmap: str = CONFLICT_CMAP, title: str | None = None) -> Figure:
    """A block x step heatmap of the cosine between two tasks' gradients, centred at 0.

    ``pair``: two task names (default: the first pair recorded). ``blocks``: a list of blocks or a group name
    from ``block_groups`` (default: every block plus "all", the whole encoder). ``steps``: (first, last)
    inclusive. ``vmax``: colour limit, symmetric around 0 (default: the largest |cosine| shown, since
    high-dimensional gradients have small cosines; pass 1.0 for the absolute scale). Red cells are conflicts.
    """
    import seaborn as sns  # imported here: seaborn is heavy and only figures need it

    frame = _as_frame(frame)
    _, pair = select_pair(frame, pair)
    data = cosine_matrix(frame, pair, blocks, steps)
    limit = _symmetric_limit(data.to_numpy(dtype=float), vmax)
    if ax is None:
        fig, axes = _new_figure(width=max(6.0, min(14.0, 4 + 0.12 * data.shape[1])), height=1.2 + 0.38 * len(data))
        ax = axes[0, 0]
    else:
        fig = ax.figure
    with warnings.catch_warnings():  # seaborn 0.13 calls a matplotlib method that matplotlib 3.11 plans to rename
        warnings.filterwarnings("ignore", message="The set_bad function", category=PendingDeprecationWarning)
        # upright step labels, at most about 12 of them (seaborn's "auto" assumes rotated ones and lets them touch)
        stride = max(1, math.ceil(data.shape[1] / 12))
        sns.heatmap(data, ax=ax, cmap=cmap, center=0.0, vmin=-limit, vmax=limit, xticklabels=stride,
                    yticklabels=True,
                    cbar_kws={"label": "cosine (unitless; red < 0: conflict)"})
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("encoder block (top of the network first)")
    ax.set_title(title or f"Gradient agreement per block: {pair[0]} vs {pair[1]}")
    ax.tick_params(axis="x", labelrotation=0)
    return fig


def conflict_rate_table(frame, blocks="whole encoder (all)", window: int = 5, by: str = "pair", steps=None):
    """Steps x series: the fraction of conflicting (pair, block) cells per step, smoothed over ``window``
    records; one series per task pair (``by="pair"``) or per block (``by="block"``), plus "every pair"."""
    frame = _as_frame(frame)
    frame = _select_steps(frame, steps)
    order = _resolve_blocks(frame, blocks)
    rows = frame[frame["block"].astype(str).isin(order) & frame["cosine"].notna()].copy()
    if rows.empty:
        raise ValueError("no comparable task pairs in this selection (every pair had a task without a gradient).")
    rows["conflict"] = rows["conflict"].astype(float)
    if by == "pair":
        rows["series"] = rows["task_i"].astype(str) + " vs " + rows["task_j"].astype(str)
    elif by == "block":
        rows["series"] = rows["block"].astype(str)
    else:
        raise ValueError(f"by must be 'pair' or 'block'; got {by!r}.")
    table = rows.pivot_table(index="step", columns="series", values="conflict", aggfunc="mean")
    overall = rows.groupby("step")["conflict"].mean().rename("every pair" if by == "pair" else "every block")
    table[overall.name] = overall
    return table.rolling(max(1, int(window)), min_periods=1).mean()


def plot_conflict_rate(frame, blocks="whole encoder (all)", window: int = 5, by: str = "pair", steps=None,
                       ax=None, title: str | None = None) -> Figure:
    """Conflict rate over training: the fraction of recorded steps where cosine < 0, smoothed over ``window``
    telemetry records; one line per task pair (or per block with ``by="block"``), and a thick overall line."""
    table = conflict_rate_table(frame, blocks, window, by, steps)
    if ax is None:
        fig, axes = _new_figure()
        ax = axes[0, 0]
    else:
        fig = ax.figure
    overall = table.columns[-1]
    for column in table.columns[:-1]:
        ax.plot(table.index, table[column], label=str(column), linewidth=1.2)
    ax.plot(table.index, table[overall], label=str(overall), color="black", linewidth=2.5)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"conflict rate (fraction, {window}-record mean)")
    ax.set_title(title or "How often the tasks' gradients conflict (cosine < 0)")
    ax.legend(fontsize="small", loc="best")
    ax.grid(alpha=0.3)
    return fig


def plot_norm_ratio(frame, pairs: Sequence[Sequence[str]] | None = None, steps=None, axes=None,
                    title: str | None = None) -> Figure:
    """Two panels over training. Left: the gradient-norm ratio |g_i| / |g_j| of each task pair over the whole
    encoder (log scale; far from 1 means one task dominates the sum, Yu et al.'s "large difference in gradient
    magnitudes"). Right: what surgery did, |removed| / |plain combination| and |update| / |plain|."""
    frame = _as_frame(frame, _REQUIRED + ("norm_i", "norm_j", "plain_norm", "update_norm", "removed_norm"))
    frame = _select_steps(frame, steps)
    whole = frame[frame["block"].astype(str) == "all"]
    chosen = task_pairs(whole) if pairs is None else [select_pair(whole, p)[1] for p in pairs]
    if axes is None:
        fig, grid = _new_figure(ncols=2, width=6.0)
        axes = grid[0]
    else:
        fig = axes[0].figure
    left, right = axes
    for a, b in chosen:
        rows = whole[(whole["task_i"] == a) & (whole["task_j"] == b)]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = rows["norm_i"].to_numpy(float) / rows["norm_j"].to_numpy(float)
        ratio[~np.isfinite(ratio) | (ratio <= 0)] = np.nan
        left.plot(rows["step"], ratio, label=f"|g_{a}| / |g_{b}|")
    left.axhline(1.0, color="grey", linewidth=1, linestyle=":")
    left.set_yscale("log")
    left.set_xlabel("optimizer step")
    left.set_ylabel("gradient-norm ratio (unitless, log scale)")
    left.set_title("Magnitude: does one task dominate?")
    left.legend(fontsize="small")
    per_step = whole.drop_duplicates("step").sort_values("step")
    plain = per_step["plain_norm"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        removed = np.where(plain > 0, per_step["removed_norm"].to_numpy(float) / plain, np.nan)
        kept = np.where(plain > 0, per_step["update_norm"].to_numpy(float) / plain, np.nan)
    right.plot(per_step["step"], removed, label="|removed| / |plain|", color="tab:red")
    right.plot(per_step["step"], kept, label="|update| / |plain|", color="tab:green")
    right.set_xlabel("optimizer step")
    right.set_ylabel("fraction of the plain combination (unitless)")
    right.set_title("Surgery: how much was changed")
    right.legend(fontsize="small")
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def compare_runs(frame_a, frame_b, labels: Sequence[str] = ("pcgrad", "none"), pair: Sequence[str] | None = None,
                 blocks=None, steps=None, window: int = 5, vmax: float | None = None) -> Figure:
    """Two runs side by side: each run's cosine heatmap for ``pair`` on one shared colour scale, then both
    runs' overall conflict rate on one axis."""
    frame_a, frame_b = _as_frame(frame_a), _as_frame(frame_b)
    _, pair = select_pair(frame_a, pair)
    _, pair_b = select_pair(frame_b, pair)
    data = [cosine_matrix(frame_a, pair, blocks, steps), cosine_matrix(frame_b, pair_b, blocks, steps)]
    limit = _symmetric_limit(np.concatenate([d.to_numpy(dtype=float).ravel() for d in data]), vmax)
    fig, axes = _new_figure(ncols=3, width=5.5, height=1.4 + 0.38 * max(len(d) for d in data))
    for ax, frame, label in zip(axes[0][:2], (frame_a, frame_b), labels):
        plot_conflict_heatmap(frame, pair, blocks=blocks, steps=steps, ax=ax, vmax=limit,
                              title=f"{label}: {pair[0]} vs {pair[1]}")
    ax = axes[0][2]
    for frame, label in zip((frame_a, frame_b), labels):
        table = conflict_rate_table(frame, "whole encoder (all)", window, "pair", steps)
        ax.plot(table.index, table.iloc[:, -1], label=str(label), linewidth=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"conflict rate, every pair (fraction, {window}-record mean)")
    ax.set_title("Conflict rate")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.suptitle(f"{labels[0]} vs {labels[1]} (telemetry measured before surgery)")
    return fig


# ---- learning curves --------------------------------------------------------------------------------------------------------
def plot_learning_curves(history, tasks: Sequence[str] | None = None, metrics: Sequence[str] | None = None,
                         title: str | None = None) -> Figure:
    """Per-epoch metrics, one panel per task.

    ``history``: a DataFrame (or a list of dicts) in long format with columns ``epoch``, ``task``, ``metric``
    and ``value``, and optionally ``split`` ("train", "dev"; drawn as solid and dashed lines), e.g.::

        epoch  task  metric    value  split
        1      sst   accuracy  0.41   dev
        1      sst   loss      1.32   train
    """
    if isinstance(history, list):
        history = pd.DataFrame(history)
    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"history must be a DataFrame (or list of dicts) with columns epoch, task, metric, value; "
                        f"got {type(history).__name__}.")
    missing = [c for c in ("epoch", "task", "metric", "value") if c not in history.columns]
    if missing:
        raise ValueError(f"history lacks the columns {missing} (it has {list(history.columns)}); the long format "
                         "has one row per (epoch, task, metric[, split]) with the number in 'value'.")
    if history.empty:
        raise ValueError("history is empty: nothing to plot yet.")
    if tasks is not None:
        history = history[history["task"].isin(tasks)]
    if metrics is not None:
        history = history[history["metric"].isin(metrics)]
    task_list = list(dict.fromkeys(history["task"]))
    fig, axes = _new_figure(ncols=len(task_list), width=4.5, height=3.5)
    styles = {"train": "-", "dev": "--", "test": ":"}
    for ax, task in zip(axes[0], task_list):
        rows = history[history["task"] == task]
        keys = ["metric", "split"] if "split" in rows.columns else ["metric"]
        for key, group in rows.groupby(keys, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            group = group.sort_values("epoch")
            split = key[1] if len(key) > 1 else None
            ax.plot(group["epoch"], group["value"], marker="o", linestyle=styles.get(split, "-"),
                    label=" ".join(str(k) for k in key))
        ax.set_title(str(task))
        ax.set_xlabel("epoch")
        ax.set_ylabel("metric value")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title or "Learning curves per task")
    return fig
