"""mtkit.train.ensemble: a member taken from a Trainer in memory is the member read back from its best checkpoint."""
from __future__ import annotations

import pytest
import torch

from mtkit.data.tasks import default_task, load_split
from mtkit.train.config import TrainConfig
from mtkit.train.ensemble import Ensemble, Member
from mtkit.train.trainer import Trainer


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from mtkit.data.demo import write_demo_data
    return write_demo_data(tmp_path_factory.mktemp("demo"), seed=0, sizes={"train": 32, "dev": 16, "test": 8})


def test_member_from_trainer_equals_the_member_loaded_from_its_best_checkpoint(demo, tmp_path):
    config = TrainConfig(encoder="tiny", data_dir=str(demo), output_dir=str(tmp_path / "run"), train_limit=32,
                         batch_size=8, epochs=2, lr=1e-3, seed=1, progress=False, write_predictions=False,
                         telemetry_every=0, eval_every=2)  # several evaluations: the best is not necessarily the last
    trainer = Trainer(config, verbose=False)
    result = trainer.fit()
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)  # the trainer's weights now differ from every checkpoint; from_trainer must load the best
    in_memory = Member.from_trainer(trainer)
    loaded = Member.load(result.best_checkpoint)
    assert in_memory.path == loaded.path and in_memory.model is trainer.model
    assert in_memory.specs == loaded.specs
    for task in ("sst", "para", "sts"):
        examples, _ = load_split(default_task(task), demo, "dev")
        [a] = Ensemble([in_memory]).member_outputs(task, examples)
        [b] = Ensemble([loaded]).member_outputs(task, examples)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
