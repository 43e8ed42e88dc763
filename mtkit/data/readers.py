"""Readers for the CS224N default-final-project files, with honest load reports.

The files (SST-5 sentiment, Quora paraphrase, STS-B similarity; also any custom set in the same shape) are
tab-separated, with a header row and an unnamed row-index column first. Columns are found **by name**, so
``ids-sst-test-student.csv`` (two unnamed leading columns) reads like the others. CSV quoting is honoured
(``""`` inside a quoted field is one quote), exactly as Python's ``csv`` module reads them.

Preprocessing matches the CS224N starter code (``datasets.py`` of the default final project) and is
selectable with ``preprocess=``:

- ``"cs224n"`` (default). Single sentences: ``s.lower().strip()``. Pair sentences: ``preprocess_string``,
  which lower-cases, puts a space before ``.``, ``?``, ``,`` and ``'``, and collapses white space:
  ``"Nobody answers, why?"`` -> ``"nobody answers , why ?"``.
- ``"none"``: the text exactly as it is in the file.

Ids are stripped of surrounding white space (never lower-cased or otherwise changed).

Honest loading. Every load returns a :class:`LoadReport`: rows read, rows kept, and each rejected row with its
line number, the reason and an excerpt; rejections are also logged at WARNING through ``logging`` (logger
``mtkit.data``). Nothing is dropped without a line in the report. ``strict=True`` raises
:class:`DataFormatError` on the first bad row instead. Line numbers count physical lines from 1, the header
being line 1; a record whose quoted field spans several lines is reported at the line where it starts.

What is an error (one message, naming the file and what to do) and what is a rejected row:

- errors: a missing file, an empty file, a header with no rows, a missing column (with a hint when the file
  looks comma-separated), bytes that are not UTF-8 (with the line), a label outside the declared set, and a
  file whose every row is rejected;
- rejected rows: a wrong number of fields (truncated row, stray tab), a field holding a line break (an
  unbalanced quote swallowing the next lines), an empty id / sentence / label, a non-numeric label, a
  duplicate id.

A UTF-8 byte-order mark and Windows line endings (CRLF, as in the Quora files) are read transparently; the
BOM is mentioned in the report's notes.

Taught in notebooks/01_setup_and_data.ipynb.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from mtkit.data.records import (
    PREPROCESS_MODES,
    DataFormatError,
    LoadReport,
    PairExample,
    Record,
    Rejection,
    SentenceExample,
    check_preprocess_mode,
    cs224n_preprocess_string,
    excerpt,
    find_columns,
    preprocess_pair,
    preprocess_single,
    read_records,
)

__all__ = ["KINDS", "DEFAULT_COLUMNS", "PREPROCESS_MODES", "SentenceExample", "PairExample", "Rejection",
           "DataFormatError", "LoadReport", "cs224n_preprocess_string", "preprocess_single", "preprocess_pair",
           "read_records", "load_examples", "read_sentences", "read_pairs", "to_dataframe"]

logger = logging.getLogger("mtkit.data")
KINDS = ("classification", "pair_classification", "pair_regression")

# Default column names of the CS224N files, per kind of task.
DEFAULT_COLUMNS = {
    "classification": {"id": "id", "sentence": "sentence", "label": "sentiment"},
    "pair_classification": {"id": "id", "sentence1": "sentence1", "sentence2": "sentence2",
                            "label": "is_duplicate"},
    "pair_regression": {"id": "id", "sentence1": "sentence1", "sentence2": "sentence2", "label": "similarity"},
}


# --------------------------------------------------------------------------------------------- labels
def _parse_class_label(raw: str, column: str, labels: Sequence[str] | None) -> tuple[int | None, str | None, str | None]:
    """Returns (value, rejection reason, out-of-set value)."""
    if labels is not None:
        if raw in labels:
            return list(labels).index(raw), None, None
        return None, None, raw
    try:
        number = float(raw)
    except ValueError:
        return None, (f"label {raw!r} in column {column!r} is not a number (class labels are 0, 1, 2, ...; "
                      "for named labels list them under `labels` in the task spec)"), None
    if not math.isfinite(number) or number != int(number):
        return None, f"label {raw!r} in column {column!r} is not a whole number (class labels are 0, 1, 2, ...)", None
    return int(number), None, None


def _parse_score(raw: str, column: str) -> tuple[float | None, str | None]:
    try:
        number = float(raw)
    except ValueError:
        return None, f"score {raw!r} in column {column!r} is not a number"
    if not math.isfinite(number):
        return None, f"score {raw!r} in column {column!r} is not a finite number"
    return number, None


# --------------------------------------------------------------------------------------------- loading
def load_examples(path: str | Path, kind: str, *, columns: dict[str, str] | None = None,
                  labeled: bool | None = True, num_labels: int | None = None,
                  labels: Sequence[str] | None = None, label_range: tuple[float, float] | None = None,
                  preprocess: str = "cs224n", strict: bool = False, delimiter: str = "\t",
                  encoding: str = "utf-8", task: str | None = None):
    """Load one file of a task of ``kind`` ("classification", "pair_classification", "pair_regression").

    ``labeled``: True (default) requires the label column (train/dev), False ignores it, None uses it when
    present (test files have none). ``num_labels`` / ``labels`` declare the classes (None: inferred from the data);
    ``label_range`` bounds regression scores. Returns ``(examples, LoadReport)``.

    Taught in notebooks/01_setup_and_data.ipynb.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not known; use one of {KINDS}.")
    check_preprocess_mode(preprocess)
    if labels is not None and num_labels is not None and len(labels) != num_labels:
        raise ValueError(f"labels {list(labels)} has {len(labels)} entries but num_labels is {num_labels}.")
    if labels is not None:
        labels = [str(x) for x in labels]
        num_labels = len(labels)
    path = Path(path)
    who = f"task {task!r}, " if task else ""
    cols = dict(DEFAULT_COLUMNS[kind])
    if columns:
        unknown = set(columns) - set(cols)
        if unknown:
            raise ValueError(f"columns has unknown role(s) {sorted(unknown)}; the roles for {kind} are {sorted(cols)}.")
        cols.update(columns)
    label_name = cols["label"]
    report = LoadReport(path=str(path), preprocess=preprocess)
    header, _, records = read_records(path, delimiter=delimiter, encoding=encoding, notes=report.notes)
    optional = ["label"] if labeled is not True else []
    wanted = {role: name for role, name in cols.items() if not (role == "label" and labeled is False)}
    index = find_columns(path, header, wanted, optional, delimiter)
    use_label = index.get("label") is not None
    text_roles = ["sentence"] if kind == "classification" else ["sentence1", "sentence2"]
    prep: Callable[[str, str], str] = preprocess_single if kind == "classification" else preprocess_pair

    if not records:
        raise DataFormatError(
            f"{path} has a header but no data rows ({who}header: {header}). The file is probably truncated: "
            "fetch or copy it again.", path)

    examples: list = []
    seen_ids: dict[str, int] = {}
    out_of_set: list[tuple[object, int]] = []

    def reject(rec: Record, reason: str) -> None:
        if strict:
            raise DataFormatError(f"{path}, line {rec.line:,}: {reason}. (strict=True stops at the first bad "
                                  "row; strict=False skips such rows and lists them in the load report.)",
                                  path, rec.line)
        report.rejected.append(Rejection(rec.line, reason, excerpt(rec.raw)))

    lo_hi = label_range
    for rec in records:
        report.rows_read += 1
        if rec.end_line > rec.line:
            reject(rec, f"a field holds a line break, so this record spans lines {rec.line:,}-{rec.end_line:,}; "
                        "most likely an unbalanced quote (\") that swallowed the following lines")
            continue
        if len(rec.fields) != len(header):
            why = ("a truncated row or a missing tab?" if len(rec.fields) < len(header)
                   else "a tab inside a sentence?")
            reject(rec, f"expected {len(header)} tab-separated fields as in the header, found {len(rec.fields)} "
                        f"({why})" if delimiter == "\t" else
                        f"expected {len(header)} fields as in the header, found {len(rec.fields)}")
            continue
        ex_id = rec.fields[index["id"]].strip()
        empty = [cols[role] for role in ["id", *text_roles] if not rec.fields[index[role]].strip()]
        if use_label and not rec.fields[index["label"]].strip():
            empty.append(label_name)
        if empty:
            what = " and ".join(f"{name!r}" for name in empty)
            hint = ("; a quote (\") in this row may have swallowed the missing fields"
                    if '"' in rec.raw else "")
            reject(rec, f"empty {what}{hint}")
            continue
        texts = [prep(rec.fields[index[role]], preprocess) for role in text_roles]
        label = None
        if use_label:
            raw_label = rec.fields[index["label"]].strip()
            if kind == "pair_regression":
                label, reason = _parse_score(raw_label, label_name)
                if reason:
                    reject(rec, reason)
                    continue
                if lo_hi is not None and not (lo_hi[0] <= label <= lo_hi[1]):
                    bad = raw_label
                    label = None
                else:
                    bad = None
            else:
                label, reason, bad = _parse_class_label(raw_label, label_name, labels)
                if reason:
                    reject(rec, reason)
                    continue
                if bad is None and (label < 0 or (num_labels is not None and label >= num_labels)):
                    bad = raw_label
            if bad is not None:
                if strict:
                    raise DataFormatError(_label_message(path, who, kind, [(bad, rec.line)], num_labels, labels,
                                                         lo_hi, label_name), path, rec.line)
                out_of_set.append((bad, rec.line))
                continue
        if ex_id in seen_ids:
            reject(rec, f"duplicate id {ex_id!r} (first seen at line {seen_ids[ex_id]:,})")
            continue
        seen_ids[ex_id] = rec.line
        if kind == "classification":
            examples.append(SentenceExample(ex_id, texts[0], label))
        else:
            examples.append(PairExample(ex_id, texts[0], texts[1], label))

    if out_of_set:
        raise DataFormatError(_label_message(path, who, kind, out_of_set, num_labels, labels, lo_hi, label_name),
                              path, out_of_set[0][1])
    report.rows_kept = len(examples)
    if report.rows_kept == 0:
        reasons = "; ".join(f"line {r.line:,}: {r.reason}" for r in report.rejected[:3])
        raise DataFormatError(
            f"{path}: all {report.rows_read:,} rows were rejected, so nothing is left to load ({reasons}). "
            "Check the file's format (tab-separated, columns "
            f"{list(wanted.values())}).", path)
    if use_label and kind != "pair_regression":
        counts = Counter(ex.label for ex in examples)
        report.label_counts = dict(sorted(counts.items()))
        inferred = max(counts) + 1
        report.num_labels = num_labels if num_labels is not None else inferred
        absent = [k for k in range(report.num_labels) if k not in counts]
        if absent:
            report.notes.append(f"class(es) {absent} never occur in this file")
    elif use_label:
        scores = [ex.label for ex in examples]
        report.notes.append(f"scores from {min(scores):g} to {max(scores):g} (mean {sum(scores) / len(scores):.3f})")
    elif labeled is not False and not use_label:
        report.notes.append(f"no {label_name!r} column: loaded as unlabeled (labels are None)")
    if report.rejected:
        logger.warning("%s", report)
    else:
        logger.info("%s", report)
    return examples, report


def _label_message(path, who, kind, bad: list[tuple[object, int]], num_labels, labels, lo_hi, column) -> str:
    counts = Counter(str(v) for v, _ in bad)
    first = {}
    for v, line in bad:
        first.setdefault(str(v), line)
    listing = ", ".join(f"{v!r} ({n}x, first at line {first[v]:,})" for v, n in counts.most_common(6))
    if kind == "pair_regression":
        allowed = f"the declared range {lo_hi[0]:g} to {lo_hi[1]:g}"
        fix = "set label_range in the task spec to the scale your file uses"
    elif labels is not None:
        allowed = f"the declared labels {list(labels)}"
        fix = "add them to `labels` in the task spec"
    elif num_labels is not None:
        allowed = f"the declared classes 0-{num_labels - 1} (num_labels={num_labels})"
        fix = "raise num_labels in the task spec (or leave it unset to infer it)"
    else:
        allowed = "class indices 0, 1, 2, ..."
        fix = "map the labels to 0, 1, 2, ... or list them under `labels` in the task spec"
    return (f"{path}: {len(bad):,} row(s) have a label in column {column!r} outside {allowed} ({who}"
            f"values: {listing}). If the file is right, {fix}; otherwise fix or remove those rows.")


def read_sentences(path: str | Path, **kwargs):
    """Single-sentence classification file (SST style). Returns ``(list[SentenceExample], LoadReport)``."""
    return load_examples(path, "classification", **kwargs)


def read_pairs(path: str | Path, kind: str = "pair_classification", **kwargs):
    """Sentence-pair file (Quora: ``pair_classification``; STS: ``pair_regression``)."""
    if kind == "classification":
        raise ValueError("read_pairs reads pair files; use read_sentences for single sentences.")
    return load_examples(path, kind, **kwargs)


def to_dataframe(examples: Sequence[SentenceExample | PairExample]):
    """The examples as a pandas DataFrame (one row each), for looking at the data in a notebook."""
    import pandas as pd  # imported here: pandas is heavy and only this function needs it
    return pd.DataFrame([asdict(ex) for ex in examples])