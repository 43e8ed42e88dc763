"""A trained model rebuilt from its checkpoint folder (for evaluation, prediction and ensembles)."""
from __future__ import annotations

from pathlib import Path

import torch

from mtkit.data.tasks import TaskSpec
from mtkit.model.bert import BertModel
from mtkit.model.bert_config import BertConfig
from mtkit.model.build import build_tokenizer
from mtkit.model.tokenizer import Tokenizer
from mtkit.tasks.multitask import build_model
from mtkit.train.checkpoint import read_checkpoint, resolve, run_config_name
from mtkit.train.config import TrainConfig

__all__ = ['load_checkpoint_model']


def load_checkpoint_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a trained model from a checkpoint (a run folder, its best/ or checkpoints/, or one step folder).

    Returns ``(model, config, meta, tokenizer)``; nothing is unpickled.
    """
    folder = resolve(path, prefer="best")
    checkpoint = read_checkpoint(folder)
    config = TrainConfig.from_dict(checkpoint.config, source=str(folder / run_config_name(checkpoint.manifest)))
    meta = checkpoint.state["model_meta"]
    encoder = BertModel(BertConfig.from_dict(meta["encoder_config"]))
    specs = [TaskSpec.from_dict(s) for s in meta["tasks"]]
    model = build_model(config, specs, encoder=encoder)
    model.load_state_dict(checkpoint.model)
    model.to(device).eval()
    tokenizer = Tokenizer.from_pretrained(folder) if (folder / "vocab.txt").is_file() else build_tokenizer(config.encoder, config.tokenizer)
    return model, config, meta, tokenizer
