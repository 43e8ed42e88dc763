"""One table of named methods, read by config validation, the CLI's help and the docs.

A ``Registry`` is built from classes. Each class carries its config ``name`` and a one-line ``summary``;
its options are the keyword parameters of its ``__init__`` after ``tasks`` (their defaults are the
method's defaults), so adding a method is one class plus one entry in the registry's list::

    GRAM_METHODS = Registry("aggregation method", [Sum, Mean, PCGrad, ...])
    GRAM_METHODS.names                       # ('sum', 'mean', 'pcgrad', ...)
    GRAM_METHODS.options("cagrad")           # {'c': 0.4, 'rescale': 0}
    GRAM_METHODS.make("cagrad", tasks, c=0.5)

Unknown names and option keys raise ``MethodError`` with a "did you mean" and the full list; each method's
``__init__`` checks its own values with the ``check_*`` helpers below, so a bad value says which method,
which option, what is allowed and what it got.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Mapping, Sequence

from mtkit.util.registry import did_you_mean

__all__ = ["MethodError", "Registry", "check_number", "check_choice", "check_int", "check_tasks"]


class MethodError(ValueError):
    """An unknown method, an unknown option or a bad option value; the message lists what is allowed."""


_close = did_you_mean  # the one "did you mean" of every registry (mtkit.util.registry)


class Registry(Mapping):
    """name -> class, with the options read from each class's ``__init__`` signature."""

    def __init__(self, kind: str, classes: Sequence[type]) -> None:
        self.kind = kind
        self._classes: dict[str, type] = {}
        for cls in classes:
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise TypeError(f"{cls.__name__} needs a class attribute `name` (its config name).")
            if name in self._classes:
                raise TypeError(f"two {kind}s are both named {name!r}: "
                                f"{self._classes[name].__name__} and {cls.__name__}.")
            self._classes[name] = cls

    # ---- the Mapping face ---------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> type:
        if name not in self._classes:
            raise MethodError(f"unknown {self.kind} {name!r}.{_close(name, self._classes)} "
                              f"Known {self.kind}s: {', '.join(self.names)}.")
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._classes)

    # ---- options ------------------------------------------------------------------------------------------------
    def options(self, name: str) -> dict[str, object]:
        """The options of method ``name`` and their defaults (``inspect.Parameter.empty``: required)."""
        parameters = list(inspect.signature(self[name].__init__).parameters.values())[2:]  # skip self, tasks
        return {p.name: p.default for p in parameters
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def check_option_names(self, name: str, options: Mapping[str, object]) -> None:
        """Raise ``MethodError`` for an option key that method ``name`` does not have."""
        known = self.options(name)
        for key in options:
            if key not in known:
                listed = ", ".join(known) if known else "none (this method takes no options)"
                raise MethodError(f"{self.kind} {name!r} has no option {key!r}.{_close(key, known)} "
                                  f"Its options: {listed}.")
        missing = [k for k, v in known.items() if v is inspect.Parameter.empty and k not in options]
        if missing:
            raise MethodError(f"{self.kind} {name!r} needs the option(s) {', '.join(missing)}.")

    def make(self, name: str, tasks: Sequence[str], **options):
        """Build method ``name`` for the run's ``tasks``: names and option keys checked here, values by the class."""
        cls = self[name]
        self.check_option_names(name, options)
        return cls(list(tasks), **options)

    def describe(self) -> list[dict]:
        """One row per method for the docs and the CLI's help: name, summary, paper, options with defaults."""
        rows = []
        for name, cls in self._classes.items():
            rows.append({"name": name, "summary": getattr(cls, "summary", ""), "paper": getattr(cls, "paper", ""),
                         "options": {k: (None if v is inspect.Parameter.empty else v)
                                     for k, v in self.options(name).items()}})
        return rows

    def help(self) -> str:
        """A few plain lines: ``name (options) - summary``, for ``--help``."""
        lines = []
        for row in self.describe():
            opts = ", ".join(f"{k}=<required>" if v is inspect.Parameter.empty else f"{k}={v!r}"
                             for k, v in self.options(row["name"]).items())
            lines.append(f"{row['name']}{f' ({opts})' if opts else ''} - {row['summary']}")
        return "\n".join(lines)


# ---- value checks used by the methods' __init__ ---------------------------------------------------------------------
def check_number(method: str, option: str, value, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float:
    """A finite real number in [low, high] (``low_open``: ``low`` itself excluded); returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MethodError(f"{method}: option {option} must be a finite number; got {value!r}.")
    if low is not None and (value < low or (low_open and value == low)):
        raise MethodError(f"{method}: option {option} must be {'>' if low_open else '>='} {low}; got {value!r}.")
    if high is not None and value > high:
        raise MethodError(f"{method}: option {option} must be <= {high}; got {value!r}.")
    return float(value)


def check_int(method: str, option: str, value, low: int = 0) -> int:
    """An int >= low (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise MethodError(f"{method}: option {option} must be an integer >= {low}; got {value!r}.")
    return int(value)


def check_choice(method: str, option: str, value, choices: Sequence) -> object:
    """One of ``choices``."""
    if value not in choices:
        raise MethodError(f"{method}: option {option} must be one of {', '.join(map(repr, choices))}; "
                          f"got {value!r}.{_close(str(value), map(str, choices))}")
    return value


def check_tasks(method: str, tasks: Sequence[str]) -> list[str]:
    """The run's task names: a non-empty list of distinct strings."""
    tasks = list(tasks)
    if not tasks or len(set(tasks)) != len(tasks) or not all(isinstance(t, str) for t in tasks):
        raise MethodError(f"{method}: tasks must be a non-empty list of distinct task names; got {tasks!r}.")
    return tasks
