"""The extension points: a new loss through the public registry trains; the registries say what they hold.

docs/ARCHITECTURE.md's recipe "add a loss" is exactly what the first test does.
"""
from __future__ import annotations

import pytest
import torch

import mtkit
from mtkit.data.demo import write_demo_data
from mtkit.tasks.losses import HEADS_FOR_LOSS


class ToyL1Loss(torch.nn.Module):
    """Mean absolute error of a score: the smallest loss that is not already in mtkit."""

    takes = "outputs"  # loss(outputs, labels); "embeddings" would be loss(u, v, labels)

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.scale * (scores.reshape(-1).float() - labels.float()).abs().mean()


@pytest.fixture()
def toy_loss():
    mtkit.register_loss("toy_l1", ToyL1Loss, heads=("bi_encoder",))
    yield "toy_l1"
    mtkit.LOSS_REGISTRY.unregister("toy_l1")
    del HEADS_FOR_LOSS["toy_l1"]


def test_a_toy_loss_added_through_the_public_registry_trains_one_step(toy_loss, tmp_path):
    demo = write_demo_data(tmp_path / "demo", seed=0, sizes={"train": 16, "dev": 8, "test": 4})
    config = mtkit.TrainConfig(
        encoder="tiny", data_dir=str(demo), output_dir=str(tmp_path / "run"), batch_size=8, epochs=1, lr=1e-3,
        max_steps=1, progress=False, write_predictions=False, seed=1, telemetry_every=0,
        tasks=[{"name": "sts", "head": "bi_encoder", "head_options": {"out_dim": 1}, "loss": toy_loss,
                "loss_options": {"scale": 0.5}}])
    trainer = mtkit.Trainer(config, verbose=False)
    assert isinstance(trainer.model.losses["sts"], ToyL1Loss) and trainer.model.losses["sts"].scale == 0.5
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    result = trainer.fit()
    assert result.steps == 1
    moved = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert any(n.startswith("heads.sts") for n in moved) and any(n.startswith("encoder.") for n in moved)


def _config_with_loss(name: str) -> mtkit.TrainConfig:
    return mtkit.TrainConfig(encoder="tiny", tasks=[{"name": "sts", "head": "bi_encoder", "loss": name}])


def test_config_validation_reads_the_registry():
    """The config knows a loss once it is registered, and forgets it when it is removed."""
    with pytest.raises(mtkit.ConfigError, match="toy_l1"):
        _config_with_loss("toy_l1")
    mtkit.register_loss("toy_l1", ToyL1Loss, heads=("bi_encoder",))
    try:
        assert _config_with_loss("toy_l1").tasks[0].loss == "toy_l1"
        with pytest.raises(ValueError, match="Did you mean 'scale'"):  # options come from the class's signature
            mtkit.make_loss("toy_l1", scal=2)
    finally:
        mtkit.LOSS_REGISTRY.unregister("toy_l1")
        del HEADS_FOR_LOSS["toy_l1"]
    with pytest.raises(mtkit.ConfigError, match="toy_l1"):
        _config_with_loss("toy_l1")


def test_an_unknown_name_says_what_is_known():
    with pytest.raises(ValueError, match="Did you mean 'cosent'") as err:
        mtkit.make_loss("cosnt")
    assert "bucketed_cross_entropy" in str(err.value)
    assert "cosnt" not in mtkit.LOSS_REGISTRY and "cosent" in mtkit.LOSS_REGISTRY
    with pytest.raises(ValueError, match="registered already"):
        mtkit.LOSS_REGISTRY.register("cosent", ToyL1Loss)


@pytest.mark.parametrize("registry", ["HEAD_REGISTRY", "LOSS_REGISTRY", "POOLING_REGISTRY", "SCHEDULE_REGISTRY"])
def test_every_registry_entry_lists_its_options(registry):
    table = getattr(mtkit, registry)
    assert len(table) >= 3
    for name in table:
        assert isinstance(table.options(name), dict)
