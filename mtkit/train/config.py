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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtkit.exercises.implementations import parse
from mtkit.train.checker import (
    ConfigError,
    _Checker,
    _unknown_key_message,
    _where,
    pooling_names,
    schedule_names,
    scheduler_names,
)
from mtkit.train.schedules import make_task_schedule
from mtkit.train.task_config import TaskConfig, _normalize_tasks
from mtkit.util.jsonable import to_plain

__all__ = ["TrainConfig", "TaskConfig", "ConfigError", "FINE_TUNE_MODES", "SELECTIONS", "NONFINITE", "OPTIMIZERS",
           "SURGERIES", "STARTER_DEFAULTS"]

FINE_TUNE_MODES = ("full-model", "last-linear-layer", "two-stage")
SELECTIONS = ("overall", "all-improve")
NONFINITE = ("raise", "skip")
OPTIMIZERS = ("adamw", "torch-adamw")
SURGERIES = ("none", "pcgrad", "main_aux")
# Defaults of the starter, kept in one place so the CLI can say what it uses.
STARTER_DEFAULTS = {"seed": 11711, "epochs": 10, "batch_size": 8, "lr": 1e-5, "dropout": 0.3}


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
        self.surgery_options = c.options("surgery_options", self.surgery_options,
                                         ("main_task", "aux_weight", "reduction"))
        if "reduction" in self.surgery_options:
            c.choice("surgery_options.reduction", self.surgery_options["reduction"], ("sum", "mean"))
        if "aux_weight" in self.surgery_options:
            self.surgery_options["aux_weight"] = c.number("surgery_options.aux_weight",
                                                          self.surgery_options["aux_weight"], 0.0)
        names = [t.name for t in self.tasks]
        self.loss_weights = c.options("loss_weights", self.loss_weights, ("main_task", "aux_weight"))
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
        self.fine_tune_options = c.options("fine_tune_options", self.fine_tune_options,
                                           ("stage1_epochs", "stage1_lr"))
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
        self.optimizer_options = c.options("optimizer_options", self.optimizer_options,
                                           ("betas", "eps", "correct_bias"))
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