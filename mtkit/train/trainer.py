"""The multitask trainer: one encoder, one head per task, trained together, and never losing work.

One optimizer step, in order:

1. the task schedule (``mtkit.train.schedules``) says which tasks' batches go into this step;
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
report A, only when every task improves at once. Checkpoints (``mtkit.train.checkpoint``) hold everything needed to
continue exactly where a killed run stopped: weights, optimizer and lr-schedule state, RNG states, the epoch's
task plan and the position in it, the surgery state and the history so far. The data order of an epoch is a
function of (seed, task, epoch) only, so ``fit(resume=True)`` ends with the same weights as a run that was
never interrupted (``tests/test_resume.py`` checks it with a SIGKILL).

Taught in notebooks/07_multitask_training.ipynb.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mtkit.data.locate import resolve_data_dir
from mtkit.eval.metrics import overall_of
from mtkit.exercises.implementations import install, load
from mtkit.model.build import build_encoder, build_tokenizer
from mtkit.tasks.multitask import build_model
from mtkit.train.checkpoint import CheckpointStore
from mtkit.train.config import TrainConfig
from mtkit.train.evaluation import Evaluation, select
from mtkit.train.feed import TaskData, TaskFeed, _tokens, derive_seed
from mtkit.train.history import History
from mtkit.train.result import NonFiniteLossError, StopTraining, TrainResult
from mtkit.train.resume import (
    Resume,
    RunState,
)
from mtkit.train.schedules import main_aux, make_task_schedule
from mtkit.train.stages import Stages, build_optimizer
from mtkit.train.trained_model import load_checkpoint_model
from mtkit.util.device import autocast, get_device, seed_everything, to_device

__all__ = ["Trainer", "TrainResult", "NonFiniteLossError", "StopTraining", "RunState", "select", "overall_of",
           "derive_seed", "build_optimizer", "load_checkpoint_model", "train"]


class Trainer(TaskFeed, Stages, Evaluation, Resume):
    """Trains a :class:`mtkit.tasks.multitask.MultitaskModel` as a :class:`TrainConfig` says.

    ``Trainer(config).fit()`` builds everything from the config (data, tokenizer, encoder, heads). Pass
    ``model`` / ``tokenizer`` to use your own objects. ``callbacks``: functions ``fn(event, record, trainer)``
    called on ``"step"``, ``"eval"``, ``"epoch"``, ``"checkpoint"`` and ``"stage"`` (live curves in a notebook,
    early stops: raise ``StopTraining`` from one to end the run cleanly).

    Taught in notebooks/07_multitask_training.ipynb.
    """

    def __init__(self, config: TrainConfig, *, model=None, tokenizer=None,
                 callbacks: list[Callable] | None = None, verbose: bool = True):
        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        self.config = config
        self.verbose = verbose
        self.callbacks = list(callbacks or [])
        self.device = get_device(None if config.device == "auto" else config.device, verbose=verbose)
        seed_everything(config.seed, deterministic=config.deterministic)
        self.output_dir = Path(config.output_dir)
        self.implementations = None  # a learner's pieces (mtkit.exercises.implementations), checked before anything else
        if config.implementations is not None:
            self.implementations = load(config)  # raises ImplementationError with the failing check's message
            if verbose:
                hooks = self.implementations.hooks
                note = ""
                if (hooks.attention or hooks.layer) and (config.encoder_dropout is None or config.encoder_dropout > 0):
                    note = ("\n  (the exercises compute the eval-mode forward: the encoder trains without dropout; "
                            "the heads keep theirs)")
                print(f"[mtkit] implementations (each passed its check against mtkit):\n{self.implementations}{note}")

        specs = [t.task_spec(config.source) for t in config.tasks]
        self.data_dir = resolve_data_dir(config.data_dir, specs)
        self.tokenizer = tokenizer if tokenizer is not None else build_tokenizer(config.encoder, config.tokenizer)
        self.tasks: dict[str, TaskData] = self._load_tasks(specs)
        if model is None:
            model = build_model(config, [d.spec for d in self.tasks.values()], encoder=build_encoder(config.encoder, config.encoder_dropout))
        self.model = model.to(self.device)
        if self.implementations is not None:
            install(self.model, self.implementations.hooks)

        try:
            self.schedule = make_task_schedule(config.schedule, **config.schedule_options)
        except ValueError as err:
            raise ValueError(f"schedule_options: {err}") from None
        self.loss_weights = self._loss_weights()
        self.history = History(self.output_dir / "history.jsonl")
        self.checkpoints = CheckpointStore(self.output_dir / "checkpoints", keep=config.keep_checkpoints)
        self.best_store = CheckpointStore(self.output_dir / "best", keep=0)
        self.run = RunState()  # the training position: written once, checkpointed whole
        self.optimizer = None
        self.scheduler = None
        self.surgery = None
        self._batch_cache: dict = {}
        self._segment_start = time.perf_counter()

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
        if self.run.finished:
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
        self.run.finished = not stopped_early
        self._checkpoint()
        if self.surgery is not None and len(self.surgery.telemetry):
            self.surgery.telemetry.save(self.output_dir / "telemetry.npz")
        predictions = {}
        if config.write_predictions and self.run.best is not None:
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
        from tqdm.auto import tqdm  # imported here: tqdm is needed only when a progress bar is shown
        while self.run.epoch < config.epochs:
            stage = self._stage_of(self.run.epoch)
            if self.optimizer is None or stage != self.run.stage:
                self._enter_stage(stage)
                self._emit("stage", self.history.log("event", event="stage", stage=stage, epoch=self.run.epoch,
                                                     mode=self.stages()[stage]["mode"], lr=self.stages()[stage]["lr"],
                                                     time=self._now()))
            if self.run.plan is None:
                self.run.plan = self.epoch_plan(self.run.epoch)
                self.run.position = 0
                self.run.epoch_loss = {}
            self._batch_cache = {k: v for k, v in self._batch_cache.items() if k[1] == self.run.epoch}
            plan, accum = self.run.plan, config.grad_accum_steps
            counts = Counter(t for step in plan[:self.run.position] for t in step)
            bar = tqdm(total=math.ceil(len(plan) / accum), initial=self.run.position // accum,
                       desc=f"epoch {self.run.epoch + 1}/{config.epochs}", disable=not config.progress, leave=False,
                       dynamic_ncols=True)
            epoch_start = time.perf_counter()
            try:
                while self.run.position < len(plan):
                    chunk = plan[self.run.position:self.run.position + accum]
                    record = self._train_step(chunk, counts)
                    self.run.position += len(chunk)
                    for step_tasks in chunk:
                        counts.update(step_tasks)
                    bar.update(1)
                    if "loss" in record:
                        bar.set_postfix({t: f"{v:.3f}" for t, v in record["loss"].items()}, refresh=False)
                    self._emit("step", record)  # after the position moved: a callback may stop the run here
                    at_epoch_end = self.run.position >= len(plan)
                    if isinstance(config.eval_every, int) and self.run.step % config.eval_every == 0 and not at_epoch_end:
                        self._evaluate_and_select()
                        self._checkpoint()
                    elif config.checkpoint_every and self.run.step % config.checkpoint_every == 0 and not at_epoch_end:
                        self._checkpoint()
                    if config.max_steps is not None and self.run.step >= config.max_steps and not at_epoch_end:
                        self._evaluate_and_select()
                        return True
            finally:
                bar.close()
            means = {t: float(np.mean(v)) for t, v in self.run.epoch_loss.items()}
            self._emit("epoch", self.history.log("epoch", epoch=self.run.epoch, step=self.run.step,
                                                 train_loss=means, epoch_seconds=time.perf_counter() - epoch_start,
                                                 time=self._now()))
            self.run.epoch += 1
            self.run.plan = None
            self.run.position = 0
            last = self.run.epoch >= config.epochs
            budget_spent = config.max_steps is not None and self.run.step >= config.max_steps
            if (config.eval_every == "epoch" or last or budget_spent
                    or (isinstance(config.eval_every, int) and self.run.step % config.eval_every == 0)):
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
        step_no = self.run.step + 1
        start = time.perf_counter()
        model.train()
        per_task = self.surgery is not None and self.surgery.needs_per_task(step_no)
        weights = self.loss_weights
        losses, where, tokens = [], [], 0
        local = Counter(counts)
        for micro in chunk:
            for task in micro:
                batch = self._batch(task, self.run.epoch, local[task])
                local[task] += 1
                tokens += _tokens(batch)
                batch = to_device(batch, device)
                with autocast(device, config.amp):
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
        self.run.step = step_no
        if bad:
            task, ids, value = bad[0]
            message = (f"Non-finite loss ({value}) at step {step_no} (epoch {self.run.epoch}), task {task!r}, batch ids "
                       f"{list(ids)[:16]}{' ...' if len(ids) > 16 else ''}. Look at these examples; lower the lr "
                       "(or use warmup / max_grad_norm); check the labels fit the loss (class ids for "
                       "cross-entropy, 0/1 for BCE).")
            if config.nonfinite == "raise":
                self.optimizer.zero_grad(set_to_none=True)
                if per_task:
                    self.surgery.discard()
                raise NonFiniteLossError(message, step_no, self.run.epoch, task, list(ids), value)
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
            self.run.epoch_loss.setdefault(task, []).append(v)
        seconds = time.perf_counter() - start
        record = self.history.log(
            "step", step=step_no, epoch=self.run.epoch, tasks=[t for micro in chunk for t in micro],
            loss={t: float(np.mean(v)) for t, v in task_loss.items()},
            lr=self.optimizer.param_groups[0]["lr"], grad_norm=grad_norm, tokens=tokens,
            step_seconds=seconds, tokens_per_s=tokens / seconds if seconds > 0 else None, time=self._now())
        return record

    def _note_untrainable(self, task: str) -> None:
        """A loss without a gradient: a parameter-free head (cosine) on a frozen encoder has nothing to train."""
        noted = self.__dict__.setdefault("_untrainable_noted", set())
        if (task, self.run.stage) not in noted:
            noted.add((task, self.run.stage))
            head = self.model.task_info[task].head if hasattr(self.model, "task_info") else "?"
            warnings.warn(f"task {task!r} has nothing to train in this stage: its head ({head!r}) has no parameters and "
                          "the encoder is frozen; its loss is logged but gives no gradient.", stacklevel=3)

    def _loss_weights(self) -> dict[str, float]:
        """Loss weight per task: the task's ``weight`` times main + auxiliary weighting (``loss_weights``)."""
        weights = {name: float(d.options.weight) for name, d in self.tasks.items()}
        if self.config.loss_weights:
            options = dict(self.config.loss_weights)
            mixing = main_aux(options["main_task"], options.get("aux_weight", 0.3), tasks=list(self.tasks))
            weights = {name: w * mixing(name) for name, w in weights.items()}
        return weights

    def _skip_step(self, step_no: int, reason: str, task: str, ids: list) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        self.run.skipped_steps += 1
        record = self.history.log("event", event="skipped_step", step=step_no, epoch=self.run.epoch, reason=reason,
                                  task=task, ids=ids, time=self._now())
        warnings.warn(f"step {step_no} skipped ({reason}, task {task}, ids {ids[:5]})", stacklevel=3)
        return record

    def _say(self, message: str) -> None:
        """A message a user must see: printed when verbose, else a logged warning (never dropped)."""
        if self.verbose:
            print(message)
        else:
            logging.getLogger("mtkit.train.trainer").warning(message)

    def _result(self, predictions: dict) -> TrainResult:
        return TrainResult(output_dir=self.output_dir, best=self.run.best, final=self.run.last_eval,
                           best_checkpoint=self.best_store.latest(), last_checkpoint=self.checkpoints.latest(),
                           history_path=self.history.path, predictions=predictions, steps=self.run.step,
                           skipped_steps=self.run.skipped_steps, finished=self.run.finished, history=self.history)



def _position(name: str) -> property:
    return property(lambda trainer: getattr(trainer.run, name),
                    doc=f"``run.{name}``: part of the training position, read-only here (callbacks read it).")


# trainer.step, trainer.epoch, trainer.best ...: read-only views of the one RunState the trainer writes
for _field in dataclasses.fields(RunState):
    setattr(Trainer, _field.name, _position(_field.name))

def train(config: TrainConfig | dict | str | Path, resume: bool = False, overwrite: bool = False,
          **kwargs) -> TrainResult:
    """One call: ``train("examples/report_a.yaml")`` or ``train(TrainConfig(...))``."""
    if isinstance(config, (str, Path)):
        config = TrainConfig.from_yaml(config)
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    return Trainer(config, **kwargs).fit(resume=resume, overwrite=overwrite)