"""Plots and widgets, headless: figures carry the data asked for, and widget callbacks fail loudly."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mtkit.surgery import GradientTelemetry  # noqa: E402
from mtkit.teach import (
    plots,  # noqa: E402
    widgets,
)

TASKS = ["sst", "para", "sts"]
BLOCKS = ["embeddings.word", "embeddings.other", "layers.0", "layers.1", "pooler"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def synthetic_telemetry(seed: int = 0, steps=range(0, 100, 10), flip: float = 0.0) -> GradientTelemetry:
    """Per-block gradients drawn at random; "sts" is pushed against "para" in the layers (a known conflict)."""
    gen = torch.Generator().manual_seed(seed)
    telemetry = GradientTelemetry(TASKS, BLOCKS, meta={"method": "pcgrad"})
    for s in steps:
        grams = []
        for _b, block in enumerate(BLOCKS):
            g = torch.randn(3, 16, generator=gen, dtype=torch.float64)  # (K, D) per-block gradients
            if block.startswith("layers"):
                g[2] = -g[1] + flip * g[2]  # sts opposes para
            grams.append(g @ g.T)
        grams = torch.stack(grams)  # (B, K, K)
        total = grams.sum(0)
        plain = total.sum().sqrt()
        telemetry.record(s, grams, torch.ones(3, dtype=torch.bool), plain, plain * 0.9, plain * 0.2,
                         torch.full((3,), 0.1))
    return telemetry


@pytest.fixture
def frame():
    return synthetic_telemetry().to_frame()


def all_text(fig: Figure) -> str:
    parts = []
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    return " | ".join(parts)


# ---- plots ------------------------------------------------------------------------------------------------------------------
def test_heatmap_shows_the_cosines_of_the_pair_centred_at_zero(frame):
    fig = plots.plot_conflict_heatmap(frame, pair=("para", "sts"))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    mesh = ax.collections[0]
    data = plots.cosine_matrix(frame, ("para", "sts"))
    assert list(data.index) == ["all", "pooler", "layers.1", "layers.0", "embeddings.other", "embeddings.word"]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(data.shape), data.to_numpy())
    vmin, vmax = mesh.get_clim()
    assert vmin == -vmax and vmax > 0  # centred at 0
    cmap, norm = mesh.get_cmap(), mesh.norm
    red_end, white, blue_end = cmap(norm(vmin)), cmap(norm(0.0)), cmap(norm(vmax))
    assert red_end[0] > red_end[2] and blue_end[2] > blue_end[0]  # conflicts red, agreement blue
    assert min(white[:3]) > 0.9  # zero is (nearly) white
    # the pushed-apart layers are strongly negative, so drawn red (the low end of RdBu)
    assert (data.loc[["layers.0", "layers.1"]].to_numpy() < -0.9).all()
    text = all_text(fig)
    assert "optimizer step" in text and "block" in text and "para vs sts" in text
    assert "cosine" in fig.axes[1].get_ylabel()  # the colour bar says what the colour means


def test_heatmap_pair_order_steps_blocks_and_fixed_scale(frame):
    a = plots.cosine_matrix(frame, ("sts", "para"), blocks="encoder layers", steps=(20, 50))
    assert list(a.index) == ["layers.1", "layers.0"] and list(a.columns) == [20, 30, 40, 50]
    fig = plots.plot_conflict_heatmap(frame, ("sst", "para"), vmax=1.0)
    assert fig.axes[0].collections[0].get_clim() == (-1.0, 1.0)


def test_heatmap_errors_name_what_exists(frame):
    with pytest.raises(ValueError, match=r"pairs recorded are .*'sst', 'para'"):
        plots.plot_conflict_heatmap(frame, pair=("sst", "qqp"))
    with pytest.raises(ValueError, match="unknown blocks"):
        plots.plot_conflict_heatmap(frame, blocks=["layers.7"])
    with pytest.raises(ValueError, match="no telemetry between steps"):
        plots.plot_conflict_heatmap(frame, steps=(500, 600))
    with pytest.raises(ValueError, match="lacks the columns"):
        plots.plot_conflict_heatmap(pd.DataFrame({"step": [0]}))
    with pytest.raises(ValueError, match="empty"):
        plots.plot_conflict_heatmap(GradientTelemetry(TASKS, BLOCKS))
    with pytest.raises(TypeError, match="DataFrame"):
        plots.plot_conflict_heatmap([1, 2, 3])


def test_conflict_rate_curves(frame):
    table = plots.conflict_rate_table(frame, blocks="encoder layers", window=1)
    assert (table["para vs sts"] == 1.0).all()  # opposed in every layer at every step
    fig = plots.plot_conflict_rate(frame, blocks="encoder layers", window=1)
    lines = fig.axes[0].get_lines()
    labels = [line.get_label() for line in lines]
    assert "para vs sts" in labels and "every pair" in labels
    np.testing.assert_allclose(lines[labels.index("para vs sts")].get_ydata(), 1.0)
    assert "conflict rate" in fig.axes[0].get_ylabel() and fig.axes[0].get_xlabel() == "optimizer step"
    by_block = plots.conflict_rate_table(frame, blocks="every block", window=3, by="block")
    assert "layers.0" in by_block.columns and "every block" in by_block.columns


def test_norm_ratio_panels(frame):
    fig = plots.plot_norm_ratio(frame)
    left, right = fig.axes
    assert left.get_yscale() == "log"
    assert len([ln for ln in left.get_lines() if ln.get_label().startswith("|g_")]) == 3
    removed = [ln for ln in right.get_lines() if ln.get_label() == "|removed| / |plain|"][0]
    np.testing.assert_allclose(removed.get_ydata(), 0.2)  # the synthetic run removed 20 % every step
    rows = frame[(frame.block == "all") & (frame.task_i == "sst") & (frame.task_j == "para")]
    ratio = [ln for ln in left.get_lines() if ln.get_label() == "|g_sst| / |g_para|"][0]
    np.testing.assert_allclose(ratio.get_ydata(), rows.norm_i / rows.norm_j)
    assert "ratio" in left.get_ylabel()


def test_compare_runs_shares_one_colour_scale():
    a = synthetic_telemetry(0).to_frame()
    b = synthetic_telemetry(1, flip=3.0).to_frame()
    fig = plots.compare_runs(a, b, labels=("pcgrad", "none"), pair=("para", "sts"))
    heat_a, heat_b = fig.axes[0].collections[0], fig.axes[1].collections[0]
    assert heat_a.get_clim() == heat_b.get_clim()
    assert fig.axes[0].get_title().startswith("pcgrad") and fig.axes[1].get_title().startswith("none")
    rate_ax = [ax for ax in fig.axes if ax.get_title() == "Conflict rate"][0]
    assert [ln.get_label() for ln in rate_ax.get_lines()] == ["pcgrad", "none"]


def test_learning_curves_from_a_long_table():
    history = pd.DataFrame([
        {"epoch": e, "task": t, "metric": m, "value": v, "split": s}
        for e in (1, 2, 3) for t in ("sst", "sts") for m, s, v in (("loss", "train", 1 / e), ("score", "dev", e / 4))
    ])
    fig = plots.plot_learning_curves(history)
    assert [ax.get_title() for ax in fig.axes] == ["sst", "sts"]
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert set(lines) == {"loss train", "score dev"}
    np.testing.assert_allclose(lines["score dev"].get_ydata(), [0.25, 0.5, 0.75])
    assert lines["score dev"].get_linestyle() == "--"
    assert fig.axes[0].get_xlabel() == "epoch"
    fig = plots.plot_learning_curves(history.drop(columns="split").to_dict("records"), tasks=["sst"])
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="lacks the columns"):
        plots.plot_learning_curves(pd.DataFrame({"epoch": [1], "value": [0.1]}))


# ---- widgets ---------------------------------------------------------------------------------------------------------------
def test_explorer_selectors_change_data_and_figure():
    runs = {"pcgrad": synthetic_telemetry(0), "none": synthetic_telemetry(1, flip=3.0)}
    ex = widgets.ConflictExplorer(runs)
    assert ex.raise_errors  # outside a kernel, errors are raised
    assert isinstance(ex.figure, Figure) and ex.errors == []
    assert ex.selection["pair"] == "sst vs para" and ex.selection["view"] == "heatmap"
    first = ex.figure
    ex.pair.value = "para vs sts"
    assert ex.figure is not first
    pd.testing.assert_frame_equal(ex.data, plots.cosine_matrix(runs["pcgrad"], ("para", "sts")))
    assert "para vs sts" in ex.figure.axes[0].get_title()
    ex.group.value = "encoder layers"
    assert list(ex.data.index) == ["layers.1", "layers.0"]
    ex.steps.value = (30, 60)
    assert list(ex.data.columns) == [30, 40, 50, 60]
    ex.view.value = "conflict rate"
    assert "conflict rate" in ex.figure.axes[0].get_ylabel()
    assert list(ex.data.index) == [30, 40, 50, 60]
    ex.view.value = "norm ratio"
    assert ex.figure.axes[0].get_yscale() == "log" and set(ex.data.step) == {30, 40, 50, 60}
    ex.compare.value = "none"
    assert set(ex.data) == {"a", "b"}
    assert ex.figure.axes[1].get_title().startswith("none")
    ex.compare.value = ex.NO_COMPARE
    ex.run.value = "none"
    assert ex.selection["run"] == "none" and ex.selection["pair"] == "para vs sts"
    assert ex.errors == []


def test_explorer_accepts_a_single_telemetry_and_a_frame():
    t = synthetic_telemetry()
    assert widgets.ConflictExplorer(t).selection["run"] == "run"
    ex = widgets.ConflictExplorer({"saved": t.to_frame()})
    assert ex.steps.value == (0, 90)


def test_explorer_run_switch_refits_steps():
    runs = {"long": synthetic_telemetry(0, steps=range(0, 200, 20)), "short": synthetic_telemetry(1, steps=range(5))}
    ex = widgets.ConflictExplorer(runs)
    assert ex.steps.value == (0, 180)
    ex.run.value = "short"
    assert (ex.steps.min, ex.steps.max, ex.steps.value) == (0, 4, (0, 4))
    assert list(ex.data.columns) == [0, 1, 2, 3, 4]


def test_callback_errors_fail_loudly(monkeypatch):
    ex = widgets.ConflictExplorer(synthetic_telemetry())

    def broken(*args, **kwargs):
        raise RuntimeError("plot exploded")

    monkeypatch.setattr(plots, "plot_conflict_heatmap", broken)
    with pytest.raises(RuntimeError, match="plot exploded"):
        ex.pair.value = "para vs sts"
    assert len(ex.errors) == 1 and "plot exploded" in ex.errors[0]
    # in a notebook (raise_errors=False) the error is recorded and shown in the widget instead
    quiet = widgets.ConflictExplorer(synthetic_telemetry(), raise_errors=False)
    assert quiet.errors and "plot exploded" in quiet.errors[0]
    assert any("plot exploded" in o.get("text", "") for o in quiet.out.outputs)


def test_kernel_default_is_to_show_errors_unless_asked_to_raise(monkeypatch):
    monkeypatch.setattr(widgets, "_in_kernel", lambda: True)
    monkeypatch.delenv("MTKIT_WIDGET_ERRORS", raising=False)
    assert not widgets.ProjectionToy().raise_errors
    monkeypatch.setenv("MTKIT_WIDGET_ERRORS", "raise")
    assert widgets.ProjectionToy().raise_errors


def test_projection_toy_shows_the_projection():
    toy = widgets.ProjectionToy()  # g1 at 0 degrees, g2 at 135 degrees: they conflict
    d = toy.data
    assert d["conflict"] and d["cosine"] == pytest.approx(-np.sqrt(0.5))
    # by hand: g1 = (1, 0), g2 = (-0.7071, 0.7071); g1.g2 = -0.7071, |g2| = 1
    np.testing.assert_allclose(d["g1_pc"], [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(d["g2_pc"], [0.0, np.sqrt(0.5)], atol=1e-12)
    np.testing.assert_allclose(d["update"], d["g1_pc"] + d["g2_pc"])
    assert abs(d["g1_pc"] @ d["g2"]) < 1e-12 and abs(d["g2_pc"] @ d["g1"]) < 1e-12
    assert "conflict" in toy.figure.axes[0].get_title()
    first = toy.figure
    toy.angle_2.value = 60.0  # now 60 degrees apart: no conflict, nothing changes
    assert toy.figure is not first
    assert not toy.data["conflict"]
    np.testing.assert_allclose(toy.data["g1_pc"], toy.data["g1"])
    np.testing.assert_allclose(toy.data["update"], toy.data["plain_sum"])
    assert "unchanged" in toy.figure.axes[0].get_title()
    toy.length_1.value = 2.0
    np.testing.assert_allclose(toy.data["g1"], [2.0, 0.0], atol=1e-12)
    toy.show_sum.value = False
    labels = [ln.get_label() for ln in toy.figure.axes[0].get_lines()]
    assert "plain sum g1 + g2" not in labels
    toy.length_2.value = 0.0  # a vanishing gradient: no division by zero
    assert np.isfinite(toy.data["update"]).all() and toy.errors == []


def test_widgets_display_as_ipywidgets():
    import ipywidgets

    toy = widgets.ProjectionToy()
    assert isinstance(toy.widget, ipywidgets.VBox)
    assert "application/vnd.jupyter.widget-view+json" in toy._repr_mimebundle_()
