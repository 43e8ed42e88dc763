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

import csv
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

logger = logging.getLogger("mtkit.data")

PREPROCESS_MODES = ("cs224n", "none")
KINDS = ("classification", "pair_classification", "pair_regression")

# Default column names of the CS224N files, per kind of task.
DEFAULT_COLUMNS = {
    "classification": {"id": "id", "sentence": "sentence", "label": "sentiment"},
    "pair_classification": {"id": "id", "sentence1": "sentence1", "sentence2": "sentence2",
                            "label": "is_duplicate"},
    "pair_regression": {"id": "id", "sentence1": "sentence1", "sentence2": "sentence2", "label": "similarity"},
}


# --------------------------------------------------------------------------------------------- examples
@dataclass
class SentenceExample:
    """One single-sentence example; ``label`` is a class index, or None in an unlabeled (test) file."""
    id: str
    sentence: str
    label: int | None = None


@dataclass
class PairExample:
    """One sentence pair; ``label`` is 0/1 (paraphrase), a float score (similarity) or None (test file)."""
    id: str
    sentence1: str
    sentence2: str
    label: float | int | None = None


# --------------------------------------------------------------------------------------------- reports
class Rejection(NamedTuple):
    """A row that was not kept: where it starts in the file, why, and what it looked like."""
    line: int
    reason: str
    excerpt: str


class DataFormatError(ValueError):
    """A data file that cannot be read as asked; the message names the file (and line) and what to do."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.line = line


@dataclass
class LoadReport:
    """What happened while loading one file. ``str(report)`` is a readable summary."""
    path: str
    rows_read: int = 0  # data records the CSV parser found (header excluded, blank lines excluded)
    rows_kept: int = 0  # examples returned
    rejected: list[Rejection] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things worth knowing that cost no row (BOM, blank lines)
    preprocess: str = "cs224n"
    num_labels: int | None = None  # classification: declared, or inferred as max label + 1
    label_counts: dict = field(default_factory=dict)  # label value -> count among kept rows

    @property
    def ok(self) -> bool:
        """True when no row was rejected."""
        return not self.rejected

    def __str__(self) -> str:
        name = Path(self.path).name
        head = (f"{name}: read {self.rows_read:,} rows, kept {self.rows_kept:,}, "
                f"rejected {len(self.rejected):,}")
        lines = [head + (":" if self.rejected else "")]
        shown = self.rejected[:20]
        for rej in shown:
            lines.append(f"  line {rej.line:,}: {rej.reason} | {rej.excerpt!r}")
        if len(self.rejected) > len(shown):
            lines.append(f"  ... and {len(self.rejected) - len(shown):,} more (see report.rejected)")
        if self.num_labels is not None:
            counts = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.label_counts.items()))
            lines.append(f"  {self.num_labels} classes ({counts})")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):  # IPython / Jupyter show the readable form
        printer.text(str(self))


# --------------------------------------------------------------------------------------------- preprocessing
def cs224n_preprocess_string(s: str) -> str:
    """The CS224N starter's ``preprocess_string`` for pair sentences: lower-case, space out . ? , ' ."""
    s = s.lower().replace(".", " .").replace("?", " ?").replace(",", " ,").replace("'", " '")
    return " ".join(s.split())


def preprocess_single(s: str, mode: str = "cs224n") -> str:
    """A single sentence as the CS224N starter prepares it (``lower().strip()``), or untouched (``"none"``)."""
    _check_mode(mode)
    return s.lower().strip() if mode == "cs224n" else s


def preprocess_pair(s: str, mode: str = "cs224n") -> str:
    """One side of a pair as the CS224N starter prepares it (``preprocess_string``), or untouched."""
    _check_mode(mode)
    return cs224n_preprocess_string(s) if mode == "cs224n" else s


def _check_mode(mode: str) -> None:
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"preprocess={mode!r} is not known; use one of {PREPROCESS_MODES}.")


# --------------------------------------------------------------------------------------------- low level
class _Record(NamedTuple):
    line: int  # physical line where the record starts (header = 1)
    end_line: int  # physical line where it ends
    fields: list[str]
    raw: str  # the first physical line, without its line ending


def _excerpt(raw: str, limit: int = 110) -> str:
    """The start and the end of a long line (the end is where truncation and empty fields show)."""
    raw = raw.rstrip("\r\n")
    return raw if len(raw) <= limit else raw[:limit - 40] + " ... " + raw[-35:]


def _decode(path: Path, data: bytes, encoding: str, notes: list[str]) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataFormatError(
            f"{path} starts with a UTF-16 byte-order mark: it was saved as UTF-16. Re-save it as UTF-8 "
            "(in a spreadsheet: 'CSV UTF-8' / tab-separated; or `iconv -f utf-16 -t utf-8`).", path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        notes.append("a UTF-8 byte-order mark (BOM) at the start of the file was removed")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        line_start = data.rfind(b"\n", 0, err.start) + 1
        column = err.start - line_start + 1
        bad = data[err.start:err.end]
        if err.end >= len(data) and "unexpected end" in str(err.reason):
            raise DataFormatError(
                f"{path}, line {line:,}: the file ends in the middle of a character, so it is truncated (an "
                "interrupted download or copy). Fetch it again (`mtkit data fetch --dest DIR --force`) or copy "
                "it again.", path, line) from None
        raise DataFormatError(
            f"{path}, line {line:,}, column {column}: byte(s) {bad!r} are not valid {encoding} ({err.reason}). "
            f"The file was probably saved in another encoding (Latin-1 / Windows-1252?). Re-save it as UTF-8 "
            f"(e.g. `iconv -f cp1252 -t utf-8 in.csv > out.csv`), or pass encoding='cp1252' if you know "
            "its encoding.", path, line) from None


def _physical_lines(text: str) -> Iterable[str]:
    """Split on '\\n' only (so CRLF stays one line ending and odd Unicode separators stay inside lines)."""
    parts = text.split("\n")
    last = parts.pop()
    for part in parts:
        yield part + "\n"
    if last:
        yield last


def read_records(path: str | Path, *, delimiter: str = "\t", encoding: str = "utf-8",
                 notes: list[str] | None = None) -> tuple[list[str], int, list[_Record]]:
    """Parse a delimited file into (header, header line, records), tracking each record's physical lines.

    Blank lines are skipped (counted in ``notes``). Raises :class:`DataFormatError` for a missing, empty or
    undecodable file, and FileNotFoundError when there is no file.
    """
    path = Path(path)
    notes = [] if notes is None else notes
    if not path.exists():
        raise FileNotFoundError(
            f"No data file at {path}. Check the folder (data_dir / MTKIT_DATA), or download the CS224N files "
            "with `mtkit data fetch --dest ./data`.")
    if path.is_dir():
        raise DataFormatError(f"{path} is a folder, not a data file; point at the .csv file inside it.", path)
    data = path.read_bytes()
    if not data:
        raise DataFormatError(
            f"{path} is empty (0 bytes). The download or copy was probably interrupted: fetch it again "
            "(`mtkit data fetch --dest DIR --force`) or copy it again.", path)
    text = _decode(path, data, encoding, notes)
    if not text.strip():
        raise DataFormatError(f"{path} holds only white space, no header and no rows. Fetch or copy it again.",
                              path)

    if "\n" not in text and "\r" in text:  # classic Mac line endings: one CR per line
        text = text.replace("\r", "\n")
        notes.append("old Mac line endings (CR only) were read as line breaks")
    lines = _physical_lines(text)
    reader = csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    header: list[str] | None = None
    header_line = 0
    records: list[_Record] = []
    blank_lines: list[int] = []
    previous_end = 0
    # Keep the text of each physical line so a rejected record can show an excerpt.
    physical = text.split("\n")
    while True:
        start = previous_end + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:  # e.g. a NUL byte, or a lone carriage return
            if "new-line character" in str(err):
                raise DataFormatError(
                    f"{path}, line {start:,}: a carriage return (\\r) without a line feed inside a row; the file "
                    "mixes line-ending styles. Re-save it with LF or CRLF line endings (e.g. `dos2unix`).",
                    path, start) from None
            raise DataFormatError(f"{path}, line {start:,}: the CSV parser failed ({err}). "
                                  "Is this a text file in tab-separated format?", path, start) from None
        end = reader.line_num
        previous_end = end
        if not fields or (len(fields) == 1 and not fields[0].strip() and end == start):
            blank_lines.append(start)
            continue
        raw = physical[start - 1] if start - 1 < len(physical) else ""
        if header is None:
            header, header_line = [name.strip() for name in fields], start
            continue
        records.append(_Record(start, end, fields, raw))
    if header is None:  # pragma: no cover - text.strip() was non-empty, so csv found something
        raise DataFormatError(f"{path} has no header row.", path)
    if blank_lines:
        shown = ", ".join(f"{n:,}" for n in blank_lines[:5]) + (" ..." if len(blank_lines) > 5 else "")
        trailing = all(n > (records[-1].end_line if records else header_line) for n in blank_lines)
        notes.append(f"{len(blank_lines)} blank line(s) skipped (line {shown})"
                     + (" at the end of the file" if trailing else ""))
    return header, header_line, records


def _find_columns(path: Path, header: list[str], wanted: dict[str, str], optional: Sequence[str],
                  delimiter: str) -> dict[str, int | None]:
    """Map each role (id, sentence, label, ...) to a column index; one clear error when a column is missing."""
    index: dict[str, int | None] = {}
    missing = []
    for role, name in wanted.items():
        positions = [i for i, col in enumerate(header) if col == name]
        if len(positions) > 1:
            raise DataFormatError(f"{path}: the header names column {name!r} {len(positions)} times "
                                  f"(columns: {header}); rename the duplicates.", path, 1)
        if positions:
            index[role] = positions[0]
        elif role in optional:
            index[role] = None
        else:
            missing.append(name)
    if missing:
        tab = "a tab" if delimiter == "\t" else repr(delimiter)
        hint = ""
        if len(header) == 1:
            for other, label in ((",", "comma"), (";", "semicolon"), ("|", "pipe")):
                if other in header[0] and other != delimiter:
                    hint = (f" The header is one single field containing {label}s: the file looks "
                            f"{label}-separated, but CS224N files are tab-separated. Convert it (e.g. "
                            f"pandas: read_csv(..., sep='{other}').to_csv(..., sep='\\t')) or set "
                            f"delimiter: '{other}' in the task spec.")
                    break
        if not hint:
            hint = (" If your file names these columns differently, map them with `columns` in the task spec, "
                    "e.g. columns: {label: my_label_column}.")
        raise DataFormatError(
            f"{path}: missing column(s) {missing}; the header (split on {tab}) has {header}.{hint}", path, 1)
    return index


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
    _check_mode(preprocess)
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
    index = _find_columns(path, header, wanted, optional, delimiter)
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

    def reject(rec: _Record, reason: str) -> None:
        if strict:
            raise DataFormatError(f"{path}, line {rec.line:,}: {reason}. (strict=True stops at the first bad "
                                  "row; strict=False skips such rows and lists them in the load report.)",
                                  path, rec.line)
        report.rejected.append(Rejection(rec.line, reason, _excerpt(rec.raw)))

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
