"""The ``transformers`` format: a Hugging Face BERT folder of the fine-tuned encoder.

``config.json`` (``model_type: bert``, the encoder's real dimensions), ``model.safetensors`` with the names of
``transformers.BertModel`` (mapped by ``mtkit.model.pretrained.mtkit_to_hf``), ``vocab.txt`` and
``tokenizer_config.json``: ``AutoModel.from_pretrained(DIR)`` and ``AutoTokenizer.from_pretrained(DIR)`` load
it with no missing or unexpected key and no warning, and compute what mtkit's encoder computes
(tests/test_export.py). The task heads are not BERT modules; :mod:`mtkit.export.heads` writes them beside.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["write_transformers_folder"]


def write_transformers_folder(encoder, tokenizer, directory: str | Path) -> list[str]:
    """Write ``encoder`` (minBERT) and ``tokenizer`` (mtkit's) into ``directory``; returns the files written."""
    directory = Path(directory)
    encoder.save_pretrained(directory, tokenizer=tokenizer)
    return ["config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"]
