"""Ensembles: average the logits and scores of several trained checkpoints, then evaluate or predict.

Report E ensembles its best single-task models (test overall 0.787). Averaging is done before the decision:
for each task, the members' raw outputs (class logits, a paraphrase logit, bucket logits or a similarity
score) are averaged and the average is turned into a prediction as one model would (argmax, logit > 0,
expected bucket score, the score itself). Members whose heads differ for a task (a cosine head beside a
regression head, say) are averaged on a common scale instead: class probabilities, the paraphrase
probability, the similarity score.

A single checkpoint is an ensemble of one, which is how ``mtkit evaluate`` and ``mtkit predict`` use it.
Checkpoints are read with safetensors and JSON only (``mtkit.train.checkpoint``).

Taught in notebooks/10_experiments_and_error_analysis.ipynb.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtkit.data.batching import BucketBatchSampler, Collator, EncodedDataset
from mtkit.data.locate import resolve_data_dir
from mtkit.data.tasks import TaskSpec, load_split
from mtkit.eval.metrics import evaluate_task, overall_of, write_predictions
from mtkit.train.checkpoint import resolve
from mtkit.train.trained_model import load_checkpoint_model

__all__ = ["Member", "Ensemble"]


@dataclass
class Member:
    """One trained model with what it needs to read data: its config, task specs and tokenizer."""
    path: Path
    model: object  # MultitaskModel
    config: object  # TrainConfig
    specs: dict  # task name -> TaskSpec
    tokenizer: object

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Member:
        folder = resolve(path, prefer="best")
        model, config, meta, tokenizer = load_checkpoint_model(folder, device=device)
        specs = {s["name"]: TaskSpec.from_dict(s) for s in meta["tasks"]}
        return cls(path=folder, model=model, config=config, specs=specs, tokenizer=tokenizer)

    @classmethod
    def from_trainer(cls, trainer) -> Member:
        """The model a :class:`mtkit.train.trainer.Trainer` has just trained, without building it again from disk:
        the selected (best) weights are loaded into ``trainer.model``, which the member then shares (not a copy).
        The same member as ``Member.load(result.best_checkpoint)``, minus rebuilding the encoder."""
        trainer.load_best()
        specs = {name: data.spec for name, data in trainer.tasks.items()}
        return cls(path=Path(trainer.best_store.latest()), model=trainer.model, config=trainer.config, specs=specs,
                   tokenizer=trainer.tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def _probability_scale(model, task: str, output: torch.Tensor) -> torch.Tensor:
    """A member's output on a scale every head shares: class probabilities, P(paraphrase), or a score."""
    info = model.task_info[task]
    if info.output == "class_logits":
        probs = output.float().softmax(dim=-1)  # (B, K)
        if info.kind == "pair_classification":
            return probs[:, 1]  # (B,) P(class 1)
        return probs
    if info.output == "binary_logit":
        return torch.sigmoid(output.float())  # (B,)
    if info.output == "bucket_logits":
        return model.heads[task].scores(output)  # (B,) expected score
    scores = output.float()
    if info.kind == "pair_classification":
        lo, hi = info.label_range or (0.0, 1.0)
        return ((scores - lo) / (hi - lo)).clamp(0, 1)  # (B,) on [0, 1], 0.5 = the model's threshold
    return scores


def _from_probability_scale(kind: str, values: torch.Tensor) -> torch.Tensor:
    if kind == "classification":
        return values.argmax(dim=-1)
    if kind == "pair_classification":
        return (values > 0.5).float()
    return values


class Ensemble:
    """Several members; ``evaluate`` and ``predict`` average their outputs per task.

    Taught in notebooks/10_experiments_and_error_analysis.ipynb.
    """

    def __init__(self, members: list[Member]):
        if not members:
            raise ValueError("An ensemble needs at least one member (a trained checkpoint).")
        self.members = list(members)

    @classmethod
    def load(cls, paths, device: str | torch.device = "cpu") -> Ensemble:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        return cls([Member.load(p, device) for p in paths])

    def __len__(self) -> int:
        return len(self.members)

    @property
    def tasks(self) -> list[str]:
        """Tasks at least one member predicts, in the first member's order."""
        names: list[str] = []
        for member in self.members:
            names += [t for t in member.specs if t not in names]
        return names

    def members_for(self, task: str) -> list[Member]:
        found = [m for m in self.members if task in m.specs]
        if not found:
            raise KeyError(f"no member of this ensemble has a task {task!r}; tasks: {self.tasks}.")
        return found

    def spec(self, task: str):
        return self.members_for(task)[0].specs[task]

    def data_dir(self, data_dir: str | Path | None = None) -> Path:
        """``data_dir``, else the folder the first member was trained on (found again the same way)."""
        member = self.members[0]
        config = member.config if data_dir is None else member.config.replace(data_dir=str(data_dir))
        return resolve_data_dir(config.data_dir, list(member.specs.values()))

    # ------------------------------------------------------------------------------------------------ outputs
    @torch.no_grad()
    def member_outputs(self, task: str, examples, batch_size: int | None = None) -> list[torch.Tensor]:
        """Each member's raw output for ``examples``, in their order: logits ``(N, K)``, a paraphrase logit or a
        score ``(N,)``, on the CPU in float32. One pass per member; :meth:`average` and :meth:`probabilities`
        turn the result into the ensemble's predictions and each member's common-scale outputs."""
        members = self.members_for(task)
        outputs, order = [], None
        for member in members:
            info = member.model.task_info[task]
            layout = "bi" if info.layout == "single" else info.layout
            dataset = EncodedDataset(examples, member.tokenizer, layout=layout, max_length=member.config.max_length,
                                     label_dtype=None)
            size = batch_size or member.config.eval_batch_size or 2 * member.config.batch_size
            if order is None:  # the same batches for every member: by length, as the trainer evaluates
                order = BucketBatchSampler(dataset.lengths, size, shuffle=False).batches()
            collate = Collator(dataset.pad_token_id, dataset.layout, None)
            member.model.eval()
            chunks = []
            for indices in order:
                batch = collate([dataset[i] for i in indices])
                batch = {k: (v.to(member.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
                chunks.append(member.model(task, batch).float().cpu())
            stacked = torch.cat(chunks)  # in batch order
            flat = torch.tensor([i for indices in order for i in indices], dtype=torch.long)
            in_order = torch.empty_like(stacked)
            in_order[flat] = stacked  # back in the examples' order
            outputs.append(in_order)
        return outputs

    def probabilities(self, task: str, outputs: list[torch.Tensor]) -> list[np.ndarray]:
        """Each member's outputs (from :meth:`member_outputs`) on the scale every head shares: class
        probabilities ``(N, K)``, P(paraphrase) ``(N,)`` with the member's own threshold at 0.5, or a score."""
        return [_probability_scale(m.model, task, out.to(m.device)).cpu().numpy()
                for m, out in zip(self.members_for(task), outputs)]

    def average(self, task: str, outputs: list[torch.Tensor]) -> np.ndarray:
        """The ensemble's predictions in label space from the members' outputs (:meth:`member_outputs`): the raw
        outputs averaged when every member's head gives the same kind, else their common-scale values."""
        members = self.members_for(task)
        same = len({m.model.task_info[task].output for m in members}) == 1
        if not same:  # e.g. a cosine head beside a regression head: average on the common scale
            outputs = [_probability_scale(m.model, task, out.to(m.device)).cpu() for m, out in zip(members, outputs)]
        widths = {tuple(out.shape[1:]) for out in outputs}
        if len(widths) > 1:
            raise ValueError(f"task {task!r}: members' outputs have different shapes {sorted(widths)}; their "
                             "heads predict different things (e.g. 5 vs 2 classes) and cannot be averaged.")
        mean = torch.stack(outputs).mean(dim=0)
        if same:
            labels = members[0].model.to_labels(task, mean.to(members[0].device)).cpu()
        else:
            labels = _from_probability_scale(members[0].specs[task].kind, mean)
        return labels.float().numpy().astype(np.float64)

    def predict_examples(self, task: str, examples, batch_size: int | None = None) -> np.ndarray:
        """Predictions in label space for ``examples`` (in their order), from the members' averaged outputs."""
        return self.average(task, self.member_outputs(task, examples, batch_size))

    def predict(self, task: str, split: str = "test", data_dir: str | Path | None = None,
                batch_size: int | None = None) -> tuple[list[str], np.ndarray]:
        """``(ids, predictions)`` for one task and split ("dev" or "test") of the data folder."""
        spec = self.spec(task)
        examples, _ = load_split(spec, self.data_dir(data_dir), split)
        return [ex.id for ex in examples], self.predict_examples(task, examples, batch_size)

    def evaluate(self, data_dir: str | Path | None = None, tasks=None, batch_size: int | None = None) -> dict:
        """Dev metrics per task (on the whole dev file) and the overall score: ``{"metrics", "scores", "overall"}``."""
        folder = self.data_dir(data_dir)
        metrics, scores, kinds = {}, {}, {}
        for task in tasks or self.tasks:
            spec = self.spec(task)
            if not spec.dev_file:
                continue
            examples, _ = load_split(spec, folder, "dev")
            preds = self.predict_examples(task, examples, batch_size)
            metrics[task] = evaluate_task(spec, preds, [ex.label for ex in examples])
            scores[task] = metrics[task]["score"]
            kinds[task] = spec.metric
        return {"metrics": metrics, "scores": scores, "overall": overall_of(scores, kinds) if scores else None}

    def write_predictions(self, out_dir: str | Path, splits=("dev", "test"), data_dir: str | Path | None = None,
                          tasks=None, paths: dict | None = None, batch_size: int | None = None) -> dict[str, Path]:
        """Write ``<task>-<split>-output.csv`` files (CS224N submission format) for every task and split whose
        file exists; ``paths`` maps (task, split) to a file name of your choice. Returns what was written."""
        folder = self.data_dir(data_dir)
        written = {}
        for task in tasks or self.tasks:
            spec = self.spec(task)
            for split in splits:
                name = getattr(spec, f"{split}_file")
                if not name or not spec.path(folder, split).is_file():
                    continue
                ids, preds = self.predict(task, split, folder, batch_size)
                target = Path((paths or {}).get((task, split)) or Path(out_dir) / f"{task}-{split}-output.csv")
                written[f"{task}-{split}"] = write_predictions(target, ids, preds, spec)
        return written
