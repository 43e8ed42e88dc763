"""Checkpoints: exact state round trips, atomic writes, crash consistency, no unpickling."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mtkit.train.checkpoint import (
    CheckpointError,
    CheckpointStore,
    flatten_state,
    read_checkpoint,
    resolve,
    unflatten_state,
    verify,
    write_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]


def _roundtrip(state):
    skeleton, tensors = flatten_state(state)
    text = json.dumps(skeleton)  # must be plain JSON
    return unflatten_state(json.loads(text), tensors)


def test_state_roundtrip_keeps_types_and_values():
    """Tuples, int-keyed dicts, NumPy arrays, tensors, bytes and nested lists come back equal and typed."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "opt": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 3)}},
                "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0], "name": "heads.*"}]},
        "nested": [1, 2.5, None, True, "x", (1, (2, 3))],
        "raw": b"\x00\x01",
        "nan": float("nan"),
    }
    back = _roundtrip(state)
    assert back["python"] == state["python"]
    assert isinstance(back["python"], tuple) and isinstance(back["python"][1], tuple)
    assert back["numpy"][0] == "MT19937" and back["numpy"][1].dtype == np.uint32
    np.testing.assert_array_equal(back["numpy"][1], state["numpy"][1])
    assert torch.equal(back["torch"], state["torch"])
    assert list(back["opt"]["state"]) == [0]  # int key stays int
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], state["opt"]["state"][0]["exp_avg"])
    assert back["opt"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["nested"] == state["nested"] and back["raw"] == b"\x00\x01"
    assert np.isnan(back["nan"])


def test_state_rejects_objects_json_cannot_hold():
    with pytest.raises(TypeError, match=r"state\.fn: a function cannot be stored"):
        flatten_state({"fn": lambda: 1})


def test_rng_states_restore_the_same_draws():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    saved = _roundtrip({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.setstate(saved["python"]), np.random.set_state(saved["numpy"]), torch.set_rng_state(saved["torch"])
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[0] == again[0] and expected[1] == again[1] and torch.equal(expected[2], again[2])


@pytest.mark.parametrize("kind", ["mtkit", "torch"])
def test_optimizer_state_roundtrip_continues_bit_for_bit(tmp_path, kind):
    """An optimizer restored from a checkpoint takes exactly the step the original takes."""
    from mtkit.optim import AdamW

    def make(params):
        return AdamW(params, lr=1e-2, weight_decay=0.1) if kind == "mtkit" else torch.optim.AdamW(params, lr=1e-2)

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = make([w])
    for _ in range(3):
        w.grad = torch.randn(4, 3)
        opt.step()
    folder = write_checkpoint(tmp_path / "ck", {"w": w.detach()}, {"optimizer": opt.state_dict()}, step=3)
    loaded = read_checkpoint(folder)
    w2 = torch.nn.Parameter(loaded.model["w"].clone())
    opt2 = make([w2])
    opt2.load_state_dict(loaded.state["optimizer"])
    grad = torch.randn(4, 3)
    w.grad, w2.grad = grad.clone(), grad.clone()
    opt.step(), opt2.step()
    assert torch.equal(w, w2)


def test_store_keeps_previous_and_prunes(tmp_path):
    store = CheckpointStore(tmp_path, keep=1)
    for step in (1, 2, 3):
        store.save(step, {"w": torch.full((2,), float(step))}, {"step": step}, {"lr": 1.0})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["latest.json", "step-00000002", "step-00000003"]
    assert store.latest().name == "step-00000003"
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 3
    ck = store.load_latest()
    assert ck.step == 3 and torch.equal(ck.model["w"], torch.full((2,), 3.0)) and ck.config == {"lr": 1.0}
    assert resolve(tmp_path) == tmp_path / "step-00000003"


def test_damaged_checkpoint_is_detected_and_skipped(tmp_path):
    store = CheckpointStore(tmp_path, keep=1)
    store.save(1, {"w": torch.zeros(2)}, {}, {})
    newest = store.save(2, {"w": torch.ones(2)}, {}, {})
    with open(newest / "mtkit_model.safetensors", "r+b") as fh:  # flip bytes, same size
        fh.seek(-4, os.SEEK_END)
        fh.write(b"\xff\xff\xff\xff")
    with pytest.raises(CheckpointError, match="SHA-256"):
        verify(newest)
    (newest / "state.json").unlink()
    with pytest.raises(CheckpointError, match="state.json is missing"):
        verify(newest, check_hash=False)
    assert store.latest().name == "step-00000001"  # the pointer's target is damaged: fall back
    assert [(r.path.name, r.reason) for r in store.rejected] == [("step-00000002", "state.json is missing")]
    ck = store.load_latest()
    assert ck.step == 1 and [str(r) for r in ck.rejected] == [  # load_latest checks the hashes too
        "step-00000002 rejected: mtkit_model.safetensors does not match its SHA-256 in manifest.json (its bytes "
        "changed: damaged)"]


def test_no_pickle_is_ever_loaded(tmp_path, monkeypatch):
    """Reading a checkpoint never calls torch.load or pickle."""
    import pickle
    folder = write_checkpoint(tmp_path / "ck", {"w": torch.ones(2)}, {"t": torch.zeros(1), "x": (1, 2)}, {"a": 1})

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    ck = read_checkpoint(folder)
    assert ck.state["x"] == (1, 2)
    assert {p.suffix for p in folder.iterdir()} <= {".safetensors", ".json"}


CRASH_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    import mtkit.train.checkpoint as ck
    root, point = sys.argv[1], sys.argv[2]
    store = ck.CheckpointStore(root, keep=1)
    store.save(1, {"w": torch.zeros(1000)}, {"step": 1}, {"run": "a"})
    def hook(name):
        if name == point:
            os._exit(17)  # dies like a SIGKILL: no cleanup, no flush of Python buffers
    ck._WRITE_HOOK = hook
    store.save(2, {"w": torch.ones(1000)}, {"step": 2}, {"run": "a"})
    os._exit(0)
""")


@pytest.mark.parametrize("point", ["mtkit_model.safetensors", "state.json", "manifest.json",
                                   "latest.json"])
def test_kill_during_checkpoint_write_leaves_a_loadable_checkpoint(tmp_path, point):
    """A process killed at any point of writing checkpoint 2 leaves checkpoint 1 (or a complete 2) loadable."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(tmp_path), point], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    store = CheckpointStore(tmp_path, keep=1)
    ck = store.load_latest()
    if point == "latest.json":  # the pointer had already moved: checkpoint 2 is complete
        assert ck.step == 2 and torch.equal(ck.model["w"], torch.ones(1000))
    else:
        assert ck.step == 1 and torch.equal(ck.model["w"], torch.zeros(1000))
        assert json.loads((tmp_path / "latest.json").read_text())["step"] == 1
    # the next save cleans the leftovers and works
    store.save(3, {"w": torch.full((1000,), 3.0)}, {"step": 3}, {})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert store.load_latest().step == 3
