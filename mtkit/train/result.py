"""What a training run returns or raises: the result, a non-finite loss, and the callbacks' way to stop."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtkit.train.history import History

__all__ = ['NonFiniteLossError', 'TrainResult', 'StopTraining']


class NonFiniteLossError(FloatingPointError):
    """A loss that is NaN or infinite; ``step``, ``epoch``, ``task``, ``ids`` and ``value`` say where."""

    def __init__(self, message: str, step: int, epoch: int, task: str, ids: list, value: float):
        super().__init__(message)
        self.step, self.epoch, self.task, self.ids, self.value = step, epoch, task, ids, value


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


class StopTraining(Exception):
    """Raise from a callback to end training cleanly (the run is evaluated and checkpointed)."""
