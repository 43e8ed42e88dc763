"""The examples, the report of what was rejected, and reading a delimited file into raw records (encodings,
quotes, ragged lines) before any column is interpreted."""
from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

__all__ = ['Record', 'check_preprocess_mode', 'excerpt', 'decode_text', 'find_columns', 'PREPROCESS_MODES', 'SentenceExample', 'PairExample', 'Rejection', 'DataFormatError', 'LoadReport', 'cs224n_preprocess_string', 'preprocess_single', 'preprocess_pair', 'read_records']

PREPROCESS_MODES = ("cs224n", "none")


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
    check_preprocess_mode(mode)
    return s.lower().strip() if mode == "cs224n" else s


def preprocess_pair(s: str, mode: str = "cs224n") -> str:
    """One side of a pair as the CS224N starter prepares it (``preprocess_string``), or untouched."""
    check_preprocess_mode(mode)
    return cs224n_preprocess_string(s) if mode == "cs224n" else s


def check_preprocess_mode(mode: str) -> None:
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"preprocess={mode!r} is not known; use one of {PREPROCESS_MODES}.")


# --------------------------------------------------------------------------------------------- low level
class Record(NamedTuple):
    line: int  # physical line where the record starts (header = 1)
    end_line: int  # physical line where it ends
    fields: list[str]
    raw: str  # the first physical line, without its line ending


def excerpt(raw: str, limit: int = 110) -> str:
    """The start and the end of a long line (the end is where truncation and empty fields show)."""
    raw = raw.rstrip("\r\n")
    return raw if len(raw) <= limit else raw[:limit - 40] + " ... " + raw[-35:]


def decode_text(path: Path, data: bytes, encoding: str, notes: list[str]) -> str:
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
                 notes: list[str] | None = None) -> tuple[list[str], int, list[Record]]:
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
    text = decode_text(path, data, encoding, notes)
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
    records: list[Record] = []
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
        records.append(Record(start, end, fields, raw))
    if header is None:  # pragma: no cover - text.strip() was non-empty, so csv found something
        raise DataFormatError(f"{path} has no header row.", path)
    if blank_lines:
        shown = ", ".join(f"{n:,}" for n in blank_lines[:5]) + (" ..." if len(blank_lines) > 5 else "")
        trailing = all(n > (records[-1].end_line if records else header_line) for n in blank_lines)
        notes.append(f"{len(blank_lines)} blank line(s) skipped (line {shown})"
                     + (" at the end of the file" if trailing else ""))
    return header, header_line, records


def find_columns(path: Path, header: list[str], wanted: dict[str, str], optional: Sequence[str],
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
