"""One table of named choices per extension point (heads, losses, pooling, task schedules, gradient methods).

A ``Registry`` maps a config name to a class (or a function); its options are the keyword parameters of the
class's ``__init__`` (their defaults are the defaults). Config validation, the CLI's help and the docs read
the same table, so adding a choice is one new class plus one ``register`` line::

    LOSSES = Registry("loss", {"cross_entropy": CrossEntropyLoss, ...}, plural="losses")
    LOSSES.names                          # ('cross_entropy', ...)
    LOSSES.options("cosent")              # {'scale': 20.0}
    LOSSES.make("cosent", scale=10)
    LOSSES.register("my_loss", MyLoss)    # a new entry, seen by validation and ``make`` at once

Unknown names and option keys raise ``error`` (ValueError by default) with a "did you mean" and the list of
what is allowed.
"""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping

__all__ = ["Registry", "did_you_mean"]


def did_you_mean(word, choices: Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` for the closest of ``choices``, or an empty string."""
    match = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" Did you mean {match[0]!r}?" if match else ""


class Registry(Mapping):
    """name -> class (or function), with the options read from its signature.

    ``kind`` names an entry in "unknown" messages (``"head kind"``), ``owner`` in option messages (``"head"``,
    default ``kind``), ``plural`` the list (``"kinds"``). ``skip``: leading parameters that are not options
    (``self`` and whatever ``make`` passes positionally). ``normalize`` turns a misspelt name into the form the
    "did you mean" compares (for example ``_`` to ``-``).
    """

    def __init__(self, kind: str, entries: Mapping[str, Callable] | None = None, *, plural: str | None = None,
                 owner: str | None = None, skip: Iterable[str] = ("self",), error: type[Exception] = ValueError,
                 normalize: Callable[[str], str] = str) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.owner = owner or kind
        self.skip = tuple(skip)
        self.error = error
        self.normalize = normalize
        self._entries: dict[str, Callable] = {}
        for name, entry in (entries or {}).items():
            self.register(name, entry)

    # ---- the table --------------------------------------------------------------------------------------------
    def register(self, name: str, entry: Callable) -> Callable:
        """Add ``entry`` under ``name`` (a new name only); returns ``entry``."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} needs a non-empty string name, got {name!r}.")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered already ({self._entries[name].__name__}).")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register a toy entry)."""
        del self._entries[self.check(name)]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __getitem__(self, name: str) -> Callable:
        return self._entries[self.check(name)]

    def __contains__(self, name) -> bool:  # Mapping's default would go through __getitem__, which raises
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, name: str) -> str:
        """``name`` if registered, else ``error`` with the closest name and the full list."""
        if name not in self._entries:
            hint = did_you_mean(self.normalize(str(name)), self._entries)
            raise self.error(f"{self.kind} {name!r} is not known.{hint} Valid {self.plural}: "
                             f"{', '.join(self._entries)}.")
        return name

    # ---- options ----------------------------------------------------------------------------------------------
    def options(self, name: str) -> dict[str, object]:
        """The options of ``name`` and their defaults (``inspect.Parameter.empty`` when required)."""
        entry = self[name]
        function = entry.__init__ if inspect.isclass(entry) else entry
        parameters = inspect.signature(function).parameters.values()
        return {p.name: p.default for p in parameters
                if p.name not in self.skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def check_options(self, name: str, options: Mapping[str, object]) -> None:
        """``error`` for an option key that ``name`` does not have."""
        allowed = self.options(name)
        for key in options:
            if key not in allowed:
                raise self.error(f"{self.owner} {name!r} has no option {key!r}.{did_you_mean(key, allowed)} "
                                 f"Its options: {', '.join(allowed) or '(none)'}.")

    def make(self, name: str, *args, **options):
        """Build ``name`` with ``options`` (keys checked here, values by the entry itself)."""
        self.check_options(name, options)
        return self[name](*args, **options)
