"""The two method tables: names, options read from the signatures, and the errors a learner sees for an
unknown method, an unknown option or a bad value."""
from __future__ import annotations

import inspect

import pytest
from _method_cases import make_method

from mtkit.surgery.methods import GRAM_METHODS, GramWeighting
from mtkit.surgery.registry import MethodError, Registry
from mtkit.surgery.weighting import LOSS_WEIGHTINGS, LossWeighting

TABLES = {"gram": (GRAM_METHODS, GramWeighting), "loss": (LOSS_WEIGHTINGS, LossWeighting)}
ENTRIES = [(kind, name) for kind, (table, _) in TABLES.items() for name in table]
TASKS = ["sst", "para", "sts"]


@pytest.mark.parametrize("kind,name", ENTRIES)
def test_every_entry_states_its_contract(kind, name):
    table, base = TABLES[kind]
    cls = table[name]
    assert issubclass(cls, base) and cls.name == name
    assert cls.summary and cls.paper, f"{name}: give the class a one-line summary and its paper"
    assert cls.__module__.split(".")[-1] in (name, "sum", "static"), "one file per method, named after it"
    module = inspect.getmodule(cls)
    assert module.__doc__ and len(module.__doc__.splitlines()) >= 3, f"{name}: cite the paper and the equation"
    assert len(inspect.getsource(module).splitlines()) < 250
    method = make_method(table, name, TASKS)
    assert method.tasks == TASKS


@pytest.mark.parametrize("kind,name", ENTRIES)
def test_options_come_from_the_signature(kind, name):
    table, _ = TABLES[kind]
    signature = inspect.signature(table[name].__init__)
    assert list(table.options(name)) == list(signature.parameters)[2:]
    assert name in table.help()


@pytest.mark.parametrize("table", [GRAM_METHODS, LOSS_WEIGHTINGS])
def test_unknown_name_lists_the_methods_and_suggests_one(table):
    first = table.names[-1]
    with pytest.raises(MethodError) as error:
        table.make(first[:-1] + "x", TASKS)
    message = str(error.value)
    assert f"Did you mean {first!r}?" in message
    assert all(name in message for name in table.names)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(MethodError, match=r"no option 'calpha'.*Its options: c, rescale"):
        GRAM_METHODS.make("cagrad", TASKS, calpha=0.5)
    with pytest.raises(MethodError, match=r"Did you mean 'temperature'\?"):
        LOSS_WEIGHTINGS.make("dwa", TASKS, temprature=2.0)
    with pytest.raises(MethodError, match="takes no options"):
        GRAM_METHODS.make("upgrad", TASKS, c=1)
    with pytest.raises(MethodError, match="needs the option"):
        GRAM_METHODS.make("main_aux", TASKS)


@pytest.mark.parametrize("kind,name,options,pattern", [
    ("gram", "cagrad", {"c": -1}, r"cagrad: option c must be >= 0"),
    ("gram", "cagrad", {"rescale": 3}, r"rescale must be one of 0, 1, 2"),
    ("gram", "pcgrad", {"reduction": "avg"}, r"reduction must be one of 'sum', 'mean'"),
    ("gram", "mgda", {"normalization": "los"}, r"Did you mean 'loss'"),
    ("gram", "nash_mtl", {"update_every": 0}, r"update_every must be an integer >= 1"),
    ("gram", "nash_mtl", {"update_every": True}, r"update_every must be an integer"),
    ("gram", "gradvac", {"beta": 1.5}, r"beta must be <= 1"),
    ("gram", "main_aux", {"main_task": "qqp"}, r"main_task must be one of the tasks"),
    ("gram", "aligned_mtl", {"scale": "max"}, r"scale must be one of"),
    ("loss", "dwa", {"temperature": 0}, r"temperature must be > 0"),
    ("loss", "static", {"weights": {"qqp": 1.0}}, r"unknown tasks \['qqp'\]"),
    ("loss", "static", {"default": float("nan")}, r"default must be a finite number"),
    ("loss", "famo", {"lr": -1.0}, r"lr must be > 0"),
    ("loss", "uncertainty", {"lr": 0}, r"lr must be > 0"),
    ("loss", "gradnorm", {"alpha": "1.5"}, r"alpha must be a finite number"),
])
def test_bad_values_say_what_is_allowed(kind, name, options, pattern):
    table, _ = TABLES[kind]
    with pytest.raises(MethodError, match=pattern):
        table.make(name, TASKS, **options)


def test_tasks_must_be_distinct_names():
    with pytest.raises(MethodError, match="distinct task names"):
        GRAM_METHODS.make("sum", ["sst", "sst"])


def test_a_registry_refuses_nameless_or_duplicate_classes():
    class Nameless(GramWeighting):
        pass

    with pytest.raises(TypeError, match="class attribute `name`"):
        Registry("x", [Nameless])
    with pytest.raises(TypeError, match="both named 'sum'"):
        Registry("x", [GRAM_METHODS["sum"], GRAM_METHODS["sum"]])


def test_describe_rows_for_the_docs():
    rows = {row["name"]: row for row in GRAM_METHODS.describe()}
    assert rows["cagrad"]["options"] == {"c": 0.4, "rescale": 0}
    assert rows["main_aux"]["options"]["main_task"] is None  # required


def test_docs_list_every_method_with_its_defaults():
    """docs/METHODS.md has a table row for every registered method, showing each option's default."""
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[1] / "docs" / "METHODS.md").read_text()
    gram_part, loss_part = docs.split("## Loss weightings")[0], docs.split("## Loss weightings")[1].split("##")[0]
    for table, part in ((GRAM_METHODS, gram_part), (LOSS_WEIGHTINGS, loss_part)):
        for name in table:
            row = next((line for line in part.splitlines() if line.startswith(f"| `{name}` |")), None)
            assert row is not None, f"docs/METHODS.md: add a row for {name!r}"
            for option, default in table.options(name).items():
                shown = f"`{option}`" if default is inspect.Parameter.empty else f"`{option}={default!r}"
                shown = shown.replace("e-0", "e-")  # 1e-08 is written 1e-8
                assert shown.replace("'", '"') in row.replace("'", '"'), f"{name}: document {option}"
