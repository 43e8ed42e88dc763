"""`mtkit data fetch` against a local HTTP server on 127.0.0.1: progress, resume, checksums, offline.

No test touches the outside network: every URL points at a server started on a free local port
(tests/_fetch_server.py).
"""
from __future__ import annotations

import hashlib
import random
import socket
from pathlib import Path

import pytest
from _fetch_server import serve

from mtkit.data import fetch as fetch_module
from mtkit.data.fetch import SUMS_FILE, FetchError, cli, fetch, read_sums, sha256_of

FIXTURES = Path(__file__).parent / "fixtures" / "fetch"


@pytest.fixture
def server():
    big = random.Random(0).randbytes(300_000)  # many chunks, so a cut lands mid-stream
    files = {p.name: p.read_bytes() for p in FIXTURES.glob("*.csv")}
    files["big.bin"] = big
    with serve(files) as (url, handler):
        yield url, handler


NAMES = ["tiny-sst-train.csv", "tiny-quora-dev.csv", "big.bin"]


def test_download_writes_files_and_checksums(server, tmp_path, capsys):
    url, handler = server
    result = fetch(tmp_path / "data", base_url=url, files=NAMES, progress=True, timeout=5)
    assert result.downloaded == NAMES
    for name in NAMES:
        assert (tmp_path / "data" / name).read_bytes() == handler.files[name]
    sums = read_sums(tmp_path / "data" / SUMS_FILE)
    assert sums == {n: hashlib.sha256(handler.files[n]).hexdigest() for n in NAMES}
    assert not list((tmp_path / "data").glob("*.part"))
    assert "big.bin" in capsys.readouterr().err  # the tqdm progress bar


def test_skip_when_complete_and_force(server, tmp_path):
    url, handler = server
    fetch(tmp_path, base_url=url, files=NAMES, progress=False, timeout=5)
    handler.requests.clear()
    again = fetch(tmp_path, base_url=url, files=NAMES, progress=False, timeout=5)
    assert again.skipped == NAMES and handler.requests == []  # verified from SHA256SUMS, nothing downloaded
    (tmp_path / "big.bin").write_bytes(b"corrupted")  # a damaged file no longer matches: fetched again
    repaired = fetch(tmp_path, base_url=url, files=NAMES, progress=False, timeout=5)
    assert repaired.downloaded == ["big.bin"] and (tmp_path / "big.bin").read_bytes() == handler.files["big.bin"]
    forced = fetch(tmp_path, base_url=url, files=NAMES, progress=False, timeout=5, force=True)
    assert forced.downloaded == NAMES


def test_interrupted_transfer_keeps_part_and_resumes(server, tmp_path):
    url, handler = server
    handler.cut_once.add("big.bin")
    with pytest.raises(FetchError) as err:
        fetch(tmp_path, base_url=url, files=["big.bin"], progress=False, timeout=5, retries=0)
    assert "interrupted" in str(err.value) and "resumes" in str(err.value)
    part = tmp_path / "big.bin.part"
    assert not (tmp_path / "big.bin").exists()  # never a truncated file under the final name
    kept = part.stat().st_size
    assert 0 < kept < len(handler.files["big.bin"])
    result = fetch(tmp_path, base_url=url, files=["big.bin"], progress=False, timeout=5)
    assert result.resumed == ["big.bin"]
    assert handler.requests[-1] == ("big.bin", f"bytes={kept}-")  # continued with an HTTP Range request
    assert (tmp_path / "big.bin").read_bytes() == handler.files["big.bin"] and not part.exists()


def test_dropped_connection_is_retried_with_resume(server, tmp_path):
    url, handler = server
    handler.cut_once.add("big.bin")
    result = fetch(tmp_path, base_url=url, files=["big.bin"], progress=False, timeout=5, retries=2)
    assert result.resumed == ["big.bin"] and sha256_of(tmp_path / "big.bin") == hashlib.sha256(
        handler.files["big.bin"]).hexdigest()
    assert [r for r in handler.requests if r[0] == "big.bin"][1][1] is not None


def test_server_that_ignores_range_restarts_cleanly(server, tmp_path):
    url, handler = server
    handler.ignore_range = True
    (tmp_path / "big.bin.part").write_bytes(handler.files["big.bin"][:1000])
    fetch(tmp_path, base_url=url, files=["big.bin"], progress=False, timeout=5)
    assert (tmp_path / "big.bin").read_bytes() == handler.files["big.bin"]


def test_checksum_failure_is_reported_and_not_kept(server, tmp_path):
    url, handler = server
    manifest = {"tiny-sst-train.csv": "0" * 64,
                "tiny-quora-dev.csv": hashlib.sha256(handler.files["tiny-quora-dev.csv"]).hexdigest()}
    with pytest.raises(FetchError) as err:
        fetch(tmp_path, base_url=url, files=list(manifest), manifest=manifest, progress=False, timeout=5)
    message = str(err.value)
    assert "tiny-sst-train.csv: checksum mismatch" in message and "0" * 64 in message
    assert not (tmp_path / "tiny-sst-train.csv").exists() and not (tmp_path / "tiny-sst-train.csv.part").exists()
    assert (tmp_path / "tiny-quora-dev.csv").is_file()  # the good file is kept


def test_manifest_file_in_sha256sum_format(server, tmp_path):
    url, handler = server
    sums = tmp_path / "manifest"
    sums.write_text("".join(f"{hashlib.sha256(handler.files[n]).hexdigest()}  {n}\n" for n in NAMES))
    result = fetch(tmp_path / "d", base_url=url, files=NAMES, manifest=sums, progress=False, timeout=5)
    assert result.downloaded == NAMES


def test_missing_file_on_server_is_named(server, tmp_path):
    url, _ = server
    with pytest.raises(FetchError, match=r"nope\.csv: the server answered HTTP 404.*--base-url"):
        fetch(tmp_path, base_url=url, files=["nope.csv"], progress=False, timeout=5)


def test_offline_fails_cleanly(tmp_path):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError) as err:
        fetch(tmp_path, base_url=f"http://127.0.0.1:{port}/data/", files=NAMES, progress=False, timeout=2)
    message = str(err.value)
    assert f"127.0.0.1:{port}/data/tiny-sst-train.csv" in message and "needs network access" in message
    assert "copy the files by hand" in message and err.value.__cause__ is None


def test_cli(server, tmp_path, capsys):
    url, _ = server
    code = cli(["--dest", str(tmp_path / "c"), "--base-url", url, "--files", *NAMES, "--no-progress"])
    assert code == 0 and (tmp_path / "c" / "big.bin").is_file()
    assert "downloaded 3" in capsys.readouterr().out
    code = cli(["data", "fetch", "--dest", str(tmp_path / "c"), "--base-url", url, "--files", *NAMES,
                "--no-progress"])
    assert code == 0 and "already complete 3" in capsys.readouterr().out
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = cli(["--dest", str(tmp_path / "off"), "--base-url", f"http://127.0.0.1:{port}/", "--timeout", "2"])
    captured = capsys.readouterr()
    assert code == 1 and "needs network access" in captured.err and "Traceback" not in captured.err


def test_default_url_points_at_the_public_starter_repository():
    import mtkit.data.fetch
    assert callable(mtkit.data.fetch.cli)  # the module, not shadowed by a function of the same name
    assert fetch_module.DEFAULT_BASE_URL.startswith(
        "https://raw.githubusercontent.com/gpoesia/minbert-default-final-project/")
    assert len(fetch_module.DEFAULT_FILES) == 9
