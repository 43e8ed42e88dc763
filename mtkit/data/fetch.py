"""``mtkit data fetch``: download the public CS224N task files into a folder, safely.

The files come from the public repository of the CS224N default final project (minBERT), folder ``data/``
(``DEFAULT_BASE_URL``). Honest note: that public ``quora-train.csv`` is the full ~141k-pair Quora train set,
so it differs from course folders that carve a smaller train set out of the dev file (``mtkit data split``,
:mod:`mtkit.data.split`, writes such a carve, seeded and recorded by hash).

What the download does:

- **progress**: a tqdm bar per file;
- **atomic writes**: bytes go to ``<name>.part``, which is renamed over ``<name>`` only when complete and
  verified, so an interrupted run never leaves a truncated file under the real name;
- **resume**: an existing ``.part`` is continued with an HTTP ``Range`` request (and dropped transfers are
  retried, resuming, ``retries`` times);
- **skip when complete**: a file already present whose SHA-256 matches the manifest or the folder's
  ``SHA256SUMS`` (and size, when the manifest gives one) is not downloaded again; ``force=True`` re-downloads;
- **checksums**: verified when a manifest gives them (a mismatch is reported and the bad bytes are not kept
  under the final name); every downloaded file's SHA-256 is written to ``<dest>/SHA256SUMS`` (the format of
  ``sha256sum``, so ``sha256sum -c SHA256SUMS`` checks the folder later);
- **offline**: one clear error naming the URL, saying that the command needs the network, or that the files can
  be copied into the folder by hand.

Usage: ``mtkit data fetch --dest ./data`` or ``python -m mtkit.data.fetch --dest ./data``.

Taught in notebooks/01_setup_and_data.ipynb.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/gpoesia/minbert-default-final-project/HEAD/data/"
DEFAULT_FILES = [
    "ids-sst-train.csv", "ids-sst-dev.csv", "ids-sst-test-student.csv",
    "quora-train.csv", "quora-dev.csv", "quora-test-student.csv",
    "sts-train.csv", "sts-dev.csv", "sts-test-student.csv",
]
CFIMDB_FILES = ["ids-cfimdb-train.csv", "ids-cfimdb-dev.csv", "ids-cfimdb-test-student.csv"]
SUMS_FILE = "SHA256SUMS"
CHUNK = 64 * 1024


class FetchError(RuntimeError):
    """A download that failed; the message says what happened and what to do."""


@dataclass
class FetchResult:
    dest: Path
    downloaded: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # downloaded by continuing a .part file
    skipped: list[str] = field(default_factory=list)  # already complete
    unverified: list[str] = field(default_factory=list)  # present, kept, but no checksum was known to check it

    def __str__(self) -> str:
        lines = [f"{self.dest}: downloaded {len(self.downloaded)}, already complete {len(self.skipped)}"]
        if self.resumed:
            lines.append(f"  resumed from a partial download: {', '.join(self.resumed)}")
        if self.unverified:
            lines.append(f"  kept as found, without a checksum to verify them: {', '.join(self.unverified)} "
                         "(use --force to download them again)")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ checksums
def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_sums(path: str | Path) -> dict[str, str]:
    """A ``sha256sum``-style file (``<hex>  <name>`` per line) as {name: hex}."""
    path = Path(path)
    sums: dict[str, str] = {}
    if not path.is_file():
        return sums
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise FetchError(f"{path}, line {number}: expected '<sha256 hex>  <file name>', found {line[:80]!r}.")
        sums[parts[1].strip().lstrip("*")] = parts[0].lower()
    return sums


def _write_sums(path: Path, sums: Mapping[str, str]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("".join(f"{sums[name]}  {name}\n" for name in sorted(sums)), encoding="utf-8")
    os.replace(tmp, path)


def _expected(manifest: Mapping | None, name: str) -> tuple[str | None, int | None]:
    if not manifest or name not in manifest:
        return None, None
    entry = manifest[name]
    if isinstance(entry, str):
        return entry.lower(), None
    if isinstance(entry, Mapping):
        sha = entry.get("sha256")
        return (sha.lower() if sha else None), entry.get("size")
    raise FetchError(f"manifest entry for {name} must be a sha256 string or {{'sha256': ..., 'size': ...}}.")


# ------------------------------------------------------------------------------------------ transfer
def _offline_message(url: str, reason: object, dest: Path, names: Sequence[str]) -> str:
    return (f"Could not reach {url} ({reason}). `mtkit data fetch` needs network access to download the CS224N "
            f"files. If this machine is offline, copy the files by hand into {dest} (expected: "
            f"{', '.join(names)}), or use the demo set, which needs no download.")


def _download_one(url: str, part: Path, total_hint: int | None, progress: bool, timeout: float,
                  name: str) -> bool:
    """Fetch ``url`` into ``part``, continuing it when it already holds bytes. Returns True when resumed.

    Raises ``_Interrupted`` when the connection drops (the .part keeps what arrived), urllib errors otherwise.
    """
    from tqdm.auto import tqdm  # imported here: tqdm is needed only when a progress bar is shown

    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "mtkit-data-fetch"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: the .part may already be whole
            content_range = err.headers.get("Content-Range", "")
            size = content_range.rpartition("/")[2]
            if size.isdigit() and int(size) == offset:
                return True
            part.unlink()  # larger than the file, or unknown: start again
            return _download_one(url, part, total_hint, progress, timeout, name)
        raise
    resumed = False
    with response:
        if offset and response.status == 206:
            resumed = True
            mode = "ab"
        else:  # 200: the server sent the whole file (it ignored the Range), so start over
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        expected_here = int(length) if length and length.isdigit() else None
        total = offset + expected_here if expected_here is not None else total_hint
        received = 0
        with open(part, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                           desc=name, disable=not progress, leave=True) as bar:
            try:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as err:
                out.flush()
                raise _Interrupted(f"{type(err).__name__}: {err}") from None
        if expected_here is not None and received < expected_here:
            raise _Interrupted(f"the connection closed after {received:,} of {expected_here:,} bytes")
    return resumed


class _Interrupted(Exception):
    pass


class _Failed(Exception):
    pass


def _download_with_retries(url: str, part: Path, size: int | None, progress: bool, timeout: float, name: str,
                           retries: int) -> bool:
    """Download, resuming after dropped connections up to ``retries`` times. Returns True if any resume."""
    resumed = False
    for _attempt in range(retries + 1):
        try:
            return _download_one(url, part, size, progress, timeout, name) or resumed
        except _Interrupted as err:
            resumed = True  # the next attempt continues the .part
            last = err
        except urllib.error.HTTPError as err:
            hint = " Check --base-url." if err.code == 404 else ""
            raise _Failed(f"the server answered HTTP {err.code} {err.reason} for {url}.{hint}") from None
    kept = part.stat().st_size if part.exists() else 0
    raise _Failed(f"the transfer was interrupted ({last}) {retries + 1} time(s); {kept:,} bytes are kept in "
                  f"{part.name}, so running the command again resumes it")


def fetch(dest: str | Path, base_url: str = DEFAULT_BASE_URL, files: Sequence[str] | None = None,
          manifest: Mapping | str | Path | None = None, progress: bool = True, timeout: float = 60.0,
          force: bool = False, retries: int = 3) -> FetchResult:
    """Download ``files`` (default: the nine CS224N task files) from ``base_url`` into ``dest``.

    ``manifest``: {name: sha256} or {name: {"sha256": ..., "size": ...}}, or the path of a ``SHA256SUMS``
    file; files it lists are verified. Raises :class:`FetchError` (naming the files and what to do) when
    something could not be downloaded; files that did succeed stay in place.
    """
    dest = Path(dest).expanduser()
    names = list(files) if files else list(DEFAULT_FILES)
    for name in names:
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise FetchError(f"File name {name!r} must be a plain name inside the data folder.")
    if isinstance(manifest, (str, Path)):
        manifest = read_sums(manifest)
    dest.mkdir(parents=True, exist_ok=True)
    sums_path = dest / SUMS_FILE
    recorded = read_sums(sums_path)
    base = base_url if base_url.endswith("/") else base_url + "/"
    result = FetchResult(dest)
    failures: list[str] = []

    for name in names:
        final, part = dest / name, dest / (name + ".part")
        sha, size = _expected(manifest, name)
        if force:
            part.unlink(missing_ok=True)
        elif final.is_file():
            known = sha or recorded.get(name)
            if known is None:
                result.unverified.append(name)
                continue
            if sha256_of(final) == known and (size is None or final.stat().st_size == size):
                result.skipped.append(name)
                continue
            # present but wrong: download again (the old file stays until the new one is verified)
        url = base + urllib.parse.quote(name)
        try:
            resumed = _download_with_retries(url, part, size, progress, timeout, name, retries)
        except _Failed as err:
            failures.append(f"{name}: {err}")
            continue
        except urllib.error.URLError as err:
            raise FetchError(_offline_message(url, err.reason, dest, names)) from None
        except (TimeoutError, ConnectionError) as err:
            raise FetchError(_offline_message(url, err, dest, names)) from None
        got = sha256_of(part)
        if sha is not None and got != sha:
            part.unlink()
            failures.append(f"{name}: checksum mismatch (expected sha256 {sha}, got {got}); the download was "
                            "discarded. The file on the server changed or the transfer was corrupted: try again, "
                            "or update the manifest if the new file is right")
            continue
        if size is not None and part.stat().st_size != size:
            part.unlink()
            failures.append(f"{name}: expected {size:,} bytes, got a different size; the download was discarded")
            continue
        os.replace(part, final)
        recorded[name] = got
        _write_sums(sums_path, recorded)
        result.downloaded.append(name)
        if resumed:
            result.resumed.append(name)

    if failures:
        raise FetchError(f"Could not fetch {len(failures)} of {len(names)} file(s) into {dest}:\n  - "
                         + "\n  - ".join(failures))
    return result


# ------------------------------------------------------------------------------------------ command line
def build_parser(prog: str = "mtkit data fetch") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Download the public CS224N default-final-project data files (SST-5, Quora, "
                               "STS-B) into a folder.")
    parser.add_argument("--dest", default="./data", help="folder to write into (default: ./data)")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"where the files are (default: {DEFAULT_BASE_URL})")
    parser.add_argument("--force", action="store_true", help="download again even when a file is complete")
    parser.add_argument("--files", nargs="+", default=None, metavar="NAME", help="only these file names")
    parser.add_argument("--with-cfimdb", action="store_true", help="also the binary CFIMDB sentiment files")
    parser.add_argument("--manifest", default=None, help="a SHA256SUMS file to verify the downloads against")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server (default 60)")
    parser.add_argument("--retries", type=int, default=3, help="times to resume a dropped transfer (default 3)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def cli(argv: Sequence[str] | None = None) -> int:
    """``mtkit data fetch [--dest DIR] [--base-url URL] [--force] ...``; returns the exit code.

    ``argv`` is the list of arguments after ``mtkit data fetch`` (a leading ``data fetch`` is tolerated).
    """
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:2] == ["data", "fetch"]:
        args_in = args_in[2:]
    elif args_in[:1] == ["fetch"]:
        args_in = args_in[1:]
    args = build_parser().parse_args(args_in)
    files = list(args.files) if args.files else list(DEFAULT_FILES)
    if args.with_cfimdb:
        files += [f for f in CFIMDB_FILES if f not in files]
    try:
        result = fetch(args.dest, base_url=args.base_url, files=files, manifest=args.manifest,
                       progress=not args.no_progress, timeout=args.timeout, force=args.force, retries=args.retries)
    except FetchError as err:
        print(f"mtkit data fetch: {err}", file=sys.stderr)
        return 1
    print(result)
    if args.base_url == DEFAULT_BASE_URL and "quora-train.csv" in result.downloaded:
        print("Note: the public quora-train.csv is the full ~141k-pair Quora train set. The Quora files of "
              "docs/RESULTS.md are carved from the public quora-dev.csv instead: `mtkit data split` writes that "
              "carve (the command is in docs/RESULTS.md).")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
