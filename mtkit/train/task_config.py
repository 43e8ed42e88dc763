"""One task's entry in a training config: its dataset (a default task or a spec), head, loss, pooling, layout
and batch size, checked with the key's name and the file."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mtkit.data.tasks import TaskSpec, default_tasks
from mtkit.tasks.multitask import cosine_range_problem, default_head_loss
from mtkit.train.checker import (
    ConfigError,
    _Checker,
    _unknown_key_message,
    _where,
    head_names,
    loss_names,
    pooling_names,
)

__all__ = ['LAYOUTS', 'SPEC_KEYS', 'TaskConfig']
LAYOUTS = ("bi", "cross")
# The keys of a task entry that describe the data (TaskSpec fields); the others describe training.
SPEC_KEYS = ("kind", "train", "dev", "test", "train_file", "dev_file", "test_file", "metric", "num_labels",
             "label_range", "labels", "columns", "delimiter", "preprocess", "description")


# ------------------------------------------------------------------------------------------------- tasks
@dataclass
class TaskConfig:
    """How one task is trained: its head, loss, pooling, layout, batch size and weight, plus its data spec.

    ``head``, ``loss`` and ``pooling`` left as None take the defaults for the task's kind (see
    ``mtkit.tasks.multitask.default_head_loss``). ``spec`` holds data keys (``kind``, ``train``, ``dev``, ``test``,
    ``num_labels``, ...): for the default tasks (sst, para, sts) they override the standard spec; any other
    name is a custom task and needs at least ``kind`` and its files.
    """
    name: str  # task name: "sst", "para", "sts", or a custom one
    head: str | None = None  # head kind (mtkit.tasks.heads); None: the default for the task's kind
    head_options: dict = field(default_factory=dict)  # keyword options of the head (features, hidden, ...)
    loss: str | None = None  # loss name (mtkit.tasks.losses); None: the default for the head
    loss_options: dict = field(default_factory=dict)  # keyword options of the loss (margin, scale, ...)
    pooling: str | None = None  # "cls" | "mean" | "max"; None: the run's ``pooling``
    layout: str | None = None  # pairs only: "bi" (two encoder passes, u and v) | "cross" (one joined pass)
    batch_size: int | None = None  # None: the run's ``batch_size``
    weight: float = 1.0  # loss weight of this task in a summed step
    train_limit: int | None = None  # use a random subset of this many training examples (None: the run's)
    dev_limit: int | None = None  # use the first ... dev examples for evaluation (None: the run's)
    dev_out: str | None = None  # where to write dev predictions (None: <output_dir>/predictions/<name>-dev-output.csv)
    test_out: str | None = None  # where to write test predictions
    spec: dict = field(default_factory=dict)  # data keys (TaskSpec fields), see the class docstring

    KEYS = ("name", "head", "head_options", "loss", "loss_options", "pooling", "layout", "batch_size", "weight",
            "train_limit", "dev_limit", "dev_out", "test_out")

    def validate(self, source: str | None = None) -> TaskConfig:
        c = _Checker(source, prefix=f"tasks.{self.name}.")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"every task needs a non-empty name (got {self.name!r}){_where(source)}.")
        heads, losses, poolings = head_names(), loss_names(), pooling_names()
        self.head = c.string("head", self.head, none_ok=True)
        if self.head is not None and heads is not None:
            c.choice("head", self.head, heads)
        self.loss = c.string("loss", self.loss, none_ok=True)
        if self.loss is not None and losses is not None:
            c.choice("loss", self.loss, losses)
        self.pooling = c.string("pooling", self.pooling, none_ok=True)
        if self.pooling is not None and poolings is not None:
            c.choice("pooling", self.pooling, poolings)
        self.head_options = c.mapping("head_options", self.head_options)
        self.loss_options = c.mapping("loss_options", self.loss_options)
        self.layout = c.choice("layout", self.layout, LAYOUTS, none_ok=True)
        self.batch_size = c.integer("batch_size", self.batch_size, minimum=1, none_ok=True)
        self.weight = c.number("weight", self.weight, minimum=0.0)
        self.train_limit = c.integer("train_limit", self.train_limit, minimum=1, none_ok=True)
        self.dev_limit = c.integer("dev_limit", self.dev_limit, minimum=1, none_ok=True)
        self.dev_out = c.string("dev_out", self.dev_out, none_ok=True)
        self.test_out = c.string("test_out", self.test_out, none_ok=True)
        self.spec = c.mapping("spec", self.spec)
        unknown = [k for k in self.spec if k not in SPEC_KEYS]
        if unknown:
            raise ConfigError(_unknown_key_message(unknown[0], list(SPEC_KEYS) + list(self.KEYS),
                                                   f"tasks.{self.name}: ", source))
        self.task_spec(source)  # builds the TaskSpec once, so a bad spec fails here
        if self.head == "cosine":  # a cosine head must predict on the cosine range its loss trains (report B)
            spec = self.task_spec(source)
            default_head, _, default_options = default_head_loss(spec.kind, self.layout or "bi")
            options = (default_options if default_head == "cosine" else {}) | self.head_options
            problem = cosine_range_problem("cosine", options, self.loss or "cosine_similarity", self.loss_options)
            if problem:
                raise c.fail("head_options", problem)
        if self.layout == "cross" and not self.task_spec().is_pair:
            raise c.fail("layout", "'cross' is for sentence-pair tasks; a single-sentence task has no pair to join")
        return self

    def task_spec(self, source: str | None = None):
        """The data spec (:class:`mtkit.data.TaskSpec`): the default task's, overridden by ``spec``."""
        defaults = {t.name: t for t in default_tasks()}
        values = dict(self.spec)
        for split in ("train", "dev", "test"):
            if split in values:
                values[f"{split}_file"] = values.pop(split)
        if self.name in defaults:
            merged = defaults[self.name].to_dict() | values
        else:
            if "kind" not in values:
                raise ConfigError(
                    f"tasks.{self.name}: {self.name!r} is not one of the default tasks ({', '.join(defaults)}), so it "
                    f"is a custom task and needs 'kind' (classification, pair_classification or pair_regression) and "
                    f"its files ('train', 'dev', optionally 'test'){_where(source)}.")
            merged = {"name": self.name} | values
        merged["name"] = self.name
        try:
            return TaskSpec.from_dict(merged)
        except ValueError as err:
            raise ConfigError(f"tasks.{self.name}: {err}{_where(source)}") from None

    @classmethod
    def from_entry(cls, entry, source: str | None = None, name: str | None = None) -> TaskConfig:
        """A task from a config entry: a name ("sst"), a mapping (with ``name``), or a TaskConfig."""
        if isinstance(entry, TaskConfig):
            return dataclasses.replace(entry).validate(source)
        if isinstance(entry, str) and name is None:
            return cls(name=entry).validate(source)
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise ConfigError(f"tasks: each task is a name or a mapping of options, got {entry!r}{_where(source)}.")
        values = dict(entry)
        if name is not None:
            if "name" in values and values["name"] != name:
                raise ConfigError(f"tasks.{name}: has name {values['name']!r}; leave 'name' out or make them "
                                  f"agree{_where(source)}.")
            values["name"] = name
        if "name" not in values:
            raise ConfigError(f"tasks: a task entry needs a 'name' (got {entry!r}){_where(source)}.")
        task_name = values.pop("name")
        spec = dict(values.pop("spec", None) or {})
        kwargs = {}
        for key, value in values.items():
            if key in cls.KEYS:
                kwargs[key] = value
            elif key in SPEC_KEYS:
                spec[key] = value
            else:
                raise ConfigError(_unknown_key_message(key, list(cls.KEYS) + list(SPEC_KEYS),
                                                       f"tasks.{task_name}: ", source))
        return cls(name=task_name, spec=spec, **kwargs).validate(source)

    def to_dict(self) -> dict:
        """The entry as written in YAML: only what differs from the defaults, spec keys inline."""
        out: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self):
            if f.name in ("name", "spec"):
                continue
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if value != default:
                out[f.name] = value
        for key, value in self.spec.items():
            out[key] = list(value) if isinstance(value, tuple) else value
        return out


def _normalize_tasks(tasks, source: str | None) -> list[TaskConfig]:
    if tasks is None:
        tasks = ["sst", "para", "sts"]
    if isinstance(tasks, (str, TaskConfig)):
        tasks = [tasks]
    if isinstance(tasks, dict):
        out = [TaskConfig.from_entry(v, source, name=k) for k, v in tasks.items()]
    elif isinstance(tasks, (list, tuple)):
        out = [TaskConfig.from_entry(v, source) for v in tasks]
    else:
        raise ConfigError(f"tasks: expected a list of task names or mappings (or a mapping name -> options), got "
                          f"{tasks!r}{_where(source)}.")
    if not out:
        raise ConfigError(f"tasks: the list is empty; name at least one task (sst, para, sts or a custom one)"
                          f"{_where(source)}.")
    names = [t.name for t in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"tasks: {duplicates} appear more than once; each task needs its own name{_where(source)}.")
    return out
