"""The batch feed: each task's data, batched in an order that is a function of (seed, task, epoch, cycle)
only, which is what resuming exactly needs; and the epoch's plan of which task's batch comes next."""
from __future__ import annotations

import copy
import hashlib
import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from mtkit.data.batching import BucketBatchSampler, Collator, EncodedDataset
from mtkit.data.tasks import load_split

__all__ = ['TaskFeed', 'derive_seed', 'TaskData']


def derive_seed(*parts) -> int:
    """A 63-bit seed from any parts (the run seed, a task name, an epoch ...), the same on every machine."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# ------------------------------------------------------------------------------------------- data of one task
@dataclass
class TaskData:
    """One task's spec, training options and encoded splits."""
    spec: object  # mtkit.data.TaskSpec (num_labels filled in)
    options: object  # mtkit.train.config.TaskConfig
    layout: str  # "single", "bi" or "cross"
    batch_size: int
    train: object | None = None  # EncodedDataset
    dev: object | None = None
    reports: dict = field(default_factory=dict)  # split -> LoadReport


# ------------------------------------------------------------------------------------------- building blocks
def _tokens(batch: dict) -> int:
    return int(sum(int(v.sum()) for k, v in batch.items() if k.startswith("attention_mask")))


class TaskFeed:
    """The Trainer's batch feed (a mixin of :class:`mtkit.train.trainer.Trainer`): it reads ``config``,
    ``tokenizer``, ``data_dir``, ``tasks``, ``schedule`` and ``_batch_cache``, and returns batches and plans."""

    def _load_tasks(self, specs) -> dict[str, TaskData]:
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
