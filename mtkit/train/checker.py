"""One voice for configuration errors: ``ConfigError``, the unknown-key message with its "did you mean", the
value checker every config section uses, and the names the other boxes register."""
from __future__ import annotations

import difflib
import math
from pathlib import Path

from mtkit.model.pooling import POOLING_REGISTRY
from mtkit.optim.schedules import SCHEDULES as SCHEDULERS
from mtkit.tasks.heads import HEAD_REGISTRY
from mtkit.tasks.losses import LOSS_REGISTRY
from mtkit.train.schedules import SCHEDULE_REGISTRY
from mtkit.util.registry import did_you_mean

__all__ = ['ConfigError', 'head_names', 'loss_names', 'pooling_names', 'schedule_names', 'scheduler_names']


class ConfigError(ValueError):
    """A configuration key or value that mtkit cannot use; the message names the key, what is allowed, and the file."""


def _where(source: str | None) -> str:
    return f" (in {source})" if source else ""


def _unknown_key_message(key: str, known: list[str], context: str, source: str | None) -> str:
    hint = did_you_mean(key, known)
    return (f"{context}unknown key {key!r}{_where(source)}.{hint} Allowed keys: {', '.join(sorted(known))}.")


def head_names() -> list[str]:
    return sorted(HEAD_REGISTRY.names)


def loss_names() -> list[str]:
    return sorted(LOSS_REGISTRY.names)


def pooling_names() -> list[str]:
    return sorted(POOLING_REGISTRY.names)


def schedule_names() -> list[str]:
    return sorted(SCHEDULE_REGISTRY.names)


def scheduler_names() -> list[str]:
    return sorted(SCHEDULERS)


# ------------------------------------------------------------------------------------------------- checks
class _Checker:
    """Small typed checks that raise ConfigError naming the key and the file."""

    def __init__(self, source: str | None, prefix: str = ""):
        self.source = source
        self.prefix = prefix

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.prefix}{key}: {message}{_where(self.source)}.")

    def choice(self, key: str, value, allowed, none_ok: bool = False):
        if value is None and none_ok:
            return None
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(key, f"{value!r} is not allowed{hint}; use one of {list(allowed)}")
        return value

    def integer(self, key: str, value, minimum: int | None = None, none_ok: bool = False):
        if value is None and none_ok:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self.fail(key, f"expected a whole number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value}")
        return value

    def number(self, key: str, value, minimum: float | None = None, maximum: float | None = None,
               none_ok: bool = False, strict_min: bool = False):
        if value is None and none_ok:
            return None
        if isinstance(value, str):  # YAML reads 1e-5 as a string (PyYAML follows YAML 1.1)
            try:
                value = float(value)
            except ValueError:
                raise self.fail(key, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value!r}")
        value = float(value)
        if minimum is not None and (value <= minimum if strict_min else value < minimum):
            raise self.fail(key, f"must be {'>' if strict_min else '>='} {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be <= {maximum}, got {value}")
        return value

    def boolean(self, key: str, value):
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def string(self, key: str, value, none_ok: bool = False):
        if value is None and none_ok:
            return None
        if isinstance(value, Path):
            return str(value)
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def mapping(self, key: str, value):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping of option names to values, got {value!r}")
        return dict(value)

    def options(self, key: str, value, allowed) -> dict:
        """A mapping whose keys must all be in ``allowed`` (an unknown one is named, with a "did you mean")."""
        options = self.mapping(key, value)
        for name in options:
            if name not in allowed:
                raise ConfigError(_unknown_key_message(name, list(allowed), f"{self.prefix}{key}: ", self.source))
        return options
