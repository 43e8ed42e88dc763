"""The ``sentence-transformers`` format: the encoder folder plus the modules that turn it into sentence vectors.

sentence-transformers (Reimers & Gurevych 2019, "Sentence-BERT", arXiv 1908.10084) reads ``modules.json``, a
list of modules applied in order, each configured by files in its own sub-folder::

    modules.json                      0: Transformer (this folder), 1: Pooling, [Dense], [Normalize]
    sentence_bert_config.json         max_seq_length: the run's max_length
    config_sentence_transformers.json similarity: cosine
    1_Pooling/config.json             the pooling the exported task used: cls, mean or max
    2_Dense/                          the shared pair layer, when the run had one (report E)
    2_Normalize/ (or 3_)              when the task compares sentences by cosine (unit vectors)

The files are written as plain JSON in the format every sentence-transformers release since 2.0 reads (the
module names ``sentence_transformers.models.*``), so ``SentenceTransformer(DIR).encode(sentences)`` gives
:meth:`SentenceEmbedding.encode` (mtkit's vectors) without mtkit installed, and mtkit needs no
sentence-transformers to write them.

Which sentence vectors: a multitask model may pool differently per task (report D pools [CLS] for SST and
the mean for the pairs), so one task's recipe is exported, by default the similarity task (a pair regression
in the bi-encoder layout, STS), else the first bi-encoder pair task, else the first task. Normalisation is
added when that task's head is the cosine head or its loss compares sentence vectors (cosine similarity,
CoSENT, MNRL, cosine embedding): the run compared unit vectors, and with them dot product equals cosine.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mtkit.export.transformers_folder import write_transformers_folder
from mtkit.tasks.multitask import SHARED_PAIR

__all__ = ["SentenceEmbedding", "choose_sentence_embedding", "write_sentence_transformers_folder"]

POOLING_FILE_KEYS = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
                     "max": "pooling_mode_max_tokens"}


@dataclass
class SentenceEmbedding:
    """How one task of a trained model turns a sentence into a vector: pooling, shared layer, normalisation."""
    task: str
    pooling: str  # "cls" | "mean" | "max"
    shared_layer: nn.Module | None  # the SharedPairLayer the pair heads see, or None
    normalize: bool
    max_seq_length: int
    why: str  # one line: why this task and this normalisation

    @torch.no_grad()
    def encode(self, model, tokenizer, sentences: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """mtkit's sentence vectors ``(N, D)`` for ``sentences``: what the export's ``encode`` gives."""
        model.eval()
        device = next(model.parameters()).device
        chunks = []
        for start in range(0, len(sentences), batch_size):
            batch = tokenizer(list(sentences[start:start + batch_size]), max_length=self.max_seq_length)
            batch = {k: v.to(device) for k, v in batch.items()}
            vectors = model.encode(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"),
                                   self.pooling)  # (B, H)
            if self.shared_layer is not None:
                vectors = self.shared_layer(vectors)  # (B, D)
            if self.normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)  # (B, D), unit length
            chunks.append(vectors.float().cpu())
        return torch.cat(chunks)  # (N, D)


def _compares_by_cosine(model, task: str) -> bool:
    info = model.task_info[task]
    return info.head == "cosine" or getattr(model.losses[task], "takes", "outputs") == "embeddings"


def choose_sentence_embedding(model, config, task: str | None = None,
                              normalize: bool | None = None) -> SentenceEmbedding:
    """The sentence-vector recipe of ``task`` (default: see the module docstring); ``normalize`` None decides by
    the task's head and loss."""
    infos = model.task_info
    if task is None:
        bi = [t for t in infos.values() if t.layout == "bi"]
        similarity = [t for t in bi if t.kind == "pair_regression"]
        chosen = (similarity or bi or list(infos.values()))[0]
        reason = ("the similarity task" if similarity else "a bi-encoder pair task" if bi else "the first task")
    else:
        if task not in infos:
            raise ValueError(f"--task {task!r}: this model has no such task; its tasks are {list(infos)}.")
        chosen, reason = infos[task], "the task asked for"
    name = chosen.name
    shared = model.heads[SHARED_PAIR] if chosen.kind != "classification" and SHARED_PAIR in model.heads else None
    by_cosine = _compares_by_cosine(model, name)
    if normalize is None:
        normalize = by_cosine
        norm_why = ("normalised: its head or loss compares unit vectors (cosine)" if by_cosine
                    else "not normalised: its head does not compare cosines")
    else:
        norm_why = "normalised, as asked" if normalize else "not normalised, as asked"
    layout = " (cross layout: each sentence is encoded alone here, not joined to a pair)" \
        if chosen.layout == "cross" else ""
    why = (f"sentence vectors of task {name!r} ({reason}): {chosen.pooling} pooling"
           + (", the shared pair layer" if shared is not None else "") + f", {norm_why}{layout}")
    return SentenceEmbedding(task=name, pooling=chosen.pooling, shared_layer=shared, normalize=bool(normalize),
                             max_seq_length=int(config.max_length), why=why)


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _class_path(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__name__}"  # e.g. torch.nn.modules.activation.Tanh


def write_sentence_transformers_folder(encoder, tokenizer, embedding: SentenceEmbedding,
                                       directory: str | Path) -> list[str]:
    """Write the encoder folder and the sentence-transformers modules of ``embedding``; returns the files."""
    from safetensors.torch import save_file  # imported here: safetensors is read only when a file is
    directory = Path(directory)
    files = write_transformers_folder(encoder, tokenizer, directory)
    hidden = encoder.config.hidden_size
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    _write_json(directory / "sentence_bert_config.json",
                {"max_seq_length": embedding.max_seq_length, "do_lower_case": False})
    _write_json(directory / "config_sentence_transformers.json",
                {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"})
    pooling = {"word_embedding_dimension": hidden, "pooling_mode_mean_sqrt_len_tokens": False}
    pooling |= {key: mode == embedding.pooling for mode, key in POOLING_FILE_KEYS.items()}
    _write_json(directory / "1_Pooling" / "config.json", pooling)
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    files += ["modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
              "1_Pooling/config.json"]
    if embedding.shared_layer is not None:
        layer, name = embedding.shared_layer, f"{len(modules)}_Dense"
        dense = {"in_features": layer.dense.in_features, "out_features": layer.dense.out_features, "bias": True,
                 "activation_function": _class_path(layer.activation)}
        _write_json(directory / name / "config.json", dense)
        save_file({"linear.weight": layer.dense.weight.detach().cpu().contiguous(),
                   "linear.bias": layer.dense.bias.detach().cpu().contiguous()},
                  str(directory / name / "model.safetensors"), metadata={"format": "pt"})
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": name,
                        "type": "sentence_transformers.models.Dense"})
        files += [f"{name}/config.json", f"{name}/model.safetensors"]
    if embedding.normalize:  # no parameters and no options: an empty folder, as sentence-transformers writes it
        name = f"{len(modules)}_Normalize"
        (directory / name).mkdir(exist_ok=True)
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": name,
                        "type": "sentence_transformers.models.Normalize"})
    _write_json(directory / "modules.json", modules)
    return files
