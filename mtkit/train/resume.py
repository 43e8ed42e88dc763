"""Checkpoints and resume: the training position as one record, what a checkpoint holds, and continuing
exactly where a killed run stopped."""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mtkit.train.checkpoint import CheckpointError
from mtkit.train.config import TrainConfig

__all__ = ['Resume', 'RunState', 'RESUME_MAY_CHANGE', 'check_resume_config']


@dataclass
class RunState:
    """The training position: everything a resumed run needs besides the weights, the optimizer, the lr
    schedule, the surgery, the task schedule, the RNGs and the history. Written once, checkpointed whole
    (``to_dict``) and restored whole (``from_dict``)."""

    step: int = 0  # optimizer steps done (skipped ones included)
    epoch: int = 0  # the epoch under way (0-based)
    position: int = 0  # index into the epoch's plan of the next micro-step
    plan: list[list[str]] | None = None  # the epoch's task plan (a function of seed and epoch)
    stage: int = 0  # index into the fine-tune stages
    best: dict | None = None  # the best evaluation so far
    last_eval: dict | None = None
    last_eval_step: int = -1
    skipped_steps: int = 0
    finished: bool = False
    epoch_loss: dict[str, list[float]] = field(default_factory=dict)  # task -> this epoch's losses

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> RunState:
        return cls(step=int(saved["step"]), epoch=int(saved["epoch"]), position=int(saved["position"]),
                   plan=saved["plan"], stage=int(saved["stage"]), best=saved["best"], last_eval=saved["last_eval"],
                   last_eval_step=int(saved["last_eval_step"]), skipped_steps=int(saved["skipped_steps"]),
                   finished=bool(saved["finished"]),
                   epoch_loss={k: list(v) for k, v in (saved.get("epoch_loss") or {}).items()})


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


class Resume:
    """The Trainer's checkpoints (a mixin of :class:`mtkit.train.trainer.Trainer`): what a checkpoint holds
    (``run``, the optimizer, the schedules, the surgery, the RNGs, the history) and restoring all of it."""

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
        state = {"model_meta": self.model_meta(), "best": self.run.best}
        self.best_store.save(self.run.step, self.model.state_dict(), state, self.config.to_dict(), self._extra_files())

    def training_state(self) -> dict:
        return {
            "trainer": self.run.to_dict(),
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
        path = self.checkpoints.save(self.run.step, self.model.state_dict(), self.training_state(),
                                     self.config.to_dict(), self._extra_files())
        self._emit("checkpoint", {"path": str(path), "step": self.run.step, "epoch": self.run.epoch})
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
        self.run = RunState.from_dict(t)
        if state["optimizer"] is not None:
            self._enter_stage(self.run.stage)
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
        self.history.log("event", event="resume", step=self.run.step, epoch=self.run.epoch, checkpoint=str(checkpoint.path),
                         time=self.history.time_offset)
        _set_rng_state(state["rng"])
        if self.verbose:
            fallback = (f"; the newest usable checkpoint, after {len(rejected)} rejected above" if rejected else "")
            print(f"[mtkit] resumed from {checkpoint.path} (step {self.run.step}, epoch {self.run.epoch}){fallback}.")
        return True
