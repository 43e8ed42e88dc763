"""JupyterLab and ipywidgets stay a working pair, both as declared and as installed.

The failure this guards against is the one learners meet most with widget notebooks: "Error displaying widget:
model not found". It happens when the kernel's ipywidgets asks the browser for widget models at versions that
the JupyterLab extension (the ``@jupyter-widgets/jupyterlab-manager`` labextension shipped by the
``jupyterlab_widgets`` package) does not register, or when that extension is built for another JupyterLab major.

The pairs, written out (ipywidgets' release notes and the labextensions' package.json files):

- ipywidgets 7.6-7.8 talk to widget models ``@jupyter-widgets/controls`` 1.5.0; their frontend is
  jupyterlab_widgets 1.x, a JupyterLab 3 extension built on the npm package ``@jupyter-widgets/controls`` 3.x.
- ipywidgets 8.x talk to ``@jupyter-widgets/controls`` 2.0.0 (base 2.0.0, output 1.0.0); their frontend is
  jupyterlab_widgets 3.0.x, built on ``@jupyter-widgets/controls`` 5.x; its 3.0.x releases that ship with
  ipywidgets 8.1 are built against JupyterLab 4 (``"@jupyterlab/application": "^4.0.0"``).

The kit supports ipywidgets 8.1+ (below 9) with JupyterLab 4 (below 5). The browser test in
tests/ui/test_jupyterlab_widgets.py checks the same thing end to end.
"""
from __future__ import annotations

import json
import re
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]

# What the kit supports, as version ranges a declared range must stay inside.
SUPPORTED = {
    "ipywidgets": SpecifierSet(">=8.1,<9"),
    "jupyterlab": SpecifierSet(">=4.0,<5"),
}
JUPYTERLAB_WIDGETS_FOR_IPYWIDGETS_8 = SpecifierSet(">=3.0,<4")
# npm major of @jupyter-widgets/controls inside the labextension -> the controls model version it registers.
CONTROLS_NPM_MAJOR_TO_MODEL_VERSION = {3: "1.5.0", 5: "2.0.0"}
LABEXTENSION = Path("share") / "jupyter" / "labextensions" / "@jupyter-widgets" / "jupyterlab-manager"


def _declared_pyproject() -> dict[str, SpecifierSet]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    out = {}
    for line in data["project"]["dependencies"]:
        req = Requirement(line)
        out[req.name.lower()] = req.specifier
    return out


def _declared_environment() -> dict[str, SpecifierSet]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str) and (m := re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", dep)):
            name, spec = m.groups()
            if spec and not spec.startswith("="):  # conda's "python=3.11" is not a PEP 440 range
                out[name.lower()] = SpecifierSet(spec.replace(" ", ""))
    return out


def _grid(majors: range) -> list[Version]:
    """Release versions to probe a range with: every major.minor.patch up to x.19.29."""
    return [Version(f"{a}.{b}.{c}") for a in majors for b in range(20) for c in range(30)]


def _outside(declared: SpecifierSet, supported: SpecifierSet) -> list[str]:
    """Versions the declared range admits that the supported range does not (a few, for the message)."""
    bad = [str(v) for v in _grid(range(0, 12)) if v in declared and v not in supported]
    return bad[:3] + ([f"... {len(bad)} in all"] if len(bad) > 3 else [])


@pytest.mark.parametrize("source", ["pyproject.toml", "environment.yml"])
def test_declared_ranges_stay_inside_a_supported_pair(source):
    declared = _declared_pyproject() if source == "pyproject.toml" else _declared_environment()
    for name, supported in SUPPORTED.items():
        assert name in declared, f"{source} must declare {name} with a range (supported: {supported})"
        assert str(declared[name]), f"{source} declares {name} without a range; use {supported}"
        bad = _outside(declared[name], supported)
        assert not bad, (f"{source} allows {name} {declared[name]}, which admits {bad}: outside {supported}, "
                         "where JupyterLab and ipywidgets are known to work together (see this file's docstring)")
        assert any(v in declared[name] for v in _grid(range(0, 12))), f"{source}: {name} {declared[name]} is empty"


def test_the_two_files_declare_the_same_widget_ranges():
    py, env = _declared_pyproject(), _declared_environment()
    for name in SUPPORTED:
        assert py.get(name) == env.get(name), (f"{name}: pyproject.toml {py.get(name)} vs "
                                               f"environment.yml {env.get(name)}")


def test_probe_grid_catches_a_bad_range():
    """The range check itself: ranges a learner could have written by mistake are caught."""
    assert _outside(SpecifierSet(">=7.6"), SUPPORTED["ipywidgets"])          # lets ipywidgets 7 and 9 in
    assert _outside(SpecifierSet(">=8.0,<9"), SUPPORTED["ipywidgets"])       # lets 8.0.x in
    assert _outside(SpecifierSet(">=3.6,<5"), SUPPORTED["jupyterlab"])       # lets JupyterLab 3 in
    assert not _outside(SpecifierSet(">=8.1.5,<8.2"), SUPPORTED["ipywidgets"])


def _installed(name: str) -> Version:
    try:
        return Version(version(name))
    except PackageNotFoundError:
        pytest.fail(f"{name} is not installed in {sys.prefix}: run `make setup` (pip install -e '.[test]')")


def test_installed_versions_are_a_supported_pair():
    import ipywidgets
    import jupyterlab
    import jupyterlab_widgets

    ipyw, lab = Version(ipywidgets.__version__), Version(jupyterlab.__version__)
    jlw = Version(jupyterlab_widgets.__version__)
    assert ipyw in SUPPORTED["ipywidgets"], f"installed ipywidgets {ipyw} is outside {SUPPORTED['ipywidgets']}"
    assert lab in SUPPORTED["jupyterlab"], f"installed jupyterlab {lab} is outside {SUPPORTED['jupyterlab']}"
    assert jlw in JUPYTERLAB_WIDGETS_FOR_IPYWIDGETS_8, (
        f"installed jupyterlab_widgets {jlw} is not the ipywidgets 8 frontend (3.0.x): widgets will show "
        "'Error displaying widget: model not found'; reinstall with pip install -e '.[test]'")
    # The same numbers as the installers see them (import-time and metadata versions agree).
    assert (_installed("ipywidgets"), _installed("jupyterlab"), _installed("jupyterlab_widgets")) == (ipyw, lab, jlw)
    # ipywidgets names the frontend it needs; the installed one must satisfy it.
    need = next(Requirement(r) for r in requires("ipywidgets") or [] if Requirement(r).name == "jupyterlab_widgets")
    assert jlw in need.specifier, f"ipywidgets {ipyw} needs {need}, but jupyterlab_widgets {jlw} is installed"


def _caret_majors(npm_range: str) -> set[int]:
    """The majors an npm range such as '^3 || ^4.0.0' admits (caret ranges only, as these files use)."""
    majors = set()
    for part in npm_range.split("||"):
        m = re.fullmatch(r"\s*\^(\d+)(\.\d+)*\s*", part)
        assert m, f"unexpected npm range {npm_range!r}: teach _caret_majors about it"
        majors.add(int(m.group(1)))
    return majors


def test_caret_majors():
    assert _caret_majors("^4.0.0") == {4}
    assert _caret_majors("^3 || ^4") == {3, 4}


def test_installed_labextension_matches_jupyterlab_and_the_kernel_side():
    """The extension JupyterLab loads is built for the installed JupyterLab and registers ipywidgets' models."""
    import ipywidgets._version as kernel_side
    import jupyterlab

    manifest = Path(sys.prefix) / LABEXTENSION / "package.json"
    assert manifest.is_file(), (f"{manifest} is missing: JupyterLab has no widget manager, every widget will "
                                "show as text; reinstall jupyterlab_widgets")
    pkg = json.loads(manifest.read_text())
    import jupyterlab_widgets
    assert Version(pkg["version"]) >= Version("5.0"), (
        f"labextension {pkg['version']} is the ipywidgets 7 frontend "
        f"(jupyterlab_widgets {jupyterlab_widgets.__version__})")
    lab_major = Version(jupyterlab.__version__).major
    built_for = _caret_majors(pkg["dependencies"]["@jupyterlab/application"])
    assert lab_major in built_for, (f"the widget labextension {pkg['version']} is built for JupyterLab "
                                    f"{sorted(built_for)}, but JupyterLab {jupyterlab.__version__} is installed")
    controls_major = min(_caret_majors(pkg["dependencies"]["@jupyter-widgets/controls"]))
    registers = CONTROLS_NPM_MAJOR_TO_MODEL_VERSION.get(controls_major)
    assert registers is not None, f"unknown @jupyter-widgets/controls major {controls_major}: extend the table"
    asks = kernel_side.__jupyter_widgets_controls_version__
    assert Version(asks).major == Version(registers).major, (
        f"ipywidgets {kernel_side.__version__} asks for controls models {asks}, the labextension registers "
        f"{registers}: 'Error displaying widget: model not found'")
