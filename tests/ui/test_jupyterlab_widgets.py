"""The walkthrough in a real browser: JupyterLab renders the notebooks' widgets, and the selectors redraw the plots.

Each test does what a learner does (issue 9): open a notebook in JupyterLab in headless Chromium, Run > Run All
Cells, wait until the kernel is idle, look at the widget, pick another value in its selector, and look at the
plot again. It fails when

- a cell raised (the traceback is in the message), or a cell never ran;
- a widget did not render: "Error displaying widget", "model not found", "Failed to load model class", the
  widget shown as its text fallback (``VBox(children=...)``), which is what a JupyterLab / ipywidgets version
  mismatch looks like to a learner;
- the selector is missing, or changing it does not change the plot.

Screenshots go to artifacts/ui/ (gitignored): ``<notebook>-1-after-run.png`` (the lab with the widget),
``<notebook>-2-before.png`` (the widget) and ``<notebook>-N-after-<control>.png`` (after each change).
``test_harness_detects_broken_widget_frontend`` breaks the widget frontend version on purpose and checks that
the harness reports exactly that. See tests/ui/README.md.
"""
from __future__ import annotations

import ast
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.ui

# Text that JupyterLab / ipywidgets put in the page when a widget cannot be shown.
WIDGET_ERROR_TEXT = ("Error displaying widget", "model not found", "Failed to load model class",
                     "Failed to load view class", "Could not create a model", "Could not create a view",
                     "Class not found")
# A widget output shown as its text/plain repr means no widget manager rendered it.
TEXT_FALLBACK = re.compile(r"^\s*(VBox|HBox|Box|GridBox|Tab|Accordion|Stack|Dropdown|Output|interactive|"
                           r"[A-Z]\w*(Explorer|Viewer))\(", re.M)
CONTROL_CSS = ":is(.widget-dropdown, .jupyter-widget-dropdown, .widget-slider, .jupyter-widget-slider)"
TOP_OUTPUT_CSS = ".jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output"


class WidgetRenderError(AssertionError):
    """A widget did not render in JupyterLab (the failure a learner sees as 'Error displaying widget')."""


class NotebookRunError(AssertionError):
    """Run All Cells did not finish cleanly: a cell raised, or cells were left unexecuted."""


@dataclass(frozen=True)
class Case:
    notebook: str                 # path under notebooks/
    what: str                     # the widget, in words, for messages
    selectors: tuple[str, ...]    # regexes on the descriptions of the controls to change, in order


CASES = [
    Case("09_gradient_surgery.ipynb", "conflict explorer (mtkit.teach.widgets.ConflictExplorer)",
         (r"^task pair", r"^layers")),
    Case("03_attention_and_minbert.ipynb", "attention-map viewer (mtkit.teach.attention_viewer.AttentionViewer)",
         (r"^sentence", r"^layer", r"^head")),
]


# -- the learner's steps -------------------------------------------------------------------------------------
def open_notebook(page, lab, rel_path: str, budget) -> None:
    """Open the notebook's URL, accept a kernel dialog if one asks, and wait for an idle kernel."""
    page.goto(lab.url(rel_path), timeout=budget.ms(90), wait_until="domcontentloaded")
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=budget.ms(120))
    deadline = time.monotonic() + budget.seconds(90)
    while time.monotonic() < deadline:
        dialog = page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count():  # "Select Kernel" when the notebook names none
            dialog.first.click()
        session = lab.session_for(rel_path)
        if session and session["kernel"]["execution_state"] == "idle":
            return
        time.sleep(0.5)
    raise NotebookRunError(f"{rel_path}: the kernel did not start and go idle; JupyterLab log:\n{lab.log_tail()}")


def _cell_state(page) -> dict:
    return page.evaluate("""() => {
        const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
        const prompts = cells.map(c => (c.querySelector('.jp-InputArea-prompt')?.textContent || '').trim());
        const empty = cells.map(c => (c.querySelector('.cm-content')?.textContent || '').trim() === '');
        const errors = [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')]
            .map(o => o.innerText).filter(t => t.includes('Traceback (most recent call last)') ||
                                              /^\\w*(Error|Exception)\\b.*Traceback/m.test(t));
        return {prompts, empty, errors};
    }""")


def run_all_cells(page, lab, rel_path: str, budget, step_s: float = 200) -> None:
    """Run > Run All Cells from the menu bar, then wait until every code cell ran and the kernel is idle."""
    page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    deadline = time.monotonic() + budget.seconds(step_s)
    idle_polls = 0
    while time.monotonic() < deadline:
        state = _cell_state(page)
        busy = any("*" in p for p in state["prompts"])
        session = lab.session_for(rel_path)
        idle = bool(session) and session["kernel"]["execution_state"] == "idle"
        ran_all = all(empty or re.search(r"\[\d+\]", p) for p, empty in zip(state["prompts"], state["empty"]))
        if state["errors"] and not busy and idle:
            raise NotebookRunError(f"{rel_path}: a cell raised during Run All Cells:\n"
                                   + state["errors"][0][-3000:])
        idle_polls = idle_polls + 1 if (idle and not busy and ran_all) else 0
        if idle_polls >= 2:  # idle twice in a row: no cell queued between two polls
            return
        time.sleep(0.5)
    state = _cell_state(page)
    raise NotebookRunError(f"{rel_path}: Run All Cells did not finish within {step_s:.0f} s "
                           f"(prompts: {state['prompts']})")


def widget_problems(page) -> list[str]:
    """Everything on the page that says a widget did not render, each with the reason the page gives.

    ipywidgets 8 replaces a widget it cannot build with an error placeholder (an icon and "Click to show
    javascript error."); clicking it shows the reason, e.g. "Failed to load model class 'VBoxModel' from module
    '@jupyter-widgets/controls' ... version ^99.0.0 is not registered, however, 2.0.0 is". The harness clicks
    each placeholder and quotes that text.
    """
    problems = []
    placeholders = page.locator(".jp-Notebook .jupyter-widgets-error-widget")
    for i in range(placeholders.count()):
        placeholder = placeholders.nth(i)
        try:
            placeholder.click(timeout=5_000)
            reason = " ".join(placeholder.inner_text(timeout=5_000).split())
        except Exception as exc:  # noqa: BLE001 - the placeholder itself is the finding; its text is a bonus
            reason = f"(its message could not be read: {exc})"
        problems.append(f"ipywidgets error placeholder #{i + 1}: {reason[:600]}")
    problems += page.evaluate("""(patterns) => {
        const found = [];
        const text = document.querySelector('.jp-Notebook')?.innerText || '';
        for (const p of patterns) {
            const i = text.indexOf(p);
            if (i < 0 || found.some(f => f.includes(p))) continue;
            found.push(text.slice(Math.max(0, i - 80), i + 240).replace(/\\s+/g, ' '));
        }
        return found;
    }""", [] if problems else list(WIDGET_ERROR_TEXT))
    for text in page.locator(f"{TOP_OUTPUT_CSS}[data-mime-type='text/plain']").all_inner_texts():
        if TEXT_FALLBACK.search(text):
            problems.append("a widget was shown as its text fallback (no widget manager rendered it; is "
                            f"jupyterlab_widgets installed and matching ipywidgets?): {text[:200]!r}")
    return problems


def assert_widgets_rendered(page) -> None:
    problems = widget_problems(page)
    if problems:
        console = [m for m in getattr(page, "console_log", [])
                   if "not registered" in m or "Failed to load" in m or "widget" in m.lower()]
        raise WidgetRenderError("a widget did not render in JupyterLab:\n  " + "\n  ".join(problems)
                                + ("\nbrowser console:\n  " + "\n  ".join(m.splitlines()[0] for m in console[:6])
                                   if console else ""))
    if page.locator(".jp-Notebook .jupyter-widgets").count() == 0:
        raise WidgetRenderError("no widget is on the page after Run All Cells (no .jupyter-widgets node)")


def find_widget(page, case: Case):
    """The cell output holding the widget: controls, a plot image, and a control named like the first selector."""
    outputs = page.locator(TOP_OUTPUT_CSS).filter(has=page.locator(CONTROL_CSS))
    candidates = [o for o in outputs.all() if o.locator("img").count() > 0]
    if not candidates:
        texts = [t for o in outputs.all() for t in [o.inner_text()] if "<Figure size" in t]
        if texts:
            raise WidgetRenderError(
                f"{case.notebook}: the {case.what} shows its figure as text ({_figure_text(texts[0])!r}), not "
                "as an image: display(fig) of a pyplot-free matplotlib Figure needs IPython's PNG formatter, "
                "which only the inline backend installs (first pyplot import); render the figure to PNG "
                "(fig.savefig to a buffer, IPython.display.Image) or call "
                "matplotlib_inline.backend_inline.set_matplotlib_formats('png')")
        raise WidgetRenderError(f"{case.notebook}: no cell output holds both a control (dropdown or slider) "
                                f"and a plot image: the {case.what} did not render")
    for output in candidates:
        if _labels(output) and any(re.search(case.selectors[0], label, re.I) for label in _labels(output)):
            return output
    raise WidgetRenderError(f"{case.notebook}: no widget output has a control named like "
                            f"{case.selectors[0]!r}; the controls found are {[_labels(o) for o in candidates]}")


def _labels(output) -> list[str]:
    return [" ".join(t.split()) for t in output.locator(f"{CONTROL_CSS} > label").all_inner_texts()]


def _figure_text(text: str) -> str:
    return re.search(r"<Figure size[^>]*>", text).group(0)


def find_control(output, label: str):
    """The dropdown or slider in ``output`` whose description matches ``label`` (a regex)."""
    for box in output.locator(CONTROL_CSS).all():
        name = box.locator("label").first.inner_text() if box.locator("label").count() else ""
        if re.search(label, " ".join(name.split()), re.I):
            return box
    raise WidgetRenderError(f"no control named like {label!r}; the controls are {_labels(output)}")


def change_control(box) -> str:
    """Pick another value: the next option of a dropdown, or one step of a slider. Returns what was picked."""
    select = box.locator("select")
    if select.count():
        options = select.evaluate("el => [...el.options].map(o => ({value: o.value, text: o.text}))")
        current = select.input_value()
        others = [o for o in options if o["value"] != current]
        if not others:
            raise WidgetRenderError(f"the dropdown offers a single option ({options}); nothing to change")
        select.select_option(value=others[0]["value"])
        return others[0]["text"]
    handle = box.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")
    return "one step right"


def widget_stderr(output) -> list[str]:
    """Text the widget's callbacks wrote to stderr inside its Output (mtkit's widgets report failures there)."""
    return output.locator("[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()


def plot_signature(output) -> str:
    """What the plot is now: the sources of the loaded images in the widget's output."""
    return output.evaluate("""el => [...el.querySelectorAll('img')]
        .filter(i => i.complete && i.naturalWidth > 0).map(i => i.src).join('|')""")


def wait_for_new_plot(page, lab, rel_path, output, before: str, budget, step_s: float = 60) -> str:
    """Wait until the plot differs from ``before``, the kernel is idle, and the plot stays the same."""
    deadline = time.monotonic() + budget.seconds(step_s)
    last, stable = None, 0
    while time.monotonic() < deadline:
        stderr = widget_stderr(output)
        if stderr:
            raise AssertionError(f"{rel_path}: the widget's callback failed; its output says:\n{stderr[0][-3000:]}")
        now = plot_signature(output)
        session = lab.session_for(rel_path)
        idle = bool(session) and session["kernel"]["execution_state"] == "idle"
        stable = stable + 1 if (now and now != before and now == last and idle) else 0
        if stable >= 2:
            return now
        last = now
        time.sleep(0.5)
    raise AssertionError(f"{rel_path}: the plot did not change within {step_s:.0f} s after the selector "
                         "changed (same image, or none)")


def walk_through(page, lab, rel_path: str, case: Case, artifacts: Path, budget) -> None:
    """The whole learner's path for one notebook; screenshots go to ``artifacts``."""
    stem = Path(rel_path).stem
    open_notebook(page, lab, rel_path, budget)
    run_all_cells(page, lab, rel_path, budget)
    assert_widgets_rendered(page)
    output = find_widget(page, case)
    output.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / f"{stem}-1-after-run.png"))
    output.screenshot(path=str(artifacts / f"{stem}-2-before.png"))
    for n, label in enumerate(case.selectors, start=3):
        before = plot_signature(output)
        control = find_control(output, label)
        picked = change_control(control)
        try:
            wait_for_new_plot(page, lab, rel_path, output, before, budget)
        except AssertionError as err:
            raise AssertionError(f"{err}\n(control {label!r}, picked {picked!r})") from None
        name = re.sub(r"\W+", "-", label.strip("^$")).strip("-")
        output.screenshot(path=str(artifacts / f"{stem}-{n}-after-{name}.png"))
        assert_widgets_rendered(page)
        errors = _cell_state(page)["errors"] + widget_stderr(output)
        assert not errors, (f"{rel_path}: the widget's callback failed after {label!r} -> {picked!r}:\n"
                            f"{errors[0][-3000:]}")


# -- a small notebook of our own, to test the harness itself ------------------------------------------------
DEMO_SOURCE = '''\
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

rng = np.random.default_rng(0)
pairs = {name: rng.normal(size=(6, 6)) for name in ("sst / para", "sst / sts", "para / sts")}
pick = widgets.Dropdown(options=list(pairs), description="task pair")
out = widgets.Output()

def draw(change=None):
    with out:
        out.clear_output(wait=True)
        fig, ax = plt.subplots(figsize=(4, 3))
        im = ax.imshow(pairs[pick.value], cmap="RdBu_r", vmin=-2, vmax=2)
        fig.colorbar(im, ax=ax)
        ax.set_title(f"cosine between task gradients: {pick.value}")
        plt.show()

pick.observe(draw, names="value")
draw()
display(widgets.VBox([pick, out]))
'''
# What a kernel-side ipywidgets that no installed frontend supports looks like: it asks JupyterLab for
# versions of the widget modules that the @jupyter-widgets/jupyterlab-manager extension does not register.
BREAK_FRONTEND_SOURCE = '''\
import ipywidgets
_open = ipywidgets.Widget.open
def _open_with_unknown_versions(self):
    self.set_trait("_model_module_version", "99.0.0")  # set_trait: some of these traits are read-only
    self.set_trait("_view_module_version", "99.0.0")
    _open(self)
ipywidgets.Widget.open = _open_with_unknown_versions
'''
DEMO_CASE = Case("demo", "task-pair demo widget", (r"^task pair",))


FAILING_CALLBACK_SOURCE = DEMO_SOURCE.replace(
    "        fig, ax = plt.subplots(figsize=(4, 3))\n",
    "        if pick.value != 'sst / para':\n"
    "            raise ValueError('the demo callback fails on purpose')\n"
    "        fig, ax = plt.subplots(figsize=(4, 3))\n")
assert FAILING_CALLBACK_SOURCE != DEMO_SOURCE


def write_demo_notebook(path: Path, broken: bool = False, failing_callback: bool = False) -> None:
    cells = ([nbformat.v4.new_code_cell(BREAK_FRONTEND_SOURCE)] if broken else [])
    cells += [nbformat.v4.new_markdown_cell("A dropdown that redraws a heatmap."),
              nbformat.v4.new_code_cell(FAILING_CALLBACK_SOURCE if failing_callback else DEMO_SOURCE)]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


# -- the notebook copy the learner opens -------------------------------------------------------------------
UI_PROFILE = os.environ.get("MTKIT_UI_PROFILE", "small")


def declared_parameters(nb) -> tuple[int, set[str]]:
    """The index of the cell tagged ``parameters`` and the names it assigns (papermill's convention)."""
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse(cell.source)
            names = {t.id for node in tree.body if isinstance(node, ast.Assign)
                     for t in node.targets if isinstance(t, ast.Name)}
            return i, names
    return -1, set()


def inject_parameters(path: Path, results_dir: Path, profile: str = UI_PROFILE) -> dict:
    """Rewrite the notebook copy at ``path`` the way papermill does: a cell tagged ``injected-parameters``
    right after the ``parameters`` cell. ``profile`` is one of mtkit.teach.notebook_runner.PROFILES: ``small`` (the
    default here: tiny subsets on the demo set, so the suite checks the widgets within its time budget) or
    ``demo`` (the notebook's own defaults, what a learner runs). ``results_dir`` always points to a temporary
    folder, so the run writes nothing into the repository. Returns the injected values."""
    from mtkit.teach.notebook_runner import profile_parameters

    nb = nbformat.read(path, as_version=4)
    index, names = declared_parameters(nb)
    if index < 0:
        return {}
    wanted = profile_parameters(profile, path.stem)
    if profile != "demo":
        wanted["data_dir"] = "demo"
    wanted["results_dir"] = str(results_dir)
    values = {k: v for k, v in wanted.items() if k in names}
    cell = nbformat.v4.new_code_cell(f"# Parameters injected by tests/ui (profile {profile!r})\n"
                                     + "".join(f"{k} = {v!r}\n" for k, v in values.items()))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)
    nbformat.write(nb, path)
    return values


# -- tests -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.notebook.split("_")[0] for c in CASES])
def test_notebook_widget_renders_and_redraws(case, request, artifacts_dir, ui_budget):
    if not (REPO / "notebooks" / case.notebook).is_file():
        pytest.skip(f"notebooks/{case.notebook} is not in this checkout yet")
    lab, page = request.getfixturevalue("lab"), request.getfixturevalue("page")  # only for a notebook that exists
    rel_path = f"notebooks/{case.notebook}"
    inject_parameters(lab.root / rel_path, lab.root / "results")
    try:
        walk_through(page, lab, rel_path, case, artifacts_dir, ui_budget)
    finally:
        lab.close_notebook_kernel(rel_path)


def test_harness_demo_widget_renders_and_redraws(lab, page, artifacts_dir, ui_budget):
    """The harness on a notebook of its own: passes when JupyterLab and ipywidgets work together."""
    rel_path = "ui-selftest/demo_widget.ipynb"
    write_demo_notebook(lab.root / rel_path)
    try:
        walk_through(page, lab, rel_path, DEMO_CASE, artifacts_dir, ui_budget)
    finally:
        lab.close_notebook_kernel(rel_path)


def test_harness_detects_broken_widget_frontend(lab, page, artifacts_dir, ui_budget):
    """The same notebook with the widget frontend versions broken on purpose: the harness must say so."""
    rel_path = "ui-selftest/demo_widget_broken.ipynb"
    write_demo_notebook(lab.root / rel_path, broken=True)
    try:
        open_notebook(page, lab, rel_path, ui_budget)
        run_all_cells(page, lab, rel_path, ui_budget)
        with pytest.raises(WidgetRenderError) as err:
            assert_widgets_rendered(page)
        # The right reason: the frontend has no widget model at the version the kernel asked for.
        assert "Failed to load model class" in str(err.value), str(err.value)
        assert "99.0.0 is not registered" in str(err.value), str(err.value)
        page.screenshot(path=str(artifacts_dir / "demo_widget_broken.png"))
        (artifacts_dir / "demo_widget_broken.txt").write_text(str(err.value))
    finally:
        lab.close_notebook_kernel(rel_path)


def test_harness_detects_a_failing_callback(lab, page, artifacts_dir, ui_budget):
    """The demo widget whose callback raises for the second option: the harness must quote the error, fast."""
    rel_path = "ui-selftest/demo_widget_failing_callback.ipynb"
    write_demo_notebook(lab.root / rel_path, failing_callback=True)
    try:
        start = time.monotonic()
        with pytest.raises(AssertionError, match="the demo callback fails on purpose") as err:
            walk_through(page, lab, rel_path, DEMO_CASE, artifacts_dir, ui_budget)
        assert "callback failed" in str(err.value), str(err.value)
        assert time.monotonic() - start < 45, "the failure should be reported at once, not after the redraw timeout"
    finally:
        lab.close_notebook_kernel(rel_path)
