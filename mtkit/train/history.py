"""The run history: one JSON record per line (JSON Lines), loadable into pandas for plots.

Each record is a flat-ish dict with a ``kind``:

- ``"step"``: one optimizer step: ``step``, ``epoch``, ``tasks`` (whose batches went in), ``loss`` (task ->
  loss value), ``lr`` (of the first group), ``grad_norm`` (before clipping), ``tokens`` (non-padding tokens),
  and the timing fields ``step_seconds`` and ``tokens_per_s``;
- ``"eval"``: a dev evaluation: ``step``, ``epoch``, ``metrics`` (task -> {metric: value}), ``scores`` (task ->
  the task's own metric), ``overall`` (when sst, para and sts are all there), ``selected`` (the model became
  the best);
- ``"epoch"``: the end of an epoch: mean training loss per task, ``epoch_seconds``;
- ``"event"``: anything else worth a line: a fine-tune stage switch, a skipped step, a resume.

Every record carries ``time`` (seconds since the run started, counting resumed segments). Timing fields
differ between runs; :meth:`History.comparable` drops them, so two runs with the same seed compare equal.

Taught in notebooks/07_multitask_training.ipynb (curves in 10_experiments_and_error_analysis).
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

from mtkit.util.jsonable import to_plain

TIME_KEYS = ("time", "step_seconds", "tokens_per_s", "eval_seconds", "epoch_seconds", "seconds")
KINDS = ("step", "eval", "epoch", "event")


class History:
    """Records of one run, kept in memory and appended to ``path`` (flushed line by line) when given.

    Taught in notebooks/07_multitask_training.ipynb.
    """

    def __init__(self, path: str | Path | None = None, records: Iterable[dict] | None = None,
                 time_offset: float = 0.0):
        self.path = None if path is None else Path(path)
        self.records: list[dict] = [dict(r) for r in (records or [])]
        self.time_offset = float(time_offset)  # wall time of earlier segments of a resumed run

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        counts = {k: sum(r.get("kind") == k for r in self.records) for k in KINDS}
        return f"History({counts}, path={str(self.path) if self.path else None!r})"

    # ------------------------------------------------------------------------------------------ writing
    def log(self, kind: str, **fields) -> dict:
        if kind not in KINDS:
            raise ValueError(f"history record kind must be one of {KINDS}, got {kind!r}.")
        record = {"kind": kind, **to_plain(fields, nonfinite="string")}
        self.records.append(record)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        return record

    def rewrite(self) -> None:
        """Write the whole file from memory (after a resume), atomically."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".part")
        with open(tmp, "w", encoding="utf-8") as fh:
            for record in self.records:
                fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    # ------------------------------------------------------------------------------------------ reading
    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a history file; a last line cut short by a crash is ignored (and said so)."""
        path = Path(path)
        if path.is_dir():
            path = path / "history.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"No history file at {path}; a run writes <output_dir>/history.jsonl.")
        records = []
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines):  # the run was killed while writing its last line
                    warnings.warn(f"{path}: the last line is incomplete (the run was interrupted); ignored.",
                                  stacklevel=2)
                    break
                raise ValueError(f"{path}, line {number}: not a JSON record ({line[:60]!r}).") from None
        return cls(path=None, records=records)

    def of_kind(self, kind: str) -> list[dict]:
        return [r for r in self.records if r.get("kind") == kind]

    @property
    def steps(self) -> list[dict]:
        return self.of_kind("step")

    @property
    def evals(self) -> list[dict]:
        return self.of_kind("eval")

    def to_frame(self, kind: str = "step"):
        """A pandas DataFrame of one kind of record; nested dicts become columns (``loss.sst``, ``metrics.sts.pearson``)."""
        import pandas as pd  # imported here: pandas is heavy and only this function needs it
        rows = self.of_kind(kind)
        if not rows:
            return pd.DataFrame()
        return pd.json_normalize(rows, sep=".")

    def long_frame(self):
        """Per-epoch curves in long format, the input of ``mtkit.teach.plots.plot_learning_curves``: one row per
        (epoch, task, metric, split) with the number in ``value``. Training loss is the epoch's mean (split
        "train"); dev metrics come from the evaluations (split "dev"; with several evaluations in an epoch, the
        last). Epochs count from 1 here, as a learner reads a curve."""
        import pandas as pd  # imported here: pandas is heavy and only this function needs it
        rows = []
        for r in self.of_kind("epoch"):
            for task, value in (r.get("train_loss") or {}).items():
                rows.append({"epoch": r["epoch"] + 1, "step": r.get("step"), "task": task, "metric": "loss",
                             "split": "train", "value": value})
        for r in self.of_kind("eval"):
            # an evaluation at the end of epoch e is logged after the epoch counter moved on to e + 1
            for task, metrics in (r.get("metrics") or {}).items():
                for metric, value in metrics.items():
                    rows.append({"epoch": r["epoch"], "step": r.get("step"), "task": task, "metric": metric,
                                 "split": "dev", "value": value})
        frame = pd.DataFrame(rows, columns=["epoch", "step", "task", "metric", "split", "value"])
        return frame.drop_duplicates(["epoch", "task", "metric", "split"], keep="last").reset_index(drop=True)

    def comparable(self) -> list[dict]:
        """The records without timing fields, for comparing two runs (e.g. a resumed one with an uninterrupted one)."""
        out = []
        for r in self.records:
            if r.get("kind") == "event" and r.get("event") in ("start", "resume"):
                continue  # the start record holds the config (output_dir differs); resume marks a restart
            out.append({k: v for k, v in r.items() if k not in TIME_KEYS})
        return out

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records]}

    def load_state_dict(self, state: dict) -> None:
        self.records = [dict(r) for r in state["records"]]
        times = [r["time"] for r in self.records if isinstance(r.get("time"), (int, float))]
        self.time_offset = max(times) if times else 0.0
