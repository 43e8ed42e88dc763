"""Resume: a run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends.

The run exercises everything that carries state across a restart: dropout (the torch RNG), PCGrad's random
visiting order (the surgery generator), a sampled task schedule (the epoch plan), gradient accumulation, a
warmup + linear lr schedule, evaluation in the middle of an epoch and model selection.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mtkit.train.checkpoint import CheckpointStore, read_checkpoint
from mtkit.train.history import History

REPO = Path(__file__).resolve().parents[1]

RUN = textwrap.dedent("""
    import os, signal, sys, json
    import torch
    torch.set_num_threads(1)
    from mtkit.train.config import TrainConfig
    from mtkit.train.trainer import Trainer
    data_dir, out, mode, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    config = TrainConfig(**json.loads(sys.argv[5]), data_dir=data_dir, output_dir=out)
    def killer(event, record, trainer):
        if mode == "kill" and event == "step" and record.get("step") == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as a crash or `kill -9`
    Trainer(config, callbacks=[killer], verbose=False).fit(resume=(mode == "resume"))
""")

CONFIG = dict(encoder="tiny", encoder_dropout=0.1, dropout=0.1, train_limit=24, dev_limit=16, batch_size=8,
              epochs=2, lr=2e-3, scheduler="linear", warmup_ratio=0.2, grad_accum_steps=2, schedule="temperature",
              schedule_options={"temperature": 2.0}, surgery="pcgrad", telemetry_every=2, eval_every=3,
              checkpoint_every=2, progress=False, write_predictions=False, seed=5)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from mtkit.data.demo import write_demo_data
    return write_demo_data(tmp_path_factory.mktemp("demo"), seed=0, sizes={"train": 48, "dev": 24, "test": 8})


def run(demo, out, mode, kill_at=0, config=CONFIG):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", RUN, str(demo), str(out), mode, str(kill_at), json.dumps(config)],
                          env=env, capture_output=True, text=True, timeout=300)


def final_state(out):
    return read_checkpoint(CheckpointStore(Path(out) / "checkpoints").latest())


def assert_close_records(a, b, path="history"):
    """Equal records; floats within 1e-6 (relative)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_close_records(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close_records(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_sigkill_then_resume_matches_an_uninterrupted_run(demo, tmp_path):
    full, broken = tmp_path / "full", tmp_path / "broken"
    done = run(demo, full, "fresh")
    assert done.returncode == 0, done.stderr[-3000:]

    killed = run(demo, broken, "kill", kill_at=7)  # checkpoints at steps 2, 3 (eval), 4, 6; killed at 7
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert final_state(broken).step == 6
    lines = (broken / "history.jsonl").read_text().splitlines()
    assert any(json.loads(line).get("step") == 7 for line in lines)  # work after the checkpoint, to be redone

    resumed = run(demo, broken, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = final_state(full), final_state(broken)
    assert a.step == b.step and a.state["trainer"]["finished"] and b.state["trainer"]["finished"]
    assert set(a.model) == set(b.model)
    worst = max(float((a.model[k] - b.model[k]).abs().max()) for k in a.model)
    assert worst <= 1e-6, f"weights differ by up to {worst}"
    for group_a, group_b in zip(a.state["optimizer"]["state"].values(), b.state["optimizer"]["state"].values()):
        torch.testing.assert_close(group_a["exp_avg"], group_b["exp_avg"], atol=1e-6, rtol=0)
    # the same history (timings aside), and the file holds it once: the lost step 7 is not duplicated
    assert_close_records(History.load(full).comparable(), History.load(broken).comparable())
    assert_close_records(a.state["trainer"]["best"], b.state["trainer"]["best"])
    # the surgery's telemetry and counters came through the restart too
    assert a.state["surgery"]["steps_applied"] == b.state["surgery"]["steps_applied"] > 0
    torch.testing.assert_close(a.state["surgery"]["telemetry"]["grams"], b.state["surgery"]["telemetry"]["grams"],
                               atol=1e-6, rtol=1e-5)


def test_resume_of_a_finished_run_does_nothing_and_changed_config_is_refused(demo, tmp_path):
    from mtkit.train.config import TrainConfig
    from mtkit.train.trainer import Trainer
    config = TrainConfig(**{**CONFIG, "epochs": 1, "surgery": "none", "schedule": "sequential",
                            "schedule_options": {}}, data_dir=str(demo), output_dir=str(tmp_path / "run"))
    first = Trainer(config, verbose=False).fit()
    again = Trainer(config, verbose=False).fit(resume=True)
    assert again.steps == first.steps and again.finished
    with pytest.raises(ValueError, match=r"config differs.*lr: saved 0.002, now 0.1"):
        Trainer(config.replace(lr=0.1), verbose=False).fit(resume=True)
    with pytest.raises(FileExistsError, match="already holds a run"):
        Trainer(config, verbose=False).fit()


# ------------------------------------------------------------------------------------------------ damaged checkpoints
DAMAGE_CONFIG = {**CONFIG, "epochs": 1, "surgery": "none", "schedule": "sequential", "schedule_options": {},
                 "eval_every": 100, "checkpoint_every": 2, "keep_checkpoints": 2, "max_steps": 4}


@pytest.fixture(scope="module")
def stopped_run(demo, tmp_path_factory):
    """A run stopped by max_steps at step 4, with the checkpoints of steps 2 and 4 kept."""
    from mtkit.train.config import TrainConfig
    from mtkit.train.trainer import Trainer
    out = tmp_path_factory.mktemp("stopped") / "run"
    config = TrainConfig(**DAMAGE_CONFIG, data_dir=str(demo), output_dir=str(out))
    Trainer(config, verbose=False).fit()
    names = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert names == ["step-00000002", "step-00000004"], names
    return config, out


def _rewrite_manifest(folder: Path, name: str, **entry) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name].update(entry)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _truncate_tensors(ck: Path) -> None:
    data = (ck / "mtkit_model.safetensors").read_bytes()
    (ck / "mtkit_model.safetensors").write_bytes(data[:len(data) // 2])


def _delete_state(ck: Path) -> None:
    (ck / "state.json").unlink()


def _pointer_to_missing(ck: Path) -> None:
    (ck.parent / "latest.json").write_text(json.dumps({"checkpoint": "step-00000099", "step": 99}))


def _hash_mismatch(ck: Path) -> None:
    _rewrite_manifest(ck, "mtkit_model.safetensors", sha256="0" * 64)


def _unparseable_state(ck: Path) -> None:  # size and hash agree with the manifest; the content does not parse
    import hashlib
    bad = b"{not json" + b" " * 40
    (ck / "state.json").write_bytes(bad)
    _rewrite_manifest(ck, "state.json", bytes=len(bad), sha256=hashlib.sha256(bad).hexdigest())


@pytest.mark.parametrize("damage, rejected, reason, used_step", [
    (_truncate_tensors, "step-00000004",
     r"mtkit_model\.safetensors has [\d,]+ bytes where manifest\.json says [\d,]+", 2),
    (_delete_state, "step-00000004", r"state\.json is missing", 2),
    (_pointer_to_missing, "latest.json", r"latest\.json points to step-00000099, which does not exist", 4),
    (_hash_mismatch, "step-00000004", r"mtkit_model\.safetensors does not match its SHA-256 in manifest\.json", 2),
    (_unparseable_state, "step-00000004", r"state\.json cannot be read", 2),
], ids=["truncated-tensors", "deleted-state", "pointer-to-missing-folder", "hash-mismatch", "parse-failure"])
def test_a_damaged_checkpoint_is_reported_and_the_fallback_named(stopped_run, tmp_path, capsys, damage, rejected,
                                                                 reason, used_step):
    """--resume falls back to an earlier checkpoint, and says which one it rejected, why, and which one it uses."""
    import re
    import shutil

    from mtkit.train.trainer import Trainer
    config, out = stopped_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    damage(copy / "checkpoints" / "step-00000004")
    trainer = Trainer(config.replace(output_dir=str(copy)), verbose=True)
    capsys.readouterr()
    assert trainer._resume() is True
    printed = capsys.readouterr().out
    line = next((l for l in printed.splitlines() if "rejected" in l and rejected in l), None)
    assert line is not None, printed
    assert re.search(reason, line), line
    used = copy / "checkpoints" / f"step-{used_step:08d}"
    assert trainer.step == used_step
    assert re.search(rf"resumed from {re.escape(str(used))} \(step {used_step}, epoch 0\)", printed), printed
    events = [r for r in History.load(copy).records if r.get("event") == "checkpoint_rejected"]
    assert events and re.search(reason, events[0]["reason"]), events


def test_every_checkpoint_damaged_is_an_error_naming_each(stopped_run, tmp_path):
    import shutil

    from mtkit.train.checkpoint import CheckpointError
    from mtkit.train.trainer import Trainer
    config, out = stopped_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    for step in (2, 4):
        _truncate_tensors(copy / "checkpoints" / f"step-{step:08d}")
    with pytest.raises(CheckpointError, match=r"No usable checkpoint.*step-00000004.*step-00000002.*--overwrite"):
        Trainer(config.replace(output_dir=str(copy)), verbose=False).fit(resume=True)
