"""What an export starts from: one trained checkpoint, rebuilt, with what its model card reports.

``mtkit export`` takes a run folder, its ``best/`` or ``checkpoints/`` folder, or one ``step-XXXXXXXX/``
checkpoint; a run folder resolves to its best checkpoint (the model selected on dev), as ``mtkit evaluate``
does, and :attr:`ExportSource.taken` says in one line which checkpoint was taken and why.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtkit.data.tasks import TaskSpec
from mtkit.train.checkpoint import MANIFEST, read_checkpoint, resolve, run_config_name
from mtkit.train.trained_model import load_checkpoint_model

__all__ = ["ExportSource", "load_source"]


@dataclass
class ExportSource:
    """A trained checkpoint rebuilt for export: the model (eval mode, CPU), its config, specs and tokenizer."""
    path: Path  # the step-XXXXXXXX folder taken
    given: Path  # what the caller named
    step: int
    model: object  # MultitaskModel
    config: object  # TrainConfig
    specs: list  # TaskSpec of each task, in the model's order
    tokenizer: object  # mtkit.model.tokenizer.Tokenizer
    best: dict | None  # {"step", "epoch", "metrics", "scores", "overall"} of the selected model, when recorded
    provenance: dict | None  # {"version", "commit", "dirty"} of the mtkit that wrote the checkpoint
    run_config_file: str  # mtkit_run.json, or config.json in a checkpoint written before issue 24

    @property
    def taken(self) -> str:
        """Which checkpoint was taken, in one line."""
        if (self.given / MANIFEST).is_file():
            return f"exporting {self.path} (step {self.step}), the checkpoint given"
        store = self.path.parent.name
        why = ("the best model, selected on dev" if store == "best"
               else "the newest training checkpoint (this run has no best model yet)")
        metrics = ""
        if self.best is not None and self.best.get("overall") is not None:
            metrics = f"; dev overall {self.best['overall']:.4f} at step {self.best.get('step')}"
        return f"exporting {store}/{self.path.name} of {self.given} (step {self.step}): {why}{metrics}"


def load_source(path: str | Path) -> ExportSource:
    """The checkpoint ``path`` names (a run folder means its best model), rebuilt on the CPU in eval mode."""
    given = Path(path)
    folder = resolve(given, prefer="best")
    checkpoint = read_checkpoint(folder)
    model, config, meta, tokenizer = load_checkpoint_model(folder, device="cpu")
    state = checkpoint.state
    best = state.get("best") or (state.get("trainer") or {}).get("best")
    return ExportSource(path=folder, given=given, step=checkpoint.step, model=model.eval(), config=config,
                        specs=[TaskSpec.from_dict(s) for s in meta["tasks"]], tokenizer=tokenizer, best=best,
                        provenance=checkpoint.manifest.get("mtkit"),
                        run_config_file=run_config_name(checkpoint.manifest))
