"""The task heads of an export: ``heads.safetensors`` and ``heads.json``, reloadable by mtkit.

transformers and sentence-transformers have no module for mtkit's heads (a cosine head mapped onto the label
range, a bi-encoder head over ``[u; v; |u-v|]``, bucket logits ...), so they are saved beside the encoder::

    heads.safetensors   every ``heads.*`` tensor of the MultitaskModel (its own names)
    heads.json          format and version, the mtkit that wrote it, each task's spec and head (pooling, layout,
                        head, loss, output), and the run's TrainConfig, from which the heads are rebuilt

:func:`load_exported` rebuilds the whole MultitaskModel from an export folder (the encoder from its
``model.safetensors``, the heads from these files), or puts the heads onto an encoder you pass; it predicts
what the trained model predicted (tests/test_export.py). Reading uses safetensors and JSON only.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from mtkit.data.tasks import TaskSpec
from mtkit.model.bert import BertModel
from mtkit.model.tokenizer import Tokenizer
from mtkit.tasks.multitask import build_model
from mtkit.train.config import TrainConfig
from mtkit.util.provenance import kit_provenance

__all__ = ["HEADS_FORMAT", "HEADS_FILE", "HEADS_JSON", "save_heads", "load_exported"]

HEADS_FORMAT = "mtkit.tasks.heads"
HEADS_VERSION = 1
HEADS_FILE = "heads.safetensors"
HEADS_JSON = "heads.json"


def save_heads(model, config, specs, directory: str | Path) -> list[str]:
    """Write the heads of ``model`` (a MultitaskModel) and their description into ``directory``."""
    from safetensors.torch import save_file  # imported here: safetensors is read only when a file is
    directory = Path(directory)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
               if name.startswith("heads.")}
    save_file(tensors, str(directory / HEADS_FILE), metadata={"format": "pt"})
    description = {
        "format": HEADS_FORMAT, "version": HEADS_VERSION, "mtkit": kit_provenance(),
        "encoder": "the BERT folder this file sits in (config.json, model.safetensors)",
        "tasks": [spec.to_dict() for spec in specs],
        "heads": [asdict(info) for info in model.task_info.values()],
        "tensors": sorted(tensors),
        "run_config": config.to_dict(),
    }
    (directory / HEADS_JSON).write_text(json.dumps(description, indent=1) + "\n", encoding="utf-8")
    return [HEADS_FILE, HEADS_JSON]


def _read_description(directory: Path) -> dict:
    path = directory / HEADS_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no {HEADS_JSON}: it is not a folder written by `mtkit export` "
                                "(or its heads were removed). Export the run again.")
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); export the run again.") from None
    if description.get("format") != HEADS_FORMAT:
        raise ValueError(f"{path} is not an mtkit heads description (format {description.get('format')!r}).")
    if description.get("version", 0) > HEADS_VERSION:
        raise ValueError(f"{path} was written by a newer mtkit (version {description['version']}); upgrade mtkit.")
    return description


def load_exported(directory: str | Path, encoder=None, device: str | torch.device = "cpu"):
    """Rebuild the MultitaskModel of an export folder: ``(model, config, tokenizer)``, the model in eval mode.

    ``encoder``: a minBERT to put the heads onto (say, one you fine-tuned further); by default the folder's
    own, read with ``mtkit.model.bert.BertModel.from_pretrained``. Heads that are missing or left over, or of the
    wrong shape, raise ``ValueError`` naming them.
    """
    from safetensors.torch import load_file  # imported here: safetensors is read only when a file is

    directory = Path(directory)
    description = _read_description(directory)
    config = TrainConfig.from_dict(description["run_config"], source=str(directory / HEADS_JSON))
    specs = [TaskSpec.from_dict(s) for s in description["tasks"]]
    if encoder is None:
        encoder = BertModel.from_pretrained(directory)
    model = build_model(config, specs, encoder=encoder)
    tensors = load_file(str(directory / HEADS_FILE))
    expected = {name: t.shape for name, t in model.state_dict().items() if name.startswith("heads.")}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(f"{n}: file {tuple(tensors[n].shape)} vs model {tuple(s)}" for n, s in expected.items()
                   if n in tensors and tuple(tensors[n].shape) != tuple(s))
    if missing or unexpected or wrong:
        raise ValueError(f"{directory / HEADS_FILE} does not fit the heads {HEADS_JSON} describes"
                         + (f"; missing: {missing}" if missing else "") + (f"; unexpected: {unexpected}" if unexpected
                                                                           else "")
                         + (f"; shape mismatch: {wrong}" if wrong else "")
                         + ". Was the encoder given of another width? Export the run again.")
    model.load_state_dict(tensors, strict=False)  # the heads; the encoder is already loaded
    return model.to(device).eval(), config, Tokenizer.from_pretrained(directory)
