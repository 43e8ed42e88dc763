"""The training configuration: one dataclass tree whose field names are the YAML keys and the Python API.

Every method of the five reports (docs/REPORTS.md says which field or function holds each) is a field here,
never a code edit::

    from mtkit.train.config import TrainConfig
    config = TrainConfig(encoder="tiny", data_dir="demo", epochs=1,
                         tasks={"sst": {"pooling": "cls"}, "sts": {"head": "cosine", "loss": "cosine_similarity"}})
    config = TrainConfig.from_yaml("examples/report_a.yaml")      # the same names, in a file
    config = config.replace(lr=2e-5)                              # validated again

``mtkit train --config file.yaml --lr 2e-5`` reads the same file and lets command-line flags override it.
Unknown keys and invalid values raise :class:`ConfigError`, whose message names the key, the allowed values
and the file.

Defaults follow the CS224N starter (``multitask_classifier.py``) where it has one: seed 11711, 10 epochs,
batch size 8, lr 1e-5, head dropout 0.3. One deliberate difference: ``fine_tune_mode`` defaults to
``"full-model"`` (the starter's default is ``"last-linear-layer"``, which trains only the heads).

Taught in notebooks/07_multitask_training.ipynb.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtkit.data.tasks import TaskSpec, default_tasks
from mtkit.exercises.implementations import parse
from mtkit.tasks.multitask import cosine_range_problem, default_head_loss
from mtkit.train.schedules import make_task_schedule
from mtkit.util.jsonable import to_plain

FINE_TUNE_MODES = ("full-model", "last-linear-layer", "two-stage")
SELECTIONS = ("overall", "all-improve")
LAYOUTS = ("bi", "cross")
NONFINITE = ("raise", "skip")
OPTIMIZERS = ("adamw", "torch-adamw")
SURGERIES = ("none", "pcgrad", "main_aux")
# Defaults of the starter, kept in one place so the CLI can say what it uses.
STARTER_DEFAULTS = {"seed": 11711, "epochs": 10, "batch_size": 8, "lr": 1e-5, "dropout": 0.3}
# The keys of a task entry that describe the data (TaskSpec fields); the others describe training.
SPEC_KEYS = ("kind", "train", "dev", "test", "train_file", "dev_file", "test_file", "metric", "num_labels",
             "label_range", "labels", "columns", "delimiter", "preprocess", "description")


class ConfigError(ValueError):
    """A configuration key or value that mtkit cannot use; the message names the key, what is allowed, and the file."""


def _where(source: str | None) -> str:
    return f" (in {source})" if source else ""


def _unknown_key_message(key: str, known: list[str], context: str, source: str | None) -> str:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (f"{context}unknown key {key!r}{_where(source)}.{hint} Allowed keys: {', '.join(sorted(known))}.")


def _registry_names(module: str, attribute_candidates: tuple[str, ...]) -> list[str] | None:
    """Names registered in another box (heads, losses, pooling, schedules); None when that box is not there."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    for attribute in attribute_candidates:
        value = getattr(mod, attribute, None)
        if value:
            return sorted(value)
    return None


def head_names() -> list[str] | None:
    return _registry_names("mtkit.tasks.heads", ("HEADS", "HEAD_KINDS"))


def loss_names() -> list[str] | None:
    return _registry_names("mtkit.tasks.losses", ("LOSSES", "LOSS_NAMES"))


def pooling_names() -> list[str] | None:
    return _registry_names("mtkit.model.pooling", ("POOLING_MODES", "MODES"))


def schedule_names() -> list[str] | None:
    return _registry_names("mtkit.train.schedules", ("SCHEDULES", "SCHEDULE_NAMES"))


def scheduler_names() -> list[str] | None:
    return _registry_names("mtkit.optim", ("SCHEDULES", "SCHEDULERS"))


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


# ------------------------------------------------------------------------------------------------- the run
@dataclass
class TrainConfig:
    """Everything a training run needs. Field names = YAML keys = ``mtkit train`` config keys.

    Taught in notebooks/07_multitask_training.ipynb.
    """
    # --- model
    encoder: str | None = None  # None: the default encoder (all-MiniLM-L6-v2); a HF BERT folder; "tiny": random 2x64
    tokenizer: str | None = None  # folder with vocab.txt; None: the encoder's (the default encoder's for "tiny")
    pooling: str = "mean"  # default pooling of every task: "cls" | "mean" | "max"
    dropout: float = 0.3  # head dropout (the starter's hidden_dropout_prob)
    encoder_dropout: float | None = None  # None: keep the encoder config's dropout; a number overrides it
    shared_pair_layer: int | None = None  # width of a layer shared by the pair tasks before their heads (report E)
    implementations: Any = None  # None: mtkit's own; "exercises" | "solutions" | a folder | {piece: source}: your
    # attention, layer, AdamW step, mean pooling and PCGrad train the model, after their checks (mtkit.exercises.implementations)
    max_length: int = 128  # tokens per sentence (per joined pair for the cross layout)
    # --- data
    data_dir: str | None = None  # folder of the CSV files; None: found (MTKIT_DATA, ./data, ...); "demo": demo data
    tasks: list = field(default_factory=lambda: ["sst", "para", "sts"])  # names, mappings, or name -> options
    train_limit: int | None = None  # random subset of each training set (None: all), for fast experiments
    dev_limit: int | None = None  # first N dev examples of each task (None: all)
    bucketing: bool = True  # batches of similar lengths (less padding); False: plain shuffled batches
    # --- schedule and surgery
    schedule: str = "sequential"  # task schedule (mtkit.train.schedules): sequential, round-robin, equal, ...
    schedule_options: dict = field(default_factory=dict)  # e.g. {order: [sst, para, sts]} or {temperature: 2}
    loss_weights: dict = field(default_factory=dict)  # main + auxiliary weighting: {main_task: sst, aux_weight: 0.3}
    surgery: str = "none"  # gradient surgery: "none" | "pcgrad" | "main_aux"
    surgery_options: dict = field(default_factory=dict)  # main_task, aux_weight (0.3), reduction ("sum")
    telemetry_every: int = 50  # gradient-conflict telemetry every N optimizer steps (0: off)
    # --- optimisation
    fine_tune_mode: str = "full-model"  # "full-model" | "last-linear-layer" | "two-stage"
    fine_tune_options: dict = field(default_factory=dict)  # two-stage: stage1_epochs (1), stage1_lr (1e-3)
    lr: float = 1e-5  # learning rate of the encoder's top (and of the heads unless head_lr is set)
    head_lr: float | None = None  # learning rate of the heads; None: lr
    llrd_decay: float | None = None  # layer-wise lr decay xi (report D: 0.95); None: no decay
    weight_decay: float = 0.0  # decoupled weight decay (not on biases and LayerNorm)
    optimizer: str = "adamw"  # "adamw" (mtkit's, CS224N semantics) | "torch-adamw"
    optimizer_options: dict = field(default_factory=dict)  # betas, eps, correct_bias
    scheduler: str = "constant"  # lr schedule (mtkit.optim.make_scheduler): constant, linear, cosine, ...
    warmup_ratio: float = 0.0  # fraction of the optimizer steps spent warming up
    scheduler_options: dict = field(default_factory=dict)
    scheduler_steps: int | None = None  # optimizer steps the lr schedule spans (None: every step of the epochs);
    # with max_steps, set it to max_steps so warm-up and decay fit the budget (max_steps alone only pauses a run)
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps (a budget; notebooks use it)
    batch_size: int = 8  # per task, unless a task sets its own
    eval_batch_size: int | None = None  # None: 2 x batch_size
    grad_accum_steps: int = 1  # micro-steps per optimizer step (the loss is divided accordingly)
    max_grad_norm: float | None = 1.0  # clip the global gradient norm (None: no clipping)
    nonfinite: str = "raise"  # a non-finite loss: "raise" (an error naming step, task and batch ids) | "skip"
    # --- evaluation and selection
    eval_every: Any = "epoch"  # "epoch" or a number of optimizer steps
    selection: str = "overall"  # keep the best by "overall" score, or "all-improve" (every task's metric, report A)
    write_predictions: bool = True  # after training, write dev/test predictions of the best model
    # --- run
    seed: int = 11711  # the starter's seed
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" | "mps"
    amp: bool = True  # bf16 autocast on CUDA (ignored elsewhere)
    deterministic: bool = False  # ask torch for deterministic kernels
    output_dir: str = "runs/mtkit"  # checkpoints, history, predictions
    checkpoint_every: int | None = None  # also checkpoint every N optimizer steps (None: at each evaluation)
    keep_checkpoints: int = 1  # resumable checkpoints kept besides the newest (older ones are deleted)
    progress: bool = True  # tqdm progress bars

    source: str | None = field(default=None, repr=False, compare=False)  # the file this came from (for messages)

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------------------------------------- checks
    def validate(self) -> TrainConfig:
        src = self.source
        c = _Checker(src)
        self.encoder = c.string("encoder", self.encoder, none_ok=True)
        self.tokenizer = c.string("tokenizer", self.tokenizer, none_ok=True)
        self.pooling = c.string("pooling", self.pooling)
        poolings = pooling_names()
        if poolings is not None:
            c.choice("pooling", self.pooling, poolings)
        self.dropout = c.number("dropout", self.dropout, 0.0, 1.0)
        self.encoder_dropout = c.number("encoder_dropout", self.encoder_dropout, 0.0, 1.0, none_ok=True)
        self.shared_pair_layer = c.integer("shared_pair_layer", self.shared_pair_layer, minimum=1, none_ok=True)
        if self.implementations is not None:
            if isinstance(self.implementations, Path):
                self.implementations = str(self.implementations)
            try:
                parse(self.implementations)
            except ValueError as err:
                raise c.fail("implementations", str(err)) from None
            if isinstance(self.implementations, dict):
                self.implementations = dict(self.implementations)
        self.max_length = c.integer("max_length", self.max_length, minimum=4)
        self.data_dir = c.string("data_dir", self.data_dir, none_ok=True)
        self.tasks = _normalize_tasks(self.tasks, src)
        self.train_limit = c.integer("train_limit", self.train_limit, minimum=1, none_ok=True)
        self.dev_limit = c.integer("dev_limit", self.dev_limit, minimum=1, none_ok=True)
        self.bucketing = c.boolean("bucketing", self.bucketing)
        self.schedule = c.string("schedule", self.schedule)
        schedules = schedule_names()
        if schedules is not None:
            c.choice("schedule", self.schedule, schedules)
        self.schedule_options = c.mapping("schedule_options", self.schedule_options)
        if schedules is not None:
            try:
                make_task_schedule(self.schedule, **self.schedule_options)
            except (ValueError, TypeError) as err:
                raise c.fail("schedule_options", str(err).rstrip(".")) from None
        self.surgery = c.choice("surgery", self.surgery, SURGERIES)
        self.surgery_options = c.mapping("surgery_options", self.surgery_options)
        allowed = ("main_task", "aux_weight", "reduction")
        for key in self.surgery_options:
            if key not in allowed:
                raise ConfigError(_unknown_key_message(key, list(allowed), "surgery_options: ", src))
        if "reduction" in self.surgery_options:
            c.choice("surgery_options.reduction", self.surgery_options["reduction"], ("sum", "mean"))
        if "aux_weight" in self.surgery_options:
            self.surgery_options["aux_weight"] = c.number("surgery_options.aux_weight",
                                                          self.surgery_options["aux_weight"], 0.0)
        names = [t.name for t in self.tasks]
        self.loss_weights = c.mapping("loss_weights", self.loss_weights)
        for key in self.loss_weights:
            if key not in ("main_task", "aux_weight"):
                raise ConfigError(_unknown_key_message(key, ["main_task", "aux_weight"], "loss_weights: ", src))
        if self.loss_weights:
            if self.loss_weights.get("main_task") not in names:
                raise c.fail("loss_weights.main_task", f"must be one of the tasks {names}, got "
                                                       f"{self.loss_weights.get('main_task')!r}")
            if "aux_weight" in self.loss_weights:
                self.loss_weights["aux_weight"] = c.number("loss_weights.aux_weight", self.loss_weights["aux_weight"],
                                                           0.0)
            if self.surgery == "main_aux":
                raise c.fail("loss_weights", "surgery 'main_aux' already scales the auxiliary gradients by its "
                                             "aux_weight; weighting the losses too would apply lambda twice. Keep one")
        if self.surgery == "main_aux":
            main = self.surgery_options.get("main_task")
            if main not in names:
                raise c.fail("surgery_options.main_task",
                             f"surgery 'main_aux' needs main_task set to one of the tasks {names}, got {main!r}")
            if len(names) < 2:
                raise c.fail("surgery", "'main_aux' needs at least one auxiliary task besides the main task")
        self.telemetry_every = c.integer("telemetry_every", self.telemetry_every, minimum=0)
        self.fine_tune_mode = c.choice("fine_tune_mode", self.fine_tune_mode, FINE_TUNE_MODES)
        self.fine_tune_options = c.mapping("fine_tune_options", self.fine_tune_options)
        allowed = ("stage1_epochs", "stage1_lr")
        for key in self.fine_tune_options:
            if key not in allowed:
                raise ConfigError(_unknown_key_message(key, list(allowed), "fine_tune_options: ", src))
        if self.fine_tune_options and self.fine_tune_mode != "two-stage":
            raise c.fail("fine_tune_options", f"these options are for fine_tune_mode 'two-stage', not "
                                              f"{self.fine_tune_mode!r}")
        if "stage1_epochs" in self.fine_tune_options:
            self.fine_tune_options["stage1_epochs"] = c.integer("fine_tune_options.stage1_epochs",
                                                                self.fine_tune_options["stage1_epochs"], minimum=1)
        if "stage1_lr" in self.fine_tune_options:
            self.fine_tune_options["stage1_lr"] = c.number("fine_tune_options.stage1_lr",
                                                           self.fine_tune_options["stage1_lr"], 0.0, strict_min=True)
        self.lr = c.number("lr", self.lr, 0.0, strict_min=True)
        self.head_lr = c.number("head_lr", self.head_lr, 0.0, strict_min=True, none_ok=True)
        self.llrd_decay = c.number("llrd_decay", self.llrd_decay, 0.0, 1.0, none_ok=True, strict_min=True)
        self.weight_decay = c.number("weight_decay", self.weight_decay, 0.0)
        self.optimizer = c.choice("optimizer", self.optimizer, OPTIMIZERS)
        self.optimizer_options = c.mapping("optimizer_options", self.optimizer_options)
        allowed = ("betas", "eps", "correct_bias")
        for key in self.optimizer_options:
            if key not in allowed:
                raise ConfigError(_unknown_key_message(key, list(allowed), "optimizer_options: ", src))
        self.scheduler = c.string("scheduler", self.scheduler)
        schedulers = scheduler_names()
        if schedulers is not None:
            c.choice("scheduler", self.scheduler, schedulers)
        self.warmup_ratio = c.number("warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        self.scheduler_options = c.mapping("scheduler_options", self.scheduler_options)
        self.scheduler_steps = c.integer("scheduler_steps", self.scheduler_steps, minimum=1, none_ok=True)
        self.epochs = c.integer("epochs", self.epochs, minimum=1)
        if self.fine_tune_mode == "two-stage":
            stage1 = self.fine_tune_options.get("stage1_epochs", 1)
            if stage1 >= self.epochs:
                raise c.fail("fine_tune_options.stage1_epochs",
                             f"two-stage trains the heads for stage1_epochs ({stage1}) and then the whole model, so "
                             f"it needs epochs ({self.epochs}) > stage1_epochs")
        self.max_steps = c.integer("max_steps", self.max_steps, minimum=1, none_ok=True)
        self.batch_size = c.integer("batch_size", self.batch_size, minimum=1)
        self.eval_batch_size = c.integer("eval_batch_size", self.eval_batch_size, minimum=1, none_ok=True)
        self.grad_accum_steps = c.integer("grad_accum_steps", self.grad_accum_steps, minimum=1)
        self.max_grad_norm = c.number("max_grad_norm", self.max_grad_norm, 0.0, strict_min=True, none_ok=True)
        self.nonfinite = c.choice("nonfinite", self.nonfinite, NONFINITE)
        if self.eval_every != "epoch":
            if isinstance(self.eval_every, str) and self.eval_every.isdigit():
                self.eval_every = int(self.eval_every)
            if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 1:
                raise c.fail("eval_every", f"expected 'epoch' or a positive number of optimizer steps, got "
                                           f"{self.eval_every!r}")
        self.selection = c.choice("selection", self.selection, SELECTIONS)
        self.write_predictions = c.boolean("write_predictions", self.write_predictions)
        self.seed = c.integer("seed", self.seed, minimum=0)
        self.device = c.string("device", self.device)
        if self.device.split(":")[0] not in ("auto", "cpu", "cuda", "mps"):
            raise c.fail("device", f"{self.device!r} is not a device; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        self.amp = c.boolean("amp", self.amp)
        self.deterministic = c.boolean("deterministic", self.deterministic)
        self.output_dir = c.string("output_dir", self.output_dir)
        self.checkpoint_every = c.integer("checkpoint_every", self.checkpoint_every, minimum=1, none_ok=True)
        self.keep_checkpoints = c.integer("keep_checkpoints", self.keep_checkpoints, minimum=0)
        self.progress = c.boolean("progress", self.progress)
        return self

    # ----------------------------------------------------------------------------------------------- access
    def task(self, name: str) -> TaskConfig:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"no task {name!r} in this config; its tasks are {[t.name for t in self.tasks]}.")

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes`` applied, validated again (unknown names raise ConfigError)."""
        known = [f.name for f in dataclasses.fields(self)]
        for key in changes:
            if key not in known:
                raise ConfigError(_unknown_key_message(key, known, "", self.source))
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------------------------------------- I/O
    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "source"]

    @classmethod
    def from_dict(cls, values: dict | None, source: str | None = None) -> TrainConfig:
        """Build from a mapping (a parsed YAML file); unknown keys raise ConfigError naming them and the file."""
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"a training config is a mapping of keys to values, got {type(values).__name__}"
                              f"{_where(source)}.")
        known = cls.keys()
        for key in values:
            if key not in known:
                raise ConfigError(_unknown_key_message(key, known, "", source))
        return cls(**values, source=source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        import yaml  # imported here: PyYAML is needed only when a YAML file is read
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No config file at {path}.")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
        return cls.from_dict(values, source=str(path))

    def to_dict(self) -> dict:
        """Plain values (JSON/YAML-ready) that ``from_dict`` reads back to an equal config."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "source":
                continue
            value = getattr(self, f.name)
            if f.name == "tasks":
                value = [t.to_dict() for t in value]
            out[f.name] = to_plain(value)
        return out

    def to_yaml(self, path: str | Path | None = None) -> str:
        import yaml  # imported here: PyYAML is needed only when a YAML file is read
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text
