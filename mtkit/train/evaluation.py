"""Dev evaluation, the rule that keeps the best model, and prediction files."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from mtkit.data.batching import BucketBatchSampler, EncodedDataset
from mtkit.data.tasks import load_split
from mtkit.eval.metrics import evaluate_task, overall_of, write_predictions
from mtkit.train.checkpoint import read_checkpoint
from mtkit.util.device import autocast, to_device

__all__ = ['Evaluation', 'select']


# ------------------------------------------------------------------------------------------- selection rules
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


class Evaluation:
    """The Trainer's evaluation and prediction (a mixin of :class:`mtkit.train.trainer.Trainer`): dev scores,
    keeping the best model by ``config.select``, and prediction files."""

    @torch.no_grad()
    def predict_dataset(self, task: str, dataset) -> tuple[list[str], np.ndarray]:
        """Predictions (in label space) for every example of ``dataset``, in its order."""
        data = self.tasks[task]
        self.model.eval()
        size = self.config.eval_batch_size or 2 * data.batch_size
        batches = BucketBatchSampler(dataset.lengths, size, shuffle=False).batches()
        out = np.empty(len(dataset), dtype=np.float64)
        for indices in batches:
            batch = to_device(self._collate(data, dataset, indices), self.device)
            with autocast(self.device, self.config.amp):
                preds = self.model.predict(task, batch)
            out[indices] = preds.float().cpu().numpy()
        ids = [dataset.examples[i].id for i in range(len(dataset))]
        return ids, out

    def evaluate(self, split: str = "dev") -> dict:
        """Dev metrics of every task: ``{"metrics": task -> {...}, "scores": task -> score, "overall": x}``."""
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
        if self.run.last_eval_step == self.run.step:
            return self.run.last_eval
        result = self.evaluate()
        self.run.last_eval_step = self.run.step
        if not result["scores"]:
            return None
        current = {"step": self.run.step, "epoch": self.run.epoch, "metrics": result["metrics"], "scores": result["scores"],
                   "overall": result["overall"]}
        selected = select(self.config.selection, current, self.run.best)
        if selected:
            self.run.best = current
            self._save_best()
        self.run.last_eval = current
        record = self.history.log("eval", step=self.run.step, epoch=self.run.epoch, metrics=result["metrics"],
                                  scores=result["scores"], overall=result["overall"], selected=selected,
                                  eval_seconds=result["eval_seconds"], time=self._now())
        update = getattr(self.schedule, "update", None)
        if callable(update):
            update(result["scores"])
        if self.verbose and self.config.progress:
            scores = ", ".join(f"{t} {s:.4f}" for t, s in result["scores"].items())
            print(f"[mtkit] step {self.run.step} (epoch {self.run.epoch}): dev {scores}; overall {result['overall']:.4f}"
                  + (" *" if selected else ""))
        self._emit("eval", record)
        return current

    def load_best(self) -> None:
        """Load the selected (best) weights into the model."""
        folder = self.best_store.latest()
        if folder is None:
            raise FileNotFoundError(f"No best model in {self.best_store.root} yet (no evaluation has run).")
        self.model.load_state_dict(read_checkpoint(folder, load_state=False).model)

    def predict(self, task: str, split: str = "test") -> tuple[list[str], np.ndarray]:
        """Predictions of the current model for one task and the whole of a split ("dev" or "test")."""
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
