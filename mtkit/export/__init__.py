"""Export: a model trained with mtkit, as folders that transformers and sentence-transformers load.

``mtkit export RUN_OR_CHECKPOINT --out DIR --format transformers|sentence-transformers`` (or :func:`export`)
writes::

    DIR/
        config.json, model.safetensors      the fine-tuned encoder as a Hugging Face BertModel
        vocab.txt, tokenizer_config.json    its tokenizer (AutoTokenizer gives mtkit's ids)
        modules.json, 1_Pooling/ ...        sentence-transformers only: pooling, shared layer, normalisation
        heads.safetensors, heads.json       the task heads, for mtkit (load_exported)
        README.md                           the model card

Each piece is a small module: :mod:`~mtkit.export.source` (which checkpoint), :mod:`~mtkit.export.
transformers_folder`, :mod:`~mtkit.export.sentence_transformers_folder`, :mod:`~mtkit.export.heads` and
:mod:`~mtkit.export.model_card`. The kit writes plain files: neither transformers nor sentence-transformers
is needed to export, only to load. Uploading to the Hugging Face Hub is the Hub's own client's job
(``huggingface_hub``; README.md, "Use your model elsewhere").
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mtkit.export.heads import HEADS_FORMAT, HEADS_JSON, load_exported, save_heads
from mtkit.export.model_card import model_card
from mtkit.export.sentence_transformers_folder import (
    SentenceEmbedding,
    choose_sentence_embedding,
    write_sentence_transformers_folder,
)
from mtkit.export.source import ExportSource, load_source
from mtkit.export.transformers_folder import write_transformers_folder

__all__ = ["FORMATS", "ExportResult", "export", "load_exported", "load_source", "ExportSource",
           "SentenceEmbedding", "choose_sentence_embedding", "write_transformers_folder",
           "write_sentence_transformers_folder", "save_heads", "model_card"]

FORMATS = ("transformers", "sentence-transformers")


@dataclass
class ExportResult:
    """What :func:`export` wrote: the folder, the format, the checkpoint taken, and the files."""
    out: Path
    format: str
    source: ExportSource
    embedding: SentenceEmbedding | None
    files: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [self.source.taken + ".", f"wrote {self.format} folder {self.out}: " + ", ".join(self.files)]
        if self.embedding is not None:
            lines.append(self.embedding.why)
        return "\n".join(lines)


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; give a folder to write the export into.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"--out {out} is not empty; choose another folder, or pass --overwrite to "
                                  "replace an earlier export there.")
        try:
            earlier = json.loads((out / HEADS_JSON).read_text(encoding="utf-8")).get("format") == HEADS_FORMAT
        except (OSError, json.JSONDecodeError, AttributeError):
            earlier = False
        if not earlier:
            raise FileExistsError(f"--out {out} holds files that are not an mtkit export (no {HEADS_JSON}); "
                                  "--overwrite replaces only an earlier export. Choose another folder.")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def export(path: str | Path, out: str | Path, format: str = "transformers", task: str | None = None,
           normalize: bool | None = None, overwrite: bool = False) -> ExportResult:
    """Export the checkpoint ``path`` names (a run folder: its best model) into the folder ``out``.

    ``format``: ``"transformers"`` or ``"sentence-transformers"``. ``task`` and ``normalize`` choose the
    sentence vectors of the sentence-transformers format (see :func:`choose_sentence_embedding`).
    """
    if format not in FORMATS:
        raise ValueError(f"--format {format!r} is not known; use one of {', '.join(FORMATS)}.")
    if format != "sentence-transformers" and (task is not None or normalize is not None):
        raise ValueError("--task and --normalize choose the sentence vectors of --format sentence-transformers; "
                         "the transformers format holds the encoder only.")
    source = load_source(path)
    out = Path(out)
    embedding = None
    if format == "sentence-transformers":
        embedding = choose_sentence_embedding(source.model, source.config, task=task, normalize=normalize)
    _prepare_out(out, overwrite)
    encoder = source.model.encoder
    if embedding is None:
        files = write_transformers_folder(encoder, source.tokenizer, out)
    else:
        files = write_sentence_transformers_folder(encoder, source.tokenizer, embedding, out)
    files += save_heads(source.model, source.config, source.specs, out)
    files.append("README.md")
    (out / "README.md").write_text(model_card(source, format, embedding, files), encoding="utf-8")
    return ExportResult(out=out, format=format, source=source, embedding=embedding, files=files)
