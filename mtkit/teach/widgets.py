"""Interactive widgets (ipywidgets 8), thin wrappers over ``mtkit.teach.plots`` and ``mtkit.surgery.pcgrad``.

- ``ConflictExplorer``: pick a run, a task pair, a group of layers, a step range and a view (heatmap,
  conflict rate, norm ratio, or a comparison with a second run) and see the figure.
- ``ProjectionToy``: two gradient vectors in the plane, set by angle and length sliders, and what PCGrad
  (Yu et al. 2020) does to them: each conflicting gradient is projected onto the normal line of the other.

Each widget keeps what it shows in attributes (``.figure``, ``.data``) so that tests and learners can read
them, and records every exception raised while updating in ``.errors``. ipywidgets' ``Output`` area and
``interact`` swallow exceptions raised in callbacks (they print a traceback, or only log a warning outside a
kernel); here an error is shown in the widget *and*, when ``raise_errors`` is true (the default outside an
IPython kernel, e.g. in pytest, and inside one when the environment sets ``MTKIT_WIDGET_ERRORS=raise``, e.g.
for notebook tests), raised again so that a broken callback fails loudly.

Taught in notebooks/09_gradient_surgery.ipynb.
"""
from __future__ import annotations

import math
import os
import traceback
from collections.abc import Mapping

import numpy as np
import torch

from mtkit.surgery.pcgrad import pcgrad
from mtkit.teach import plots

__all__ = ["ConflictExplorer", "ProjectionToy"]


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython  # imported here: IPython exists only inside a notebook kernel
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _WidgetBase:
    """Shared plumbing: an Output area, error recording, and display through ``.widget``."""

    def __init__(self, raise_errors: bool | None) -> None:
        import ipywidgets as w  # imported here: ipywidgets is optional (notebooks only)

        if raise_errors is None:  # strict outside a kernel, or when a notebook test run asks for it
            raise_errors = not _in_kernel() or os.environ.get("MTKIT_WIDGET_ERRORS", "") == "raise"
        self.raise_errors = bool(raise_errors)
        self.errors: list[str] = []
        self.figure = None
        self.out = w.Output()
        self.widget = None  # set by subclasses

    def _show(self, fig) -> None:
        from IPython.display import display  # imported here: IPython exists only inside a notebook kernel

        self.out.clear_output(wait=True)
        if _in_kernel():
            with self.out:
                display(fig)

    def _guarded_update(self, *_change) -> None:
        self._guard(self.update)

    def _guard(self, action) -> None:
        try:
            action()
        except Exception as err:  # shown in the widget, recorded, and re-raised where nobody would see it
            message = "".join(traceback.format_exception(type(err), err, err.__traceback__))
            self.errors.append(message)
            self.out.clear_output(wait=True)
            self.out.append_stderr(f"{type(self).__name__} could not update: {err}\n")
            if self.raise_errors:
                raise

    def update(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a frontend
        from IPython.display import display  # imported here: IPython exists only inside a notebook kernel

        display(self.widget)


class ConflictExplorer(_WidgetBase):
    """Explore gradient-conflict telemetry of one or more runs.

    ``runs``: a ``GradientTelemetry`` or its ``to_frame()`` table, or a dict {run name: either}. Selectors:
    run, "compare with" (another run or none), task pair, layer group (``mtkit.teach.plots.block_groups``), step
    range, and view ("heatmap", "conflict rate", "norm ratio"). ``.figure`` is the figure shown; ``.data`` the
    table it was drawn from; ``.selection`` the current choices.
    """

    VIEWS = ("heatmap", "conflict rate", "norm ratio")
    NO_COMPARE = "(none)"

    def __init__(self, runs, raise_errors: bool | None = None, window: int = 5) -> None:
        import ipywidgets as w  # imported here: ipywidgets is optional (notebooks only)

        super().__init__(raise_errors)
        if not isinstance(runs, Mapping):
            runs = {"run": runs}
        if not runs:
            raise ValueError("ConflictExplorer needs at least one run: {name: GradientTelemetry or table}.")
        self.frames = {str(name): plots._as_frame(run) for name, run in runs.items()}
        self.window = int(window)
        self.data = None
        first = next(iter(self.frames))
        layout = w.Layout(width="auto")
        self.run = w.Dropdown(options=list(self.frames), value=first, description="run", layout=layout)
        self.compare = w.Dropdown(options=[self.NO_COMPARE] + list(self.frames), value=self.NO_COMPARE,
                                  description="compare with", layout=layout, style={"description_width": "initial"})
        self.view = w.ToggleButtons(options=list(self.VIEWS), value="heatmap", description="view")
        self.pair = w.Dropdown(description="task pair", layout=layout)
        self.group = w.Dropdown(description="layers", layout=layout)
        self.steps = w.IntRangeSlider(description="steps", continuous_update=False,
                                      layout=w.Layout(width="60%"))
        self._syncing = False
        self._sync_options()
        for control in (self.compare, self.view, self.pair, self.group, self.steps):
            control.observe(self._guarded_update, names="value")
        self.run.observe(self._on_run, names="value")
        self.widget = w.VBox([w.HBox([self.run, self.compare]), self.view, w.HBox([self.pair, self.group]),
                              self.steps, self.out])
        self._guarded_update()

    @property
    def selection(self) -> dict:
        return {"run": self.run.value, "compare": self.compare.value, "view": self.view.value,
                "pair": self.pair.value, "layers": self.group.value, "steps": tuple(self.steps.value)}

    def _sync_options(self) -> None:
        """Fit the pair, layer and step choices to the selected run, keeping the current ones when possible."""
        frame = self.frames[self.run.value]
        self._syncing = True
        try:
            pairs = plots.task_pairs(frame)
            labels = [f"{a} vs {b}" for a, b in pairs]
            self._pairs = dict(zip(labels, pairs))
            old = self.pair.value
            self.pair.options = labels
            self.pair.value = old if old in labels else labels[0]
            groups = plots.block_groups(frame)
            old = self.group.value
            self.group.options = list(groups)
            self.group.value = old if old in groups else next(iter(groups))
            lo, hi = int(frame["step"].min()), int(frame["step"].max())
            self.steps.max = max(hi, self.steps.max)  # widen first, then narrow: min <= max at every moment
            self.steps.min = min(lo, self.steps.min)
            self.steps.min, self.steps.max = lo, hi
            self.steps.value = (lo, hi)
        finally:
            self._syncing = False

    def _on_run(self, _change) -> None:
        def sync_then_update():
            self._sync_options()
            self.update()

        self._guard(sync_then_update)

    def _guarded_update(self, *change) -> None:
        if self._syncing:
            return
        super()._guarded_update(*change)

    def update(self) -> None:
        frame = self.frames[self.run.value]
        pair = self._pairs[self.pair.value]
        layers = self.group.value
        steps = tuple(self.steps.value)
        if self.compare.value != self.NO_COMPARE:
            other = self.frames[self.compare.value]
            fig = plots.compare_runs(frame, other, labels=(self.run.value, self.compare.value), pair=pair,
                                     blocks=layers, steps=steps, window=self.window)
            self.data = {"a": plots.cosine_matrix(frame, pair, layers, steps),
                         "b": plots.cosine_matrix(other, pair, layers, steps)}
        elif self.view.value == "heatmap":
            fig = plots.plot_conflict_heatmap(frame, pair, blocks=layers, steps=steps)
            self.data = plots.cosine_matrix(frame, pair, layers, steps)
        elif self.view.value == "conflict rate":
            fig = plots.plot_conflict_rate(frame, blocks=layers, window=self.window, steps=steps)
            self.data = plots.conflict_rate_table(frame, layers, self.window, "pair", steps)
        else:
            fig = plots.plot_norm_ratio(frame, pairs=[pair], steps=steps)
            rows, _ = plots.select_pair(plots._select_steps(frame, steps), pair)
            self.data = rows[rows["block"].astype(str) == "all"][["step", "norm_i", "norm_j", "plain_norm",
                                                                    "update_norm", "removed_norm"]]
        self.figure = fig
        self._show(fig)


class ProjectionToy(_WidgetBase):
    """Two 2-D task gradients and their PCGrad projections.

    Sliders set each gradient's angle (degrees) and length. The figure draws g1 and g2 (solid), the projected
    g1^PC and g2^PC (dashed), the PCGrad update g1^PC + g2^PC (green) and the plain sum g1 + g2 (grey). When
    the gradients conflict (cosine < 0), each is projected onto the line normal to the other (dotted).
    ``.data`` holds every vector and the cosine; the computation is ``mtkit.surgery.pcgrad`` itself.
    """

    def __init__(self, angle_1: float = 0.0, length_1: float = 1.0, angle_2: float = 135.0, length_2: float = 1.0,
                 raise_errors: bool | None = None) -> None:
        import ipywidgets as w  # imported here: ipywidgets is optional (notebooks only)

        super().__init__(raise_errors)
        style = {"description_width": "initial"}
        self.angle_1 = w.FloatSlider(value=angle_1, min=-180, max=180, step=1, description="angle of g1 (deg)",
                                     style=style)
        self.length_1 = w.FloatSlider(value=length_1, min=0.0, max=3.0, step=0.05, description="length of g1",
                                      style=style)
        self.angle_2 = w.FloatSlider(value=angle_2, min=-180, max=180, step=1, description="angle of g2 (deg)",
                                     style=style)
        self.length_2 = w.FloatSlider(value=length_2, min=0.0, max=3.0, step=0.05, description="length of g2",
                                      style=style)
        self.show_sum = w.Checkbox(value=True, description="show the plain sum g1 + g2")
        self.data: dict = {}
        for control in (self.angle_1, self.length_1, self.angle_2, self.length_2, self.show_sum):
            control.observe(self._guarded_update, names="value")
        self.widget = w.VBox([w.HBox([w.VBox([self.angle_1, self.length_1]), w.VBox([self.angle_2, self.length_2])]),
                              self.show_sum, self.out])
        self._guarded_update()

    @staticmethod
    def _vector(angle_deg: float, length: float) -> np.ndarray:
        a = math.radians(angle_deg)
        return np.array([length * math.cos(a), length * math.sin(a)])

    def compute(self) -> dict:
        """The vectors for the current slider values (float64 numpy arrays of shape (2,))."""

        g1 = self._vector(self.angle_1.value, self.length_1.value)
        g2 = self._vector(self.angle_2.value, self.length_2.value)
        grads = torch.tensor(np.stack([g1, g2]), dtype=torch.float64)  # (2, 2)
        result = pcgrad(grads, return_details=True)
        projected = (result.weights @ grads).numpy()  # (2, 2)
        n1, n2 = np.linalg.norm(g1), np.linalg.norm(g2)
        cosine = float(g1 @ g2 / (n1 * n2)) if n1 > 0 and n2 > 0 else float("nan")
        return {"g1": g1, "g2": g2, "g1_pc": projected[0], "g2_pc": projected[1],
                "update": result.update.numpy(), "plain_sum": g1 + g2, "cosine": cosine,
                "conflict": bool(g1 @ g2 < 0)}

    def update(self) -> None:
        from matplotlib.figure import Figure  # imported here: matplotlib is heavy and only figures need it

        d = self.compute()
        self.data = d
        fig = Figure(figsize=(5.5, 5.5), layout="constrained")
        ax = fig.subplots()
        vectors = [d["g1"], d["g2"], d["update"]] + ([d["plain_sum"]] if self.show_sum.value else [])
        reach = max(1.0, *(float(np.linalg.norm(v)) for v in vectors)) * 1.15

        def arrow(v, color, label, style="-", width=2.0):
            ax.annotate("", xy=(v[0], v[1]), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="-|>", color=color, linestyle=style, linewidth=width))
            ax.plot([], [], color=color, linestyle=style, linewidth=width, label=label)  # legend entry

        if d["conflict"]:
            for v, color in ((d["g2"], "tab:orange"), (d["g1"], "tab:blue")):
                normal = np.array([-v[1], v[0]]) / max(np.linalg.norm(v), 1e-12)
                ax.plot([-reach * normal[0], reach * normal[0]], [-reach * normal[1], reach * normal[1]],
                        color=color, linestyle=":", linewidth=1)
        arrow(d["g1"], "tab:blue", "g1")
        arrow(d["g2"], "tab:orange", "g2")
        if d["conflict"]:
            arrow(d["g1_pc"], "tab:blue", "g1 projected (g1^PC)", "--")
            arrow(d["g2_pc"], "tab:orange", "g2 projected (g2^PC)", "--")
        arrow(d["update"], "tab:green", "PCGrad update", width=3.0)
        if self.show_sum.value:
            arrow(d["plain_sum"], "grey", "plain sum g1 + g2", width=1.5)
        ax.set_xlim(-reach, reach)
        ax.set_ylim(-reach, reach)
        ax.set_aspect("equal")
        ax.axhline(0, color="lightgrey", linewidth=0.8)
        ax.axvline(0, color="lightgrey", linewidth=0.8)
        ax.set_xlabel("parameter 1 (gradient component, arbitrary units)")
        ax.set_ylabel("parameter 2 (gradient component, arbitrary units)")
        verdict = ("conflict: each is projected onto the other's normal line" if d["conflict"]
                   else "no conflict: PCGrad leaves them unchanged")
        ax.set_title(f"cos(g1, g2) = {d['cosine']:+.2f}\n{verdict}", fontsize="medium")
        ax.legend(fontsize="small", loc="lower left")
        self.figure = fig
        self._show(fig)
