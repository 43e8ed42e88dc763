"""Task specs: what a task is (its kind, files, metric and labels), so new datasets need no code.

The three CS224N tasks are specs like any other (``default_tasks()``). A custom task, a binary sentiment set
such as CFIMDB say, is a few lines of YAML turned into a :class:`TaskSpec` by ``TaskSpec.from_dict``::

    name: cfimdb
    kind: classification          # or pair_classification, pair_regression
    train: ids-cfimdb-train.csv   # file names inside the data folder (train_file / dev_file / test_file)
    dev: ids-cfimdb-dev.csv
    test: ids-cfimdb-test-student.csv
    num_labels: 2                 # optional: inferred from the data when left out

Taught in notebooks/01_setup_and_data.ipynb.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mtkit.data.readers import DEFAULT_COLUMNS, KINDS, PREPROCESS_MODES, load_examples

SPLITS = ("train", "dev", "test")
METRICS = ("accuracy", "macro_f1", "pearson", "spearman")
DEFAULT_METRIC = {"classification": "accuracy", "pair_classification": "accuracy", "pair_regression": "pearson"}


@dataclass
class TaskSpec:
    name: str  # short name, used for heads, logs and prediction files ("sst", "para", "sts", "cfimdb")
    kind: str  # "classification" | "pair_classification" | "pair_regression"
    train_file: str | None = None  # file name inside the data folder (or an absolute path)
    dev_file: str | None = None
    test_file: str | None = None  # unlabeled *-test-student.csv
    metric: str | None = None  # "accuracy" | "macro_f1" | "pearson" | "spearman"; None: by kind
    num_labels: int | None = None  # classes; None: inferred from the training data (max label + 1)
    label_range: tuple[float, float] | None = None  # regression: allowed score range, e.g. (0, 5)
    labels: list[str] | None = None  # optional names of the classes as written in the file, in class order
    columns: dict[str, str] = field(default_factory=dict)  # role -> column name, overriding the defaults
    delimiter: str = "\t"  # CS224N files are tab-separated
    preprocess: str = "cs224n"  # "cs224n" (the starter's lower-casing / punctuation spacing) or "none"
    description: str = ""  # one line for humans

    def __post_init__(self) -> None:
        where = f"task {self.name!r}: "
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"A task needs a non-empty name (got {self.name!r}).")
        if self.kind not in KINDS:
            close = difflib.get_close_matches(str(self.kind), KINDS, n=1)
            raise ValueError(f"{where}kind {self.kind!r} is not known; use one of {list(KINDS)}"
                             + (f" (did you mean {close[0]!r}?)" if close else "") + ".")
        if self.metric is None:
            self.metric = DEFAULT_METRIC[self.kind]
        if self.metric not in METRICS:
            raise ValueError(f"{where}metric {self.metric!r} is not known; use one of {list(METRICS)}.")
        regression = self.kind == "pair_regression"
        if regression and self.metric in ("accuracy", "macro_f1"):
            raise ValueError(f"{where}a pair_regression task is scored by 'pearson' or 'spearman', not {self.metric!r}.")
        if not regression and self.metric in ("pearson", "spearman"):
            raise ValueError(f"{where}a {self.kind} task is scored by 'accuracy' or 'macro_f1', not {self.metric!r}.")
        if self.num_labels is not None:
            if regression:
                raise ValueError(f"{where}num_labels is for classification; a regression task uses label_range.")
            if isinstance(self.num_labels, bool) or not isinstance(self.num_labels, int) or self.num_labels < 2:
                raise ValueError(f"{where}num_labels must be a whole number >= 2 (got {self.num_labels!r}).")
        if self.labels is not None:
            if regression:
                raise ValueError(f"{where}labels (class names) are for classification tasks.")
            if isinstance(self.labels, str) or len(self.labels) < 2 or len(set(map(str, self.labels))) != len(self.labels):
                raise ValueError(f"{where}labels must be a list of at least two distinct values (got {self.labels!r}).")
            self.labels = [str(x) for x in self.labels]
            if self.num_labels is not None and self.num_labels != len(self.labels):
                raise ValueError(f"{where}labels has {len(self.labels)} entries but num_labels is {self.num_labels}.")
            self.num_labels = len(self.labels)
        if self.label_range is not None:
            if not regression:
                raise ValueError(f"{where}label_range is for pair_regression tasks.")
            try:
                lo, hi = (float(x) for x in self.label_range)
            except (TypeError, ValueError):
                raise ValueError(f"{where}label_range must be two numbers [low, high] (got {self.label_range!r}).") from None
            if not lo < hi:
                raise ValueError(f"{where}label_range must have low < high (got {self.label_range!r}).")
            self.label_range = (lo, hi)
        roles = DEFAULT_COLUMNS[self.kind]
        unknown = set(self.columns or {}) - set(roles)
        if unknown:
            raise ValueError(f"{where}columns has unknown role(s) {sorted(unknown)}; a {self.kind} task has the "
                             f"roles {sorted(roles)} (defaults {roles}).")
        self.columns = dict(self.columns or {})
        if self.preprocess not in PREPROCESS_MODES:
            raise ValueError(f"{where}preprocess {self.preprocess!r} is not known; use one of {list(PREPROCESS_MODES)}.")
        if not isinstance(self.delimiter, str) or len(self.delimiter) != 1:
            raise ValueError(f"{where}delimiter must be one character such as '\\t' or ',' (got {self.delimiter!r}).")

    # ------------------------------------------------------------------ files
    def file(self, split: str) -> str:
        """The file name of ``split`` ("train", "dev" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not known; use one of {list(SPLITS)}.")
        name = getattr(self, f"{split}_file")
        if not name:
            raise ValueError(f"task {self.name!r} has no {split} file (set {split}_file in its spec).")
        return name

    def path(self, data_dir: str | Path, split: str) -> Path:
        name = Path(self.file(split))
        return name if name.is_absolute() else Path(data_dir) / name

    def all_columns(self) -> dict[str, str]:
        return DEFAULT_COLUMNS[self.kind] | self.columns

    @property
    def is_pair(self) -> bool:
        return self.kind != "classification"

    @property
    def is_regression(self) -> bool:
        return self.kind == "pair_regression"

    # ------------------------------------------------------------------ config
    @classmethod
    def from_dict(cls, values: dict) -> TaskSpec:
        """A spec from a config mapping (YAML); ``train``/``dev``/``test`` may stand for ``*_file``.

        Unknown keys and invalid values raise ValueError naming them.
        """
        if not isinstance(values, dict):
            raise ValueError(f"A task spec must be a mapping of keys to values (got {type(values).__name__}).")
        values = dict(values)
        for split in SPLITS:
            if split in values:
                if f"{split}_file" in values:
                    raise ValueError(f"task spec has both {split!r} and '{split}_file'; keep one.")
                values[f"{split}_file"] = values.pop(split)
        known = [f.name for f in fields(cls)]
        unknown = [k for k in values if k not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), known + list(SPLITS), n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            name = values.get("name", "?")
            raise ValueError(f"task {name!r}: unknown key(s) {', '.join(hints)}. Known keys: "
                             f"{sorted(known + list(SPLITS))}.")
        for required in ("name", "kind"):
            if required not in values:
                raise ValueError(f"task spec {values}: missing {required!r}.")
        if values.get("label_range") is not None:
            values["label_range"] = tuple(values["label_range"]) if isinstance(values["label_range"], (list, tuple)) \
                else values["label_range"]
        return cls(**values)

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["label_range"] is not None:
            out["label_range"] = list(out["label_range"])
        return out


def default_tasks() -> list[TaskSpec]:
    """The three CS224N tasks with their standard file names: SST-5, Quora paraphrase, STS-B."""
    return [
        TaskSpec("sst", "classification", "ids-sst-train.csv", "ids-sst-dev.csv", "ids-sst-test-student.csv",
                 metric="accuracy", num_labels=5,
                 description="Stanford Sentiment Treebank, 5 classes (0 very negative ... 4 very positive)"),
        TaskSpec("para", "pair_classification", "quora-train.csv", "quora-dev.csv", "quora-test-student.csv",
                 metric="accuracy", num_labels=2,
                 description="Quora question pairs: is sentence2 a paraphrase of sentence1 (0/1)"),
        TaskSpec("sts", "pair_regression", "sts-train.csv", "sts-dev.csv", "sts-test-student.csv",
                 metric="pearson", label_range=(0.0, 5.0),
                 description="STS-B: semantic similarity of two sentences, 0 (unrelated) to 5 (same meaning)"),
    ]


def default_task(name: str) -> TaskSpec:
    tasks = {t.name: t for t in default_tasks()}
    if name not in tasks:
        raise KeyError(f"No default task {name!r}; the defaults are {sorted(tasks)}.")
    return tasks[name]


def tasks_from_config(entries) -> list[TaskSpec]:
    """Task specs from a config list: a string names a default task, a mapping is a custom one."""
    if isinstance(entries, (str, dict)):
        entries = [entries]
    specs = []
    for entry in entries:
        specs.append(default_task(entry) if isinstance(entry, str) else TaskSpec.from_dict(entry))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"task name(s) {duplicates} appear more than once; each task needs its own name.")
    return specs


def load_split(spec: TaskSpec, data_dir: str | Path, split: str, strict: bool = False, **kwargs):
    """Load ``split`` ("train", "dev", "test") of ``spec`` from ``data_dir``: ``(examples, LoadReport)``.

    Train and dev files must have labels; test files may have none. Extra keyword arguments go to
    :func:`mtkit.data.readers.load_examples` (e.g. ``encoding``).
    """
    path = spec.path(data_dir, split)
    labeled = True if split in ("train", "dev") else None
    return load_examples(path, spec.kind, columns=spec.columns, labeled=labeled, num_labels=spec.num_labels,
                         labels=spec.labels, label_range=spec.label_range, preprocess=spec.preprocess,
                         strict=strict, delimiter=spec.delimiter, task=spec.name, **kwargs)
