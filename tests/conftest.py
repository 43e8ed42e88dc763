"""Shared fixtures: where the real CS224N data is, and a skip with a clear reason when it is not."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REAL_DATA_FILES = ("ids-sst-train.csv", "ids-sst-dev.csv", "quora-train.csv", "quora-dev.csv",
                   "sts-train.csv", "sts-dev.csv")


def real_data_dir() -> Path | None:
    """MTKIT_DATA if set, else ../shared/data beside the repository; None when the files are not there."""
    candidates = [os.environ.get("MTKIT_DATA"), REPO.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and all((Path(candidate) / name).is_file() for name in REAL_DATA_FILES):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = real_data_dir()
    if path is None:
        pytest.skip("CS224N data not found: set MTKIT_DATA to a folder holding ids-sst-*.csv, quora-*.csv and "
                    "sts-*.csv (CI uses ../shared/data)")
    return path


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep the thread count stable so timings and numerics do not depend on a previous test."""
    import torch
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield


@pytest.fixture()
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine OpenMP's spinning threads make a
    tiny backward pass 40x slower: a test module that uses this (``pytestmark = pytest.mark.usefixtures(
    "one_thread")``) runs on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
