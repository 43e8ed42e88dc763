"""``mtkit data split``: carve one task file into several, seeded, with every input and output recorded by hash.

The Quora files of docs/RESULTS.md are such a carve: the public ``quora-train.csv`` (141k pairs) is not used,
and both ``quora-train.csv`` (16,000 pairs) and ``quora-dev.csv`` (4,214 pairs) are cut, after a shuffle with
seed 224, from the public 20,214-pair ``quora-dev.csv`` that ``mtkit data fetch`` downloads. The same kind of
carve, from any tab-separated task file into any number of parts::

    mtkit data split data/quora-dev.csv --into quora-train.csv=16000 --into quora-dev.csv=rest \\
        --seed 224 --dest data/results --copy data/ids-sst-*.csv data/sts-*.csv

``--into NAME=SIZE``: SIZE is a number of rows (``16000``), a fraction of them (``0.8`` or ``80%``), or
``rest`` (what the other parts leave; at most one part). The parts take consecutive slices of the shuffled
rows, in the order given, and keep the shuffled order. The sizes must account for every row (a ``rest``
part, or fractions adding up to 1): a row is never left out silently.

What is guaranteed:

- **seeded, and the same everywhere**: the shuffle orders the rows by the SHA-256 of ``"<seed>:<row>"``
  (``row`` counts data records from 0, the header excluded). That depends on no library's random-number
  stream, so any version of Python, NumPy or another language gives the same carve;
- **rows are carried byte for byte**: each record is copied with its own text (quoting, escapes, line endings),
  and the header goes at the top of every part; CSV quoting is honoured to find where a record ends;
- **malformed rows are carried and reported, never dropped**: a record with the wrong number of fields, an
  empty field under a named column, or a field holding a line break (an unbalanced quote) goes into its part
  like any other, and the report and the manifest name its line in the input and in the part (lines counted
  from 1, the header being line 1, as mtkit's load reports count them);
- **recorded**: ``<dest>/mtkit-split-<input>.json`` holds the command, the seed, the method, the SHA-256 and
  row count of the input, of each part and of each copied file, and the malformed rows; ``<dest>/SHA256SUMS``
  (``sha256sum -c SHA256SUMS`` checks the folder) lists every file written. Files are written atomically.

Taught in notebooks/01_setup_and_data.ipynb (finding and loading the data).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtkit.data.fetch import sha256_of
from mtkit.data.records import DataFormatError, decode_text, read_records

MANIFEST_FORMAT = "mtkit.data.split"
MANIFEST_VERSION = 1
METHOD = "rows ordered by the SHA-256 of '<seed>:<row>' (row: 0-based data record, header excluded)"
SUMS_FILE = "SHA256SUMS"


class SplitError(ValueError):
    """A split that cannot be done as asked; the message names what is wrong and what to do."""


@dataclass
class Malformed:
    """A record carried into a part although it does not look like a well-formed row."""
    input_line: int  # physical line in the input where the record starts (header = 1)
    part: str  # the output file it went to
    part_line: int  # physical line in that file where it starts (header = 1)
    reason: str


@dataclass
class SplitResult:
    """What :func:`split_file` wrote: the parts (name -> rows), the manifest and the malformed rows."""
    dest: Path
    manifest_path: Path
    manifest: dict
    malformed: list[Malformed] = field(default_factory=list)

    def __str__(self) -> str:
        inp = self.manifest["input"]
        lines = [f"{inp['name']}: {inp['rows']:,} rows, shuffled with seed {self.manifest['seed']}, into "
                 + ", ".join(f"{p['name']} ({p['rows']:,})" for p in self.manifest["parts"]) + f" in {self.dest}"]
        for copy in self.manifest["copied"]:
            lines.append(f"  copied unchanged: {copy['name']}")
        if self.malformed:
            lines.append(f"  {len(self.malformed)} malformed row(s), carried and not dropped:")
            for m in self.malformed:
                lines.append(f"    {m.part} line {m.part_line:,} (input line {m.input_line:,}): {m.reason}")
        lines.append(f"  hashes: {self.manifest_path.name} and {SUMS_FILE}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ sizes and order
def parse_part(item: str) -> tuple[str, str]:
    """``"quora-train.csv=16000"`` -> ``("quora-train.csv", "16000")``, the name checked to be a plain file name."""
    if "=" not in item:
        raise SplitError(f"--into {item!r}: write NAME=SIZE, e.g. --into quora-train.csv=16000 or "
                         "--into quora-dev.csv=rest.")
    name, size = (s.strip() for s in item.split("=", 1))
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise SplitError(f"--into {item!r}: the part's name must be a plain file name (it is written into --dest).")
    return name, size


def _size_value(name: str, text: str, rows: int) -> int | float | None:
    """A part's size: an int (rows), a float (fraction) or None (the rest)."""
    text = str(text).strip().lower()
    if text in ("rest", "*"):
        return None
    try:
        if text.endswith("%"):
            value = float(text[:-1]) / 100
        elif re.fullmatch(r"[+]?\d+", text):
            value = int(text)
            if value < 0:
                raise ValueError
            return value
        else:
            value = float(text)
    except ValueError:
        raise SplitError(f"part {name}: size {text!r} is not a number of rows, a fraction (0.8, 80%) or "
                         "'rest'.") from None
    if not 0 < value <= 1:
        raise SplitError(f"part {name}: a fraction must be in (0, 1] (got {text}); give a number of rows as a "
                         "whole number.")
    return value


def plan_sizes(parts: Sequence[tuple[str, object]], rows: int) -> list[int]:
    """The number of rows of each part; every row goes to exactly one part, or SplitError says why not."""
    if not parts:
        raise SplitError("no parts: give at least one --into NAME=SIZE.")
    names = [n for n, _ in parts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SplitError(f"part name(s) {duplicates} appear more than once; each part needs its own file name.")
    values = [_size_value(n, s, rows) for n, s in parts]
    rests = [i for i, v in enumerate(values) if v is None]
    if len(rests) > 1:
        raise SplitError("at most one part can be 'rest'.")
    sizes = [0] * len(parts)
    fractions = [i for i, v in enumerate(values) if isinstance(v, float)]
    for i, v in enumerate(values):
        if isinstance(v, int):
            sizes[i] = v
    for i in fractions:
        sizes[i] = int(values[i] * rows)
    if fractions and not rests and abs(sum(values[i] for i in fractions) - 1) < 1e-9 and len(fractions) == len(parts):
        # fractions adding up to 1: the rows that rounding down left over go to the largest remainders
        left = rows - sum(sizes)
        order = sorted(fractions, key=lambda i: (-(values[i] * rows - sizes[i]), i))
        for i in order[:left]:
            sizes[i] += 1
    taken = sum(sizes)
    if taken > rows:
        raise SplitError(f"the parts ask for {taken:,} rows but the input has {rows:,}.")
    if rests:
        sizes[rests[0]] = rows - taken
    elif taken < rows:
        raise SplitError(f"the parts take {taken:,} of the input's {rows:,} rows; add a part NAME=rest for the "
                         f"other {rows - taken:,} (no row is left out silently).")
    return sizes


def seeded_order(rows: int, seed: int) -> list[int]:
    """The shuffled order of ``rows`` records: sorted by SHA-256 of ``"<seed>:<row>"`` (see the module doc)."""
    return sorted(range(rows), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode("ascii")).digest())


# ------------------------------------------------------------------------------------------ files
def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _malformed_reason(fields: list[str], header: list[str], start: int, end: int) -> str | None:
    if end > start:
        return (f"a field holds a line break (the record spans lines {start:,}-{end:,}): most likely an "
                "unbalanced quote")
    if len(fields) != len(header):
        return f"{len(fields)} fields where the header has {len(header)}"
    empty = [name for name, value in zip(header, fields) if name and not value.strip()]
    if empty:
        return "empty " + " and ".join(repr(n) for n in empty)
    return None


def _read_sums(path: Path) -> dict[str, str]:
    sums = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split(maxsplit=1)
            if len(parts) == 2 and len(parts[0]) == 64:
                sums[parts[1].strip().lstrip("*")] = parts[0]
    return sums


def split_file(source: str | Path, parts: Sequence[tuple[str, object]] | dict, dest: str | Path, seed: int,
               copy: Sequence[str | Path] = (), force: bool = False, delimiter: str = "\t",
               encoding: str = "utf-8", command: str | None = None) -> SplitResult:
    """Shuffle the records of ``source`` with ``seed`` and write them into the ``parts`` in ``dest``.

    ``parts``: ``[(name, size), ...]`` or ``{name: size}``, a size being a row count, a fraction or ``"rest"``.
    ``copy``: other files copied unchanged into ``dest`` (and recorded). Existing files are replaced only with
    ``force``. Returns a :class:`SplitResult`; raises :class:`SplitError` (or DataFormatError for an unreadable
    input) before writing anything when the request cannot be met.
    """
    source = Path(source).expanduser()
    dest = Path(dest).expanduser()
    parts = list(parts.items()) if isinstance(parts, dict) else [tuple(p) for p in parts]
    copies = [Path(c).expanduser() for c in copy]
    if not source.is_file():
        raise SplitError(f"No input file {source}. Download the public files first (`mtkit data fetch --dest "
                         f"./data`) and give the path of the file to carve.")
    data = source.read_bytes()
    header, header_line, records = read_records(source, delimiter=delimiter, encoding=encoding)
    text = decode_text(source, data, encoding, [])
    if "\n" not in text and "\r" in text:
        text = text.replace("\r", "\n")
    physical = text.split("\n")
    raw_lines = [line + "\n" for line in physical[:-1]] + ([physical[-1]] if physical[-1] else [])
    head = "".join(raw_lines[:header_line])
    ending = "\r\n" if head.endswith("\r\n") else "\n"
    if data.startswith(b"\xef\xbb\xbf"):
        head = "\ufeff" + head
    if not records:
        raise SplitError(f"{source} has a header but no rows to split.")

    sizes = plan_sizes(parts, len(records))
    names = [n for n, _ in parts]
    for c in copies:
        if not c.is_file():
            raise SplitError(f"--copy {c}: no such file.")
        if c.name in names:
            raise SplitError(f"--copy {c}: its name is also a part's name; a file can be written once.")
    targets = [dest / n for n in names] + [dest / c.name for c in copies]
    if any(t.resolve() == source.resolve() for t in targets):
        raise SplitError(f"a part would overwrite the input {source}; choose another --dest (the parts may have "
                         "the input's name, but not in its folder).")
    for c in copies:
        if (dest / c.name).resolve() == c.resolve():
            raise SplitError(f"--copy {c}: it is already in --dest; nothing to copy.")
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise SplitError(f"{', '.join(str(t) for t in existing)} already exist(s); use --force to replace, or "
                         "another --dest.")

    order = seeded_order(len(records), seed)
    dest.mkdir(parents=True, exist_ok=True)
    malformed: list[Malformed] = []
    manifest_parts = []
    start = 0
    for (name, size_text), size in zip(parts, sizes):
        chunks = [head]
        line = header_line + 1  # the next physical line of the part
        for index in order[start:start + size]:
            rec = records[index]
            raw = "".join(raw_lines[rec.line - 1:rec.end_line])
            if not raw.endswith("\n"):
                raw += ending  # the input's last line had no line break
            reason = _malformed_reason(rec.fields, header, rec.line, rec.end_line)
            if reason is not None:
                malformed.append(Malformed(rec.line, name, line, reason))
            chunks.append(raw)
            line += rec.end_line - rec.line + 1
        body = "".join(chunks).encode(encoding)
        _atomic_write(dest / name, body)
        manifest_parts.append({"name": name, "size": str(size_text), "rows": size,
                               "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})
        start += size
    copied = []
    for c in copies:
        tmp = dest / f".{c.name}.part"
        shutil.copyfile(c, tmp)
        os.replace(tmp, dest / c.name)
        copied.append({"name": c.name, "bytes": c.stat().st_size, "sha256": sha256_of(dest / c.name)})

    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "command": command or _command(source, parts, dest, seed, copies),
        "seed": seed, "method": METHOD,
        "input": {"name": source.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                  "rows": len(records), "header": header},
        "parts": manifest_parts, "copied": copied,
        "malformed": [m.__dict__ for m in malformed],
    }
    manifest_path = dest / f"mtkit-split-{source.stem}.json"
    _atomic_write(manifest_path, (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    sums = _read_sums(dest / SUMS_FILE)
    sums.update({p["name"]: p["sha256"] for p in manifest_parts} | {c["name"]: c["sha256"] for c in copied})
    _atomic_write(dest / SUMS_FILE, "".join(f"{sums[n]}  {n}\n" for n in sorted(sums)).encode("utf-8"))
    return SplitResult(dest, manifest_path, manifest, malformed)


def _command(source: Path, parts, dest: Path, seed: int, copies: Sequence[Path]) -> str:
    words = ["mtkit", "data", "split", str(source)]
    for name, size in parts:
        words += ["--into", f"{name}={size}"]
    words += ["--seed", str(seed), "--dest", str(dest)]
    if copies:
        words += ["--copy", *map(str, copies)]
    return " ".join(shlex.quote(w) for w in words)


# ------------------------------------------------------------------------------------------ command line
def build_parser(prog: str = "mtkit data split") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Carve one tab-separated task file into parts after a seeded shuffle, and record "
                               "the SHA-256 of the input and of every file written (e.g. the Quora files of "
                               "docs/RESULTS.md from the public quora-dev.csv).",
        epilog="example: mtkit data split data/quora-dev.csv --into quora-train.csv=16000 --into "
               "quora-dev.csv=rest --seed 224 --dest data/results --copy data/ids-sst-*.csv data/sts-*.csv")
    parser.add_argument("source", help="the file to carve")
    parser.add_argument("--into", action="append", required=True, metavar="NAME=SIZE",
                        help="a part: file name and size (rows, a fraction such as 0.8 or 80%%, or 'rest'); repeat")
    parser.add_argument("--seed", type=int, required=True, help="the shuffle's seed (the RESULTS carve: 224)")
    parser.add_argument("--dest", required=True, help="folder to write the parts into")
    parser.add_argument("--copy", nargs="+", default=[], metavar="FILE",
                        help="other files to copy unchanged into --dest (and record), e.g. the SST and STS files")
    parser.add_argument("--force", action="store_true", help="replace files that already exist in --dest")
    return parser


def cli(argv: Sequence[str] | None = None) -> int:
    """``mtkit data split SOURCE --into NAME=SIZE ... --seed N --dest DIR``; returns the exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:2] == ["data", "split"]:
        args_in = args_in[2:]
    elif args_in[:1] == ["split"]:
        args_in = args_in[1:]
    args = build_parser().parse_args(args_in)
    try:
        parts = [parse_part(item) for item in args.into]
        result = split_file(args.source, parts, args.dest, args.seed, copy=args.copy, force=args.force,
                            command="mtkit data split " + " ".join(shlex.quote(a) for a in args_in))
    except (SplitError, DataFormatError) as err:
        print(f"mtkit data split: {err}", file=sys.stderr)
        return 2
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
