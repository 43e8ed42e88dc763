"""The multitask trainer: one encoder, one head per task, trained together, and never losing work.

One optimizer step, in order:

1. the task schedule (``mtkit.task_schedules``) says which tasks' batches go into this step;
2. each task's batch goes through the model and its loss is backpropagated on its own (the tasks' inputs are
   disjoint, so K backward passes do exactly the work of one backward of the summed loss, and no graph is
   kept); with gradient accumulation, ``grad_accum_steps`` such micro-steps are summed, each divided by
   their number;
3. with gradient surgery (PCGrad, Yu et al. 2020, "Gradient Surgery for Multi-Task Learning",
   arXiv 2001.06782; or main + auxiliary as in MTRec, Bi et al. 2022) each task's encoder gradient is
   captured and the projected combination written back (``mtkit.surgery``);
4. the losses are checked once: a non-finite loss raises an error naming the step, the task and the batch's
   example ids (or the step is skipped and counted, with ``nonfinite: skip``);
5. the gradient norm is clipped, AdamW steps, the lr schedule steps.

Dev evaluation runs every epoch (or every N steps); the best model is kept by the overall score or, as in
report A, only when every task improves at once. Checkpoints (``mtkit.checkpoint``) hold everything needed to
continue exactly where a killed run stopped: weights, optimizer and lr-schedule state, RNG states, the epoch's
task plan and the position in it, the surgery state and the history so far. The data order of an epoch is a
function of (seed, task, epoch) only, so ``fit(resume=True)`` ends with the same weights as a run that was
never interrupted (``tests/test_resume.py`` checks it with a SIGKILL).

Taught in notebooks/07_multitask_training.ipynb.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import random
import shutil
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mtkit.checkpoint import CheckpointError, CheckpointStore, read_checkpoint, resolve, run_config_name
from mtkit.history import History
from mtkit.train_config import TrainConfig

__all__ = ["Trainer", "TrainResult", "NonFiniteLossError", "select", "overall_of", "derive_seed", "train"]


class NonFiniteLossError(FloatingPointError):
    """A loss that is NaN or infinite; ``step``, ``epoch``, ``task``, ``ids`` and ``value`` say where."""

    def __init__(self, message: str, step: int, epoch: int, task: str, ids: list, value: float):
        super().__init__(message)
        self.step, self.epoch, self.task, self.ids, self.value = step, epoch, task, ids, value


def derive_seed(*parts) -> int:
    """A 63-bit seed from any parts (the run seed, a task name, an epoch ...), the same on every machine."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# ------------------------------------------------------------------------------------------- selection rules
def normalized_score(metric: str, value: float) -> float:
    """A task's score on [0, 1]: correlations (Pearson, Spearman) go from [-1, 1] to [0, 1] as (r + 1) / 2."""
    return (value + 1) / 2 if metric in ("pearson", "spearman") else value


def overall_of(scores: dict[str, float], metrics: dict[str, str]) -> float:
    """The mean of the tasks' normalised scores. With SST, Quora and STS this is the CS224N overall score
    (sst_acc + para_acc + (sts_r + 1) / 2) / 3 (``mtkit.metrics.overall_score``)."""
    values = [normalized_score(metrics[t], s) for t, s in scores.items()]
    return float(sum(values) / len(values)) if values else float("nan")


def select(rule: str, current: dict, best: dict | None) -> bool:
    """Whether ``current`` evaluation replaces ``best`` under ``rule``.

    ``"overall"``: the overall score is higher. ``"all-improve"`` (report A): every task's score is higher at
    once; a run whose tasks trade places keeps its old best. The first evaluation is always kept. ``current``
    and ``best`` are dicts with ``overall`` and ``scores`` (task -> score).
    """
    if best is None:
        return True
    if rule == "overall":
        return current["overall"] > best["overall"]
    if rule == "all-improve":
        return all(current["scores"][t] > best["scores"][t] for t in current["scores"])
    raise ValueError(f"selection rule {rule!r} is not known; use 'overall' or 'all-improve'.")


# ------------------------------------------------------------------------------------------- data of one task
@dataclass
class TaskData:
    """One task's spec, training options and encoded splits."""
    spec: object  # mtkit.data.TaskSpec (num_labels filled in)
    options: object  # mtkit.train_config.TaskConfig
    layout: str  # "single", "bi" or "cross"
    batch_size: int
    train: object | None = None  # EncodedDataset
    dev: object | None = None
    reports: dict = field(default_factory=dict)  # split -> LoadReport


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns: best and final dev metrics and where everything was written."""
    output_dir: Path
    best: dict | None  # {"step", "epoch", "metrics", "scores", "overall"} of the selected model
    final: dict | None  # the last evaluation
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    history_path: Path | None
    predictions: dict[str, Path]
    steps: int
    skipped_steps: int
    finished: bool  # False when max_steps stopped the run before its last epoch ended
    history: History

    @property
    def best_metrics(self) -> dict | None:
        return None if self.best is None else self.best["metrics"]

    def __str__(self) -> str:
        lines = [f"mtkit run in {self.output_dir}: {self.steps} optimizer steps"
                 + (f" ({self.skipped_steps} skipped)" if self.skipped_steps else "")
                 + ("" if self.finished else " (stopped by max_steps)")]
        if self.best is not None:
            scores = ", ".join(f"{t} {s:.4f}" for t, s in self.best["scores"].items())
            lines.append(f"  best (step {self.best['step']}, epoch {self.best['epoch']}): {scores}; "
                         f"overall {self.best['overall']:.4f}")
        if self.best_checkpoint:
            lines.append(f"  best model: {self.best_checkpoint}")
        for name, path in self.predictions.items():
            lines.append(f"  predictions {name}: {path}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------- building blocks
def resolve_data_dir(config: TrainConfig, specs) -> Path:
    """``data_dir``: a folder, ``"demo"`` (the demo set, written once into the cache), or None (searched)."""
    if config.data_dir == "demo":
        from mtkit.data.demo import demo_data_dir
        return demo_data_dir()
    from mtkit.data.locate import find_data_dir
    return Path(find_data_dir(config.data_dir, tasks=specs).path)


def build_tokenizer(config: TrainConfig):
    from mtkit.tokenizer import Tokenizer
    if config.tokenizer is not None:
        return Tokenizer.from_pretrained(config.tokenizer)
    if config.encoder in (None, "tiny"):
        return Tokenizer.from_pretrained(None)
    return Tokenizer.from_pretrained(config.encoder)


def build_encoder(config: TrainConfig):
    """The encoder: the default one, a folder, or ``"tiny"`` (random 2 x 64, for tests), with dropout set."""
    from mtkit.bert import BertModel
    from mtkit.config import BertConfig
    if config.encoder == "tiny":
        bert_config = BertConfig.tiny()
        if config.encoder_dropout is not None:
            bert_config.hidden_dropout_prob = bert_config.attention_probs_dropout_prob = config.encoder_dropout
        encoder = BertModel(bert_config)
    else:
        encoder = BertModel.from_pretrained(config.encoder)
        if config.encoder_dropout is not None:
            set_encoder_dropout(encoder, config.encoder_dropout)
    return encoder.train()


def set_encoder_dropout(encoder, p: float) -> None:
    encoder.config.hidden_dropout_prob = p
    encoder.config.attention_probs_dropout_prob = p
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
    if hasattr(encoder, "layers"):
        for layer in encoder.layers:  # attention dropout may be a float attribute for the fused kernel
            attention = getattr(layer, "attention", None)
            for attr in ("dropout_p", "attention_dropout", "dropout_prob"):
                if attention is not None and isinstance(getattr(attention, attr, None), float):
                    setattr(attention, attr, p)


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _tokens(batch: dict) -> int:
    return int(sum(int(v.sum()) for k, v in batch.items() if k.startswith("attention_mask")))


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# Config fields that may differ between a run and its resumption (they change no number of the result).
RESUME_MAY_CHANGE = ("progress", "write_predictions", "output_dir", "data_dir", "keep_checkpoints", "max_steps",
                     "checkpoint_every", "device", "tokenizer", "encoder")


class Trainer:
    """Trains a :class:`mtkit.multitask.MultitaskModel` as a :class:`TrainConfig` says.

    ``Trainer(config).fit()`` builds everything from the config (data, tokenizer, encoder, heads). Pass
    ``model`` / ``tokenizer`` to use your own objects. ``callbacks``: functions ``fn(event, record, trainer)``
    called on ``"step"``, ``"eval"``, ``"epoch"``, ``"checkpoint"`` and ``"stage"`` (live curves in a notebook,
    early stops: raise ``StopTraining`` from one to end the run cleanly).

    Taught in notebooks/07_multitask_training.ipynb.
    """

    def __init__(self, config: TrainConfig, *, model=None, tokenizer=None,
                 callbacks: list[Callable] | None = None, verbose: bool = True):
        from mtkit.device import get_device, seed_everything
        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        self.config = config
        self.verbose = verbose
        self.callbacks = list(callbacks or [])
        self.device = get_device(None if config.device == "auto" else config.device, verbose=verbose)
        seed_everything(config.seed, deterministic=config.deterministic)
        self.output_dir = Path(config.output_dir)
        self.implementations = None  # a learner's pieces (mtkit.implementations), checked before anything else
        if config.implementations is not None:
            from mtkit.implementations import load
            self.implementations = load(config)  # raises ImplementationError with the failing check's message
            if verbose:
                hooks = self.implementations.hooks
                note = ""
                if (hooks.attention or hooks.layer) and (config.encoder_dropout is None or config.encoder_dropout > 0):
                    note = ("\n  (the exercises compute the eval-mode forward: the encoder trains without dropout; "
                            "the heads keep theirs)")
                print(f"[mtkit] implementations (each passed its check against mtkit):\n{self.implementations}{note}")

        specs = [t.task_spec(config.source) for t in config.tasks]
        self.data_dir = resolve_data_dir(config, specs)
        self.tokenizer = tokenizer if tokenizer is not None else build_tokenizer(config)
        self.tasks: dict[str, TaskData] = self._load_tasks(specs)
        if model is None:
            from mtkit.multitask import build_model
            model = build_model(config, [d.spec for d in self.tasks.values()], encoder=build_encoder(config))
        self.model = model.to(self.device)
        if self.implementations is not None:
            from mtkit.implementations import install
            install(self.model, self.implementations.hooks)

        from mtkit.task_schedules import make_task_schedule
        try:
            self.schedule = make_task_schedule(config.schedule, **config.schedule_options)
        except ValueError as err:
            raise ValueError(f"schedule_options: {err}") from None
        self.loss_weights = self._loss_weights()
        self.history = History(self.output_dir / "history.jsonl")
        self.checkpoints = CheckpointStore(self.output_dir / "checkpoints", keep=config.keep_checkpoints)
        self.best_store = CheckpointStore(self.output_dir / "best", keep=0)
        # training position
        self.step = 0  # optimizer steps done (skipped ones included)
        self.epoch = 0  # the epoch under way (0-based)
        self.position = 0  # index into the epoch's plan of the next micro-step
        self.plan: list[list[str]] | None = None
        self.stage = 0  # index into self.stages()
        self.best: dict | None = None
        self.last_eval: dict | None = None
        self.last_eval_step = -1
        self.skipped_steps = 0
        self.finished = False
        self.epoch_loss: dict[str, list[float]] = {}
        self.optimizer = None
        self.scheduler = None
        self.surgery = None
        self._batch_cache: dict = {}
        self._segment_start = time.perf_counter()

    # ------------------------------------------------------------------------------------------------ data
    def _load_tasks(self, specs) -> dict[str, TaskData]:
        from mtkit.data.batching import EncodedDataset
        from mtkit.data.tasks import load_split
        config = self.config
        out = {}
        for options, spec in zip(config.tasks, specs):
            reports = {}
            train, reports["train"] = load_split(spec, self.data_dir, "train")
            limit = options.train_limit or config.train_limit
            if limit is not None and limit < len(train):
                rng = random.Random(derive_seed(config.seed, spec.name, "train_limit"))
                keep = sorted(rng.sample(range(len(train)), limit))
                train = [train[i] for i in keep]
            if spec.num_labels is None and not spec.is_regression:
                spec = copy.deepcopy(spec)
                spec.num_labels = reports["train"].num_labels
            dev = None
            if spec.dev_file:
                dev, reports["dev"] = load_split(spec, self.data_dir, "dev")
                limit = options.dev_limit or config.dev_limit
                if limit is not None:
                    dev = dev[:limit]
            layout = (options.layout or "bi") if spec.is_pair else "single"
            data_layout = "bi" if layout == "single" else layout
            label_dtype = torch.long if spec.kind == "classification" else torch.float
            train_set = EncodedDataset(train, self.tokenizer, layout=data_layout, max_length=config.max_length,
                                       label_dtype=label_dtype)
            dev_set = None if not dev else EncodedDataset(dev, self.tokenizer, layout=data_layout,
                                                          max_length=config.max_length, label_dtype=label_dtype)
            out[spec.name] = TaskData(spec=spec, options=options, layout=layout,
                                      batch_size=options.batch_size or config.batch_size,
                                      train=train_set, dev=dev_set, reports=reports)
            if self.verbose:
                for split, report in reports.items():
                    if not report.ok:
                        print(f"[mtkit] {spec.name} {split}: {report}")
        return out

    def _pass_batches(self, task: str, epoch: int, cycle: int) -> list[list[int]]:
        """The batches (index lists) of one pass over a task's training set; a function of (seed, task, epoch,
        cycle) only, so a resumed run sees the same order. ``cycle`` > 0 when a schedule re-samples a small task."""
        key = (task, epoch, cycle)
        if key not in self._batch_cache:
            from mtkit.data.batching import BucketBatchSampler
            data = self.tasks[task]
            generator = torch.Generator().manual_seed(derive_seed(self.config.seed, task, epoch, cycle))
            if self.config.bucketing:
                sampler = BucketBatchSampler(data.train.lengths, data.batch_size, shuffle=True, generator=generator)
                batches = sampler.batches(epoch)
            else:
                order = torch.randperm(len(data.train), generator=generator)
                batches = [b.tolist() for b in torch.split(order, data.batch_size)]
            self._batch_cache[key] = batches
        return self._batch_cache[key]

    def batches_per_pass(self) -> dict[str, int]:
        return {name: math.ceil(len(d.train) / d.batch_size) for name, d in self.tasks.items()}

    def _batch(self, task: str, epoch: int, k: int) -> dict:
        """The k-th batch of ``task`` in ``epoch`` (k may exceed one pass: the set is re-shuffled and reused)."""
        data = self.tasks[task]
        n = self.batches_per_pass()[task]
        cycle, index = divmod(k, n)
        indices = self._pass_batches(task, epoch, cycle)[index]
        return self._collate(data, data.train, indices)

    @staticmethod
    def _collate(data: TaskData, dataset, indices: list[int]) -> dict:
        from mtkit.data.batching import Collator
        collator = Collator(dataset.pad_token_id, dataset.layout, dataset.label_dtype)
        return collator([dataset[i] for i in indices])

    def epoch_plan(self, epoch: int) -> list[list[str]]:
        """The micro-steps of ``epoch``: each the list of tasks whose next batch goes into it."""
        rng = np.random.default_rng(derive_seed(self.config.seed, "plan", epoch))
        plan = self.schedule.epoch_plan(epoch, self.batches_per_pass(), rng)
        plan = [list(step) if not isinstance(step, str) else [step] for step in plan]
        unknown = {t for step in plan for t in step} - set(self.tasks)
        if unknown:
            raise ValueError(f"the task schedule {self.config.schedule!r} planned unknown task(s) {sorted(unknown)}.")
        return plan

    # ------------------------------------------------------------------------------------------------ stages
    def stages(self) -> list[dict]:
        """The fine-tune stages: one for full-model / last-linear-layer, two for two-stage (heads first, then
        the whole model from the trained heads; ``mtkit.optim.TwoStagePlan``)."""
        c = self.config
        if c.fine_tune_mode != "two-stage":
            return [{"mode": c.fine_tune_mode, "lr": c.lr, "first_epoch": 0, "epochs": c.epochs}]
        from mtkit.optim import TwoStagePlan
        plan = TwoStagePlan(head_epochs=int(c.fine_tune_options.get("stage1_epochs", 1)),
                            head_lr=float(c.fine_tune_options.get("stage1_lr", 1e-3)), full_lr=c.lr)
        if plan.head_epochs >= c.epochs:
            raise ValueError(f"fine_tune_mode 'two-stage' needs fine_tune_options.stage1_epochs ({plan.head_epochs}) "
                             f"< epochs ({c.epochs}): stage 1 trains the heads, stage 2 the whole model.")
        one, two = plan.stage_for_epoch(0), plan.stage_for_epoch(plan.head_epochs)
        return [{"mode": one.mode, "lr": one.lr, "first_epoch": 0, "epochs": plan.head_epochs},
                {"mode": two.mode, "lr": two.lr, "first_epoch": plan.head_epochs, "epochs": c.epochs - plan.head_epochs}]

    def _stage_of(self, epoch: int) -> int:
        stages = self.stages()
        return max(i for i, s in enumerate(stages) if s["first_epoch"] <= epoch)

    def _stage_steps(self, stage: dict) -> int:
        """Optimizer steps of a stage, for its lr schedule (the plan lengths, whatever the rng draws)."""
        sizes, accum = self.batches_per_pass(), self.config.grad_accum_steps
        epochs = range(stage["first_epoch"], stage["first_epoch"] + stage["epochs"])
        return max(1, sum(math.ceil(self.schedule.num_steps(e, sizes) / accum) for e in epochs))

    def _enter_stage(self, index: int) -> None:
        """Set the fine-tune mode and build a fresh optimizer, lr schedule and surgery for stage ``index``."""
        from mtkit.optim import make_scheduler
        config = self.config
        stage = self.stages()[index]
        self.stage = index
        apply_fine_tune_mode(self.model, stage["mode"])
        head_lr = None if (config.fine_tune_mode == "two-stage" and index == 0) else config.head_lr
        hooks = self.implementations.hooks if self.implementations is not None else None
        self.optimizer = build_optimizer(self.model, config, lr=stage["lr"], head_lr=head_lr,
                                         step_fn=hooks.adamw_step if hooks else None)
        total = self._stage_steps(stage)
        if config.scheduler_steps is not None and index == len(self.stages()) - 1:
            # the last stage's schedule ends at scheduler_steps, counted from the start of the run
            before = sum(self._stage_steps(s) for s in self.stages()[:index])
            total = max(1, config.scheduler_steps - before)
        self.scheduler = make_scheduler(config.scheduler, self.optimizer, num_training_steps=total,
                                        warmup_ratio=config.warmup_ratio, **config.scheduler_options)
        self.surgery = self._build_surgery()

    def _build_surgery(self):
        config = self.config
        shared = [(f"encoder.{n}", p) for n, p in self.model.encoder.named_parameters() if p.requires_grad]
        if not shared or (config.surgery == "none" and not config.telemetry_every):
            if config.surgery != "none" and not shared and self.verbose:
                print(f"[mtkit] surgery {config.surgery!r} has nothing to do while the encoder is frozen.")
            return None
        if len(self.tasks) < 2 and config.surgery == "none":
            return None
        from mtkit.surgery import GradientSurgery
        options = dict(config.surgery_options)
        surgery = GradientSurgery(shared, list(self.tasks), method=config.surgery, main_task=options.get("main_task"),
                                  aux_weight=options.get("aux_weight", 0.3), reduction=options.get("reduction", "sum"),
                                  telemetry_every=config.telemetry_every,
                                  num_layers=self.model.encoder.config.num_hidden_layers,
                                  generator=torch.Generator().manual_seed(derive_seed(config.seed, "surgery")))
        if self.implementations is not None:
            surgery.pcgrad_fn = self.implementations.hooks.pcgrad
        return surgery

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        """Train. ``resume=True`` continues from the newest checkpoint in ``output_dir`` (a fresh start when
        there is none); ``overwrite=True`` deletes an earlier run's checkpoints, best model and history first."""
        config = self.config
        resumed = False
        if resume:
            resumed = self._resume()
        else:
            self._prepare_fresh_output(overwrite)
        if not resumed:
            self.history.log("event", event="start", time=0.0, config=config.to_dict(),
                             tasks={n: {"train": len(d.train), "dev": 0 if d.dev is None else len(d.dev)}
                                    for n, d in self.tasks.items()}, data_dir=str(self.data_dir))
        if self.finished:
            if self.verbose:
                print(f"[mtkit] the run in {self.output_dir} has already finished; nothing to resume.")
            return self._result(predictions={})
        self._segment_start = time.perf_counter()
        stopped_early = False
        try:
            stopped_early = self._loop()
        except StopTraining:
            stopped_early = True
            self._evaluate_and_select()
            self._checkpoint()
        self.finished = not stopped_early
        self._checkpoint()
        if self.surgery is not None and len(self.surgery.telemetry):
            self.surgery.telemetry.save(self.output_dir / "telemetry.npz")
        predictions = {}
        if config.write_predictions and self.best is not None:
            predictions = self.write_best_predictions()
        return self._result(predictions)

    def _prepare_fresh_output(self, overwrite: bool) -> None:
        out = self.output_dir
        existing = [p for p in (out / "checkpoints", out / "best", out / "history.jsonl") if p.exists()]
        if existing:
            if not overwrite:
                raise FileExistsError(
                    f"{out} already holds a run ({', '.join(p.name for p in existing)}). Continue it with "
                    "resume=True (mtkit train --resume), start over with overwrite=True (--overwrite), or choose "
                    "another output_dir.")
            for p in existing:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        out.mkdir(parents=True, exist_ok=True)

    def _loop(self) -> bool:
        """The epochs; returns True when max_steps stopped the run early."""
        config = self.config
        from tqdm.auto import tqdm
        while self.epoch < config.epochs:
            stage = self._stage_of(self.epoch)
            if self.optimizer is None or stage != self.stage:
                self._enter_stage(stage)
                self._emit("stage", self.history.log("event", event="stage", stage=stage, epoch=self.epoch,
                                                     mode=self.stages()[stage]["mode"], lr=self.stages()[stage]["lr"],
                                                     time=self._now()))
            if self.plan is None:
                self.plan = self.epoch_plan(self.epoch)
                self.position = 0
                self.epoch_loss = {}
            self._batch_cache = {k: v for k, v in self._batch_cache.items() if k[1] == self.epoch}
            plan, accum = self.plan, config.grad_accum_steps
            counts = Counter(t for step in plan[:self.position] for t in step)
            bar = tqdm(total=math.ceil(len(plan) / accum), initial=self.position // accum,
                       desc=f"epoch {self.epoch + 1}/{config.epochs}", disable=not config.progress, leave=False,
                       dynamic_ncols=True)
            epoch_start = time.perf_counter()
            try:
                while self.position < len(plan):
                    chunk = plan[self.position:self.position + accum]
                    record = self._train_step(chunk, counts)
                    self.position += len(chunk)
                    for step_tasks in chunk:
                        counts.update(step_tasks)
                    bar.update(1)
                    if "loss" in record:
                        bar.set_postfix({t: f"{v:.3f}" for t, v in record["loss"].items()}, refresh=False)
                    self._emit("step", record)  # after the position moved: a callback may stop the run here
                    at_epoch_end = self.position >= len(plan)
                    if isinstance(config.eval_every, int) and self.step % config.eval_every == 0 and not at_epoch_end:
                        self._evaluate_and_select()
                        self._checkpoint()
                    elif config.checkpoint_every and self.step % config.checkpoint_every == 0 and not at_epoch_end:
                        self._checkpoint()
                    if config.max_steps is not None and self.step >= config.max_steps and not at_epoch_end:
                        self._evaluate_and_select()
                        return True
            finally:
                bar.close()
            means = {t: float(np.mean(v)) for t, v in self.epoch_loss.items()}
            self._emit("epoch", self.history.log("epoch", epoch=self.epoch, step=self.step,
                                                 train_loss=means, epoch_seconds=time.perf_counter() - epoch_start,
                                                 time=self._now()))
            self.epoch += 1
            self.plan = None
            self.position = 0
            last = self.epoch >= config.epochs
            budget_spent = config.max_steps is not None and self.step >= config.max_steps
            if (config.eval_every == "epoch" or last or budget_spent
                    or (isinstance(config.eval_every, int) and self.step % config.eval_every == 0)):
                self._evaluate_and_select()
            self._checkpoint()
            if budget_spent and not last:
                return True
        return False

    def _now(self) -> float:
        return self.history.time_offset + (time.perf_counter() - self._segment_start)

    def _emit(self, event: str, record: dict) -> None:
        for callback in self.callbacks:
            callback(event, record, self)

    # ------------------------------------------------------------------------------------------------ one step
    def _train_step(self, chunk: list[list[str]], counts: Counter) -> dict:
        """One optimizer step over ``chunk`` (its micro-steps); returns the history record (a step, or a skip)."""
        config, model, device = self.config, self.model, self.device
        step_no = self.step + 1
        start = time.perf_counter()
        model.train()
        per_task = self.surgery is not None and self.surgery.needs_per_task(step_no)
        weights = self.loss_weights
        losses, where, tokens = [], [], 0
        local = Counter(counts)
        for micro in chunk:
            for task in micro:
                batch = self._batch(task, self.epoch, local[task])
                local[task] += 1
                tokens += _tokens(batch)
                batch = _to_device(batch, device)
                with _autocast(device, config.amp):
                    loss = model.loss(task, batch)
                losses.append(loss.detach().float())
                where.append((task, batch["ids"]))
                if loss.requires_grad:
                    (loss.float() * (weights.get(task, 1.0) / len(chunk))).backward()
                else:
                    self._note_untrainable(task)
                if per_task:
                    self.surgery.capture(task)
        values = torch.stack(losses).cpu().tolist()  # the one host synchronisation of the step
        bad = [(t, ids, v) for (t, ids), v in zip(where, values) if not math.isfinite(v)]
        self.step = step_no
        if bad:
            task, ids, value = bad[0]
            message = (f"Non-finite loss ({value}) at step {step_no} (epoch {self.epoch}), task {task!r}, batch ids "
                       f"{list(ids)[:16]}{' ...' if len(ids) > 16 else ''}. Look at these examples; lower the lr "
                       "(or use warmup / max_grad_norm); check the labels fit the loss (class ids for "
                       "cross-entropy, 0/1 for BCE).")
            if config.nonfinite == "raise":
                self.optimizer.zero_grad(set_to_none=True)
                if per_task:
                    self.surgery.discard()
                raise NonFiniteLossError(message, step_no, self.epoch, task, list(ids), value)
            if per_task:
                self.surgery.discard()  # drop the task gradients captured this step
            return self._skip_step(step_no, reason="nonfinite_loss", task=task, ids=list(ids)[:16])
        if per_task:
            info = self.surgery.step(step_no)
            if info.skipped:
                return self._skip_step(step_no, reason="nonfinite_gradient", task=",".join(info.nonfinite_tasks),
                                       ids=[])
        grad_norm = None
        if config.max_grad_norm is not None:
            params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        task_loss: dict[str, list[float]] = {}
        for (task, _), v in zip(where, values):
            task_loss.setdefault(task, []).append(v)
            self.epoch_loss.setdefault(task, []).append(v)
        seconds = time.perf_counter() - start
        record = self.history.log(
            "step", step=step_no, epoch=self.epoch, tasks=[t for micro in chunk for t in micro],
            loss={t: float(np.mean(v)) for t, v in task_loss.items()},
            lr=self.optimizer.param_groups[0]["lr"], grad_norm=grad_norm, tokens=tokens,
            step_seconds=seconds, tokens_per_s=tokens / seconds if seconds > 0 else None, time=self._now())
        return record

    def _note_untrainable(self, task: str) -> None:
        """A loss without a gradient: a parameter-free head (cosine) on a frozen encoder has nothing to train."""
        noted = self.__dict__.setdefault("_untrainable_noted", set())
        if (task, self.stage) not in noted:
            noted.add((task, self.stage))
            head = self.model.task_info[task].head if hasattr(self.model, "task_info") else "?"
            warnings.warn(f"task {task!r} has nothing to train in this stage: its head ({head!r}) has no parameters and "
                          "the encoder is frozen; its loss is logged but gives no gradient.", stacklevel=3)

    def _loss_weights(self) -> dict[str, float]:
        """Loss weight per task: the task's ``weight`` times main + auxiliary weighting (``loss_weights``)."""
        from mtkit.task_schedules import main_aux
        weights = {name: float(d.options.weight) for name, d in self.tasks.items()}
        if self.config.loss_weights:
            options = dict(self.config.loss_weights)
            mixing = main_aux(options["main_task"], options.get("aux_weight", 0.3), tasks=list(self.tasks))
            weights = {name: w * mixing(name) for name, w in weights.items()}
        return weights

    def _skip_step(self, step_no: int, reason: str, task: str, ids: list) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        record = self.history.log("event", event="skipped_step", step=step_no, epoch=self.epoch, reason=reason,
                                  task=task, ids=ids, time=self._now())
        warnings.warn(f"step {step_no} skipped ({reason}, task {task}, ids {ids[:5]})", stacklevel=3)
        return record

    # ------------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict_dataset(self, task: str, dataset) -> tuple[list[str], np.ndarray]:
        """Predictions (in label space) for every example of ``dataset``, in its order."""
        from mtkit.data.batching import BucketBatchSampler
        data = self.tasks[task]
        self.model.eval()
        size = self.config.eval_batch_size or 2 * data.batch_size
        batches = BucketBatchSampler(dataset.lengths, size, shuffle=False).batches()
        out = np.empty(len(dataset), dtype=np.float64)
        for indices in batches:
            batch = _to_device(self._collate(data, dataset, indices), self.device)
            with _autocast(self.device, self.config.amp):
                preds = self.model.predict(task, batch)
            out[indices] = preds.float().cpu().numpy()
        ids = [dataset.examples[i].id for i in range(len(dataset))]
        return ids, out

    def evaluate(self, split: str = "dev") -> dict:
        """Dev metrics of every task: ``{"metrics": task -> {...}, "scores": task -> score, "overall": x}``."""
        from mtkit.metrics import evaluate_task
        if split != "dev":
            raise ValueError("evaluate() scores the dev split (test files have no labels); use predict() for test.")
        start = time.perf_counter()
        metrics, scores, kinds = {}, {}, {}
        for name, data in self.tasks.items():
            if data.dev is None:
                continue
            ids, preds = self.predict_dataset(name, data.dev)
            labels = [ex.label for ex in data.dev.examples]
            m = evaluate_task(data.spec, preds, labels)
            metrics[name] = m
            scores[name] = m["score"]
            kinds[name] = data.spec.metric
        result = {"metrics": metrics, "scores": scores, "overall": overall_of(scores, kinds) if scores else None,
                  "eval_seconds": time.perf_counter() - start}
        return result

    def _evaluate_and_select(self) -> dict | None:
        if self.last_eval_step == self.step:
            return self.last_eval
        result = self.evaluate()
        self.last_eval_step = self.step
        if not result["scores"]:
            return None
        current = {"step": self.step, "epoch": self.epoch, "metrics": result["metrics"], "scores": result["scores"],
                   "overall": result["overall"]}
        selected = select(self.config.selection, current, self.best)
        if selected:
            self.best = current
            self._save_best()
        self.last_eval = current
        record = self.history.log("eval", step=self.step, epoch=self.epoch, metrics=result["metrics"],
                                  scores=result["scores"], overall=result["overall"], selected=selected,
                                  eval_seconds=result["eval_seconds"], time=self._now())
        update = getattr(self.schedule, "update", None)
        if callable(update):
            update(result["scores"])
        if self.verbose and self.config.progress:
            scores = ", ".join(f"{t} {s:.4f}" for t, s in result["scores"].items())
            print(f"[mtkit] step {self.step} (epoch {self.epoch}): dev {scores}; overall {result['overall']:.4f}"
                  + (" *" if selected else ""))
        self._emit("eval", record)
        return current

    # ------------------------------------------------------------------------------------------------ checkpoints
    def model_meta(self) -> dict:
        """What rebuilding the model needs besides the config: the encoder's shape and the resolved task specs."""
        return {"encoder_config": self.model.encoder.config.to_dict(),
                "tasks": [d.spec.to_dict() for d in self.tasks.values()]}

    def _extra_files(self) -> dict:
        vocab = getattr(self.tokenizer, "vocab_file", None)
        files = {}
        if vocab is not None and Path(vocab).is_file():
            files["vocab.txt"] = Path(vocab)
            tok_config = Path(vocab).with_name("tokenizer_config.json")
            if tok_config.is_file():
                files["tokenizer_config.json"] = tok_config
        return files

    def _save_best(self) -> None:
        state = {"model_meta": self.model_meta(), "best": self.best}
        self.best_store.save(self.step, self.model.state_dict(), state, self.config.to_dict(), self._extra_files())

    def training_state(self) -> dict:
        return {
            "trainer": {"step": self.step, "epoch": self.epoch, "position": self.position, "plan": self.plan,
                        "stage": self.stage, "best": self.best, "last_eval": self.last_eval,
                        "last_eval_step": self.last_eval_step, "skipped_steps": self.skipped_steps,
                        "finished": self.finished, "epoch_loss": self.epoch_loss},
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "surgery": None if self.surgery is None else self.surgery.state_dict(),
            "schedule": _schedule_state(self.schedule),
            "rng": _rng_state(),
            "history": self.history.state_dict(),
            "model_meta": self.model_meta(),
        }

    def _checkpoint(self) -> Path:
        self.history.time_offset = self._now()
        self._segment_start = time.perf_counter()
        path = self.checkpoints.save(self.step, self.model.state_dict(), self.training_state(),
                                     self.config.to_dict(), self._extra_files())
        self._emit("checkpoint", {"path": str(path), "step": self.step, "epoch": self.epoch})
        return path

    def _resume(self) -> bool:
        checkpoint = self.checkpoints.load_latest()
        rejected = self.checkpoints.rejected
        for rejection in rejected:  # falling back is right; doing it silently is not
            self._say(f"[mtkit] checkpoint {rejection.path} rejected: {rejection.reason}.")
        if checkpoint is None:
            if rejected:
                raise CheckpointError(
                    f"No usable checkpoint in {self.checkpoints.root}: "
                    + "; ".join(f"{r.path.name}: {r.reason}" for r in rejected)
                    + ". Start the run over with overwrite=True (mtkit train --overwrite), or restore the folder.")
            if self.verbose:
                print(f"[mtkit] no checkpoint in {self.checkpoints.root}; starting a new run.")
            self._prepare_fresh_output(overwrite=False)
            return False
        check_resume_config(self.config, checkpoint.config, checkpoint.path)
        state = checkpoint.state
        self.model.load_state_dict(checkpoint.model)
        t = state["trainer"]
        self.step, self.epoch, self.position = int(t["step"]), int(t["epoch"]), int(t["position"])
        self.plan = t["plan"]
        self.best, self.last_eval = t["best"], t["last_eval"]
        self.last_eval_step, self.skipped_steps = int(t["last_eval_step"]), int(t["skipped_steps"])
        self.finished = bool(t["finished"])
        self.epoch_loss = {k: list(v) for k, v in (t.get("epoch_loss") or {}).items()}
        if state["optimizer"] is not None:
            self._enter_stage(int(t["stage"]))
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.surgery is not None and state["surgery"] is not None:
                self.surgery.load_state_dict(state["surgery"])
        _load_schedule_state(self.schedule, state["schedule"])
        self.history.load_state_dict(state["history"])
        self.history.rewrite()
        for rejection in rejected:
            self.history.log("event", event="checkpoint_rejected", checkpoint=str(rejection.path),
                             reason=rejection.reason, time=self.history.time_offset)
        self.history.log("event", event="resume", step=self.step, epoch=self.epoch, checkpoint=str(checkpoint.path),
                         time=self.history.time_offset)
        _set_rng_state(state["rng"])
        if self.verbose:
            fallback = (f"; the newest usable checkpoint, after {len(rejected)} rejected above" if rejected else "")
            print(f"[mtkit] resumed from {checkpoint.path} (step {self.step}, epoch {self.epoch}){fallback}.")
        return True

    def _say(self, message: str) -> None:
        """A message a user must see: printed when verbose, else a logged warning (never dropped)."""
        if self.verbose:
            print(message)
        else:
            logging.getLogger("mtkit.trainer").warning(message)

    # ------------------------------------------------------------------------------------------------ outputs
    def load_best(self) -> None:
        """Load the selected (best) weights into the model."""
        folder = self.best_store.latest()
        if folder is None:
            raise FileNotFoundError(f"No best model in {self.best_store.root} yet (no evaluation has run).")
        self.model.load_state_dict(read_checkpoint(folder, load_state=False).model)

    def predict(self, task: str, split: str = "test") -> tuple[list[str], np.ndarray]:
        """Predictions of the current model for one task and the whole of a split ("dev" or "test")."""
        from mtkit.data.batching import EncodedDataset
        from mtkit.data.tasks import load_split
        data = self.tasks[task]
        limited = (data.options.dev_limit or self.config.dev_limit) is not None
        if split == "dev" and data.dev is not None and not limited:
            return self.predict_dataset(task, data.dev)
        examples, _ = load_split(data.spec, self.data_dir, split)
        dataset = EncodedDataset(examples, self.tokenizer, layout="bi" if data.layout == "single" else data.layout,
                                 max_length=self.config.max_length, label_dtype=None)
        return self.predict_dataset(task, dataset)

    def prediction_path(self, task: str, split: str) -> Path:
        options = self.tasks[task].options
        given = options.dev_out if split == "dev" else options.test_out
        if given:
            return Path(given)
        return self.output_dir / "predictions" / f"{task}-{split}-output.csv"

    def write_best_predictions(self) -> dict[str, Path]:
        """Dev and test predictions of the best model in the CS224N submission format; returns their paths."""
        from mtkit.metrics import write_predictions
        self.load_best()
        written = {}
        for name, data in self.tasks.items():
            for split in ("dev", "test"):
                file = getattr(data.spec, f"{split}_file")
                if not file or not data.spec.path(self.data_dir, split).is_file():
                    continue
                ids, preds = self.predict(name, split)
                written[f"{name}-{split}"] = write_predictions(self.prediction_path(name, split), ids, preds, data.spec)
        return written

    def _result(self, predictions: dict) -> TrainResult:
        return TrainResult(output_dir=self.output_dir, best=self.best, final=self.last_eval,
                           best_checkpoint=self.best_store.latest(), last_checkpoint=self.checkpoints.latest(),
                           history_path=self.history.path, predictions=predictions, steps=self.step,
                           skipped_steps=self.skipped_steps, finished=self.finished, history=self.history)


class StopTraining(Exception):
    """Raise from a callback to end training cleanly (the run is evaluated and checkpointed)."""


# ------------------------------------------------------------------------------------------------ helpers
def apply_fine_tune_mode(model, mode: str) -> str:
    """``full-model``: everything trains; ``last-linear-layer``: the encoder is frozen and only heads train
    (``mtkit.optim.apply_finetune_mode``)."""
    from mtkit.optim import apply_finetune_mode
    return apply_finetune_mode(model, mode)


def build_optimizer(model, config: TrainConfig, lr: float, head_lr: float | None = None,
                    step_fn: Callable | None = None):
    """AdamW over parameter groups: layer-wise lr decay when ``llrd_decay`` is set, no weight decay on biases and
    LayerNorm, heads at ``head_lr`` (default ``lr``). ``step_fn``: a learner's ``adamw_step`` that mtkit's AdamW
    runs instead of its own update (``implementations``)."""
    from mtkit.optim import AdamW
    from mtkit.optim.llrd import layerwise_lr_groups
    decay = config.llrd_decay if config.llrd_decay is not None else 1.0
    groups = layerwise_lr_groups(model, lr=lr, decay=decay, weight_decay=config.weight_decay,
                                 head_lr=head_lr).groups  # head_lr: only the heads (the top layer is depth 0 too)
    options = dict(config.optimizer_options)
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    if config.optimizer == "adamw":
        return AdamW(groups, lr=lr, weight_decay=config.weight_decay, step_fn=step_fn, **options)
    if step_fn is not None:
        raise ValueError("a learner's adamw_step runs inside mtkit's AdamW: use optimizer 'adamw', not "
                         f"{config.optimizer!r}.")
    options.pop("correct_bias", None)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=config.weight_decay, **options)


def _schedule_state(schedule):
    fn = getattr(schedule, "state_dict", None)
    return fn() if callable(fn) else None


def _load_schedule_state(schedule, state) -> None:
    fn = getattr(schedule, "load_state_dict", None)
    if state is not None and callable(fn):
        fn(state)


def check_resume_config(config: TrainConfig, saved: dict, where) -> None:
    """A resumed run must use the config it was started with (except fields that change no number)."""
    current = config.to_dict()
    changed = sorted(k for k in set(current) | set(saved)
                     if k not in RESUME_MAY_CHANGE and current.get(k) != saved.get(k))
    if changed:
        details = "; ".join(f"{k}: saved {saved.get(k)!r}, now {current.get(k)!r}" for k in changed[:6])
        raise ValueError(f"cannot resume {where}: the config differs from the one the run started with ({details}). "
                         "Resume with the same config, or start a new run in another output_dir.")


def train(config: TrainConfig | dict | str | Path, resume: bool = False, overwrite: bool = False,
          **kwargs) -> TrainResult:
    """One call: ``train("examples/report_a.yaml")`` or ``train(TrainConfig(...))``."""
    if isinstance(config, (str, Path)):
        config = TrainConfig.from_yaml(config)
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    return Trainer(config, **kwargs).fit(resume=resume, overwrite=overwrite)


def load_checkpoint_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a trained model from a checkpoint (a run folder, its best/ or checkpoints/, or one step folder).

    Returns ``(model, config, meta, tokenizer)``; nothing is unpickled.
    """
    from mtkit.bert import BertModel
    from mtkit.config import BertConfig
    from mtkit.data.tasks import TaskSpec
    from mtkit.multitask import build_model
    from mtkit.tokenizer import Tokenizer
    folder = resolve(path, prefer="best")
    checkpoint = read_checkpoint(folder)
    config = TrainConfig.from_dict(checkpoint.config, source=str(folder / run_config_name(checkpoint.manifest)))
    meta = checkpoint.state["model_meta"]
    encoder = BertModel(BertConfig.from_dict(meta["encoder_config"]))
    specs = [TaskSpec.from_dict(s) for s in meta["tasks"]]
    model = build_model(config, specs, encoder=encoder)
    model.load_state_dict(checkpoint.model)
    model.to(device).eval()
    tokenizer = Tokenizer.from_pretrained(folder) if (folder / "vocab.txt").is_file() else build_tokenizer(config)
    return model, config, meta, tokenizer
