"""`mtkit data split` on files fetched from a local server: seeded, byte-exact, malformed rows carried and
reported, every input and output recorded by SHA-256."""
from __future__ import annotations

import collections
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _fetch_server import serve

from mtkit.data.fetch import read_sums
from mtkit.data.readers import load_examples
from mtkit.data.split import SplitError, plan_sizes, split_file

REPO = Path(__file__).resolve().parents[1]
ROWS = 60
BAD = {7: "empty-label", 23: "short", 41: "unbalanced-quote"}  # 0-based data records that are malformed


def fake_public_quora_dev() -> bytes:
    """A public-style quora-dev.csv: CRLF line endings, CSV quoting, non-ASCII text, and three malformed rows
    (an empty label, a row with a field missing, an unbalanced quote whose field runs over a line break)."""
    lines = ["\tid\tsentence1\tsentence2\tis_duplicate"]
    for i in range(ROWS):
        first = f'"How do I say ""hello"" in café {i}?"' if i % 5 == 0 else f"What is question {i}?"
        label = f"{float(i % 2)}"
        if BAD.get(i) == "empty-label":
            lines.append(f"{1000 + i}\tq{i:03d}\t{first}\tWhat is answer {i}?\t")
        elif BAD.get(i) == "short":
            lines.append(f"{1000 + i}\tq{i:03d}\t{first}\t{label}")
        elif BAD.get(i) == "unbalanced-quote":
            lines.append(f'{1000 + i}\tq{i:03d}\t"An open quote, {i}\tand the rest\r\nof it" here\t{label}')
        else:
            lines.append(f"{1000 + i}\tq{i:03d}\t{first}\tWhat is answer {i}?\t{label}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def fake_sst(split: str) -> bytes:
    rows = [f"{i}\ts{split}{i}\t a sentence number {i} .\t{i % 5}" for i in range(12)]
    return ("\tid\tsentence\tsentiment\n" + "\n".join(rows) + "\n").encode("utf-8")


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO))


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """The fake public files, downloaded with `mtkit data fetch` from a server on 127.0.0.1."""
    files = {"quora-dev.csv": fake_public_quora_dev(), "ids-sst-train.csv": fake_sst("train"),
             "ids-sst-dev.csv": fake_sst("dev")}
    dest = tmp_path_factory.mktemp("fetched") / "data"
    with serve(files) as (url, _):
        done = subprocess.run([sys.executable, "-m", "mtkit", "data", "fetch", "--dest", str(dest), "--base-url", url,
                               "--files", *files, "--no-progress"], env=env(), capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stderr
    return dest


def records(data: bytes) -> list[bytes]:
    """The data records of a file as byte strings (CSV quoting honoured, so a quoted line break stays inside)."""
    out, current, quoted = [], b"", False
    for line in data.split(b"\n")[1:]:
        if not line and not current:
            continue
        current += line + b"\n"
        quoted ^= line.count(b'"') % 2 == 1
        if not quoted:
            out.append(current)
            current = b""
    return out


def reference_order(n: int, seed: int) -> list[int]:
    """The documented method, written out again: rows sorted by SHA-256 of '<seed>:<row>'."""
    keys = {i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in range(n)}
    return sorted(range(n), key=keys.__getitem__)


def run_split(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtkit", "data", "split", *map(str, args)], env=env(),
                          capture_output=True, text=True, timeout=120)


def test_the_results_kind_of_carve_from_the_fetched_file(fetched, tmp_path):
    dest = tmp_path / "carved"
    done = run_split(fetched / "quora-dev.csv", "--into", "quora-train.csv=45", "--into", "quora-dev.csv=rest",
                     "--seed", 224, "--dest", dest, "--copy", fetched / "ids-sst-train.csv", fetched / "ids-sst-dev.csv")
    assert done.returncode == 0, done.stderr
    source = (fetched / "quora-dev.csv").read_bytes()
    train, dev = (dest / "quora-train.csv").read_bytes(), (dest / "quora-dev.csv").read_bytes()
    header = source.split(b"\n")[0] + b"\n"
    assert train.startswith(header) and dev.startswith(header)
    src, got_train, got_dev = records(source), records(train), records(dev)
    assert len(src) == ROWS and (len(got_train), len(got_dev)) == (45, 15)
    # every row carried byte for byte, none lost or doubled, in the documented seeded order
    order = reference_order(ROWS, 224)
    assert got_train + got_dev == [src[i] for i in order]
    assert collections.Counter(got_train + got_dev) == collections.Counter(src)

    manifest = json.loads((dest / "mtkit-split-quora-dev.json").read_text())
    sums = read_sums(fetched / "SHA256SUMS")  # what the fetch recorded
    assert manifest["input"]["sha256"] == hashlib.sha256(source).hexdigest() == sums["quora-dev.csv"]
    assert manifest["input"]["rows"] == ROWS and manifest["seed"] == 224
    for part in manifest["parts"]:
        assert part["sha256"] == hashlib.sha256((dest / part["name"]).read_bytes()).hexdigest()
    assert [(p["name"], p["rows"]) for p in manifest["parts"]] == [("quora-train.csv", 45), ("quora-dev.csv", 15)]
    assert {c["name"]: c["sha256"] for c in manifest["copied"]} == {n: sums[n] for n in ("ids-sst-train.csv",
                                                                                         "ids-sst-dev.csv")}
    assert (dest / "ids-sst-train.csv").read_bytes() == (fetched / "ids-sst-train.csv").read_bytes()
    written = read_sums(dest / "SHA256SUMS")
    assert set(written) == {"quora-train.csv", "quora-dev.csv", "ids-sst-train.csv", "ids-sst-dev.csv"}
    assert all(written[n] == hashlib.sha256((dest / n).read_bytes()).hexdigest() for n in written)

    # malformed rows: carried, and reported at the line where mtkit's own reader rejects them
    reported = manifest["malformed"]
    assert sorted(m["input_line"] for m in reported) == sorted(i + 2 for i in BAD)
    assert len(done.stdout.split("malformed row(s), carried")) == 2
    for part in ("quora-train.csv", "quora-dev.csv"):
        _, report = load_examples(dest / part, "pair_classification", preprocess="none")
        assert sorted(r.line for r in report.rejected) == sorted(m["part_line"] for m in reported
                                                                 if m["part"] == part)
        for m in (m for m in reported if m["part"] == part):
            assert f"{part} line {m['part_line']:,} (input line {m['input_line']:,})" in done.stdout
    assert report.rows_read + load_examples(dest / "quora-train.csv", "pair_classification")[1].rows_read == ROWS


def test_same_seed_same_bytes_and_another_seed_another_order(fetched, tmp_path):
    parts = [("a.csv", "0.75"), ("b.csv", "25%")]
    first = split_file(fetched / "quora-dev.csv", parts, tmp_path / "one", seed=7)
    again = split_file(fetched / "quora-dev.csv", parts, tmp_path / "two", seed=7)
    other = split_file(fetched / "quora-dev.csv", parts, tmp_path / "three", seed=8)
    assert [p["rows"] for p in first.manifest["parts"]] == [45, 15]
    assert [p["sha256"] for p in first.manifest["parts"]] == [p["sha256"] for p in again.manifest["parts"]]
    assert [p["sha256"] for p in first.manifest["parts"]] != [p["sha256"] for p in other.manifest["parts"]]


@pytest.mark.parametrize("sizes, rows, expected", [
    ([("a", "16000"), ("b", "rest")], 20214, [16000, 4214]),
    ([("a", "0.8"), ("b", "0.1"), ("c", "0.1")], 11, [9, 1, 1]),  # fractions adding to 1 take every row
    ([("a", "0.5"), ("b", "rest")], 7, [3, 4]),
    ([("a", "3"), ("b", "50%"), ("c", "rest")], 10, [3, 5, 2]),
])
def test_sizes(sizes, rows, expected):
    assert plan_sizes(sizes, rows) == expected and sum(expected) == rows


@pytest.mark.parametrize("sizes, message", [
    ([("a", "10")], r"take 10 of the input's 60 rows; add a part NAME=rest for the other 50"),
    ([("a", "50"), ("b", "20")], r"ask for 70 rows but the input has 60"),
    ([("a", "rest"), ("b", "rest")], r"at most one part can be 'rest'"),
    ([("a", "1.5")], r"a fraction must be in \(0, 1\]"),
    ([("a", "lots")], r"size 'lots' is not a number of rows"),
    ([("a", "rest"), ("a", "5")], r"appear more than once"),
])
def test_sizes_that_cannot_be_met_are_refused_before_writing(fetched, tmp_path, sizes, message):
    with pytest.raises(SplitError, match=message):
        split_file(fetched / "quora-dev.csv", sizes, tmp_path / "out", seed=1)
    assert not (tmp_path / "out").exists()


def test_the_input_and_existing_files_are_never_overwritten(fetched, tmp_path):
    source = fetched / "quora-dev.csv"
    before = source.read_bytes()
    done = run_split(source, "--into", "quora-train.csv=0.5", "--into", "quora-dev.csv=rest", "--seed", 224,
                     "--dest", fetched)
    assert done.returncode == 2 and "would overwrite the input" in done.stderr and "Traceback" not in done.stderr
    assert source.read_bytes() == before and not (fetched / "quora-train.csv").exists()
    split_file(source, [("x.csv", "rest")], tmp_path, seed=1)
    with pytest.raises(SplitError, match="already exist.*--force"):
        split_file(source, [("x.csv", "rest")], tmp_path, seed=2)
    assert split_file(source, [("x.csv", "rest")], tmp_path, seed=2, force=True).manifest["seed"] == 2
    done = run_split(tmp_path / "nope.csv", "--into", "x.csv=rest", "--seed", 1, "--dest", tmp_path / "o")
    assert done.returncode == 2 and "mtkit data fetch" in done.stderr
