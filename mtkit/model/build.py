"""The encoder and tokenizer a run uses, from plain names: the default encoder, a Hugging Face folder, or
``"tiny"`` (a random 2-layer, 64-wide minBERT for tests).

The encoder factory lives with the model (not in the trainer), so the multitask model and the trainer both
import it from below.
"""
from __future__ import annotations

from pathlib import Path

import torch

from mtkit.model.bert import BertModel
from mtkit.model.bert_config import BertConfig
from mtkit.model.pretrained import load_pretrained
from mtkit.model.tokenizer import Tokenizer

__all__ = ["build_encoder", "build_tokenizer", "set_encoder_dropout"]


def build_tokenizer(encoder: str | Path | None = None, tokenizer: str | Path | None = None) -> Tokenizer:
    """The tokenizer of a run: ``tokenizer`` when given, else the encoder folder's own (the default one for
    ``None`` and ``"tiny"``)."""
    if tokenizer is not None:
        return Tokenizer.from_pretrained(tokenizer)
    if encoder in (None, "tiny"):
        return Tokenizer.from_pretrained(None)
    return Tokenizer.from_pretrained(encoder)


def build_encoder(encoder: str | Path | None = None, dropout: float | None = None) -> BertModel:
    """The encoder: the default one (``None``), a folder, or ``"tiny"`` (random 2 x 64, for tests), with its
    dropout set to ``dropout`` when given, in train mode."""
    if encoder == "tiny":
        bert_config = BertConfig.tiny()
        if dropout is not None:
            bert_config.hidden_dropout_prob = bert_config.attention_probs_dropout_prob = dropout
        model = BertModel(bert_config)
    else:
        model = load_pretrained(encoder)
        if dropout is not None:
            set_encoder_dropout(model, dropout)
    return model.train()


def set_encoder_dropout(encoder: BertModel, p: float) -> None:
    """Set every dropout probability of a built encoder to ``p`` (the config, the modules, the fused kernel's)."""
    encoder.config.hidden_dropout_prob = p
    encoder.config.attention_probs_dropout_prob = p
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
    if hasattr(encoder, "layers"):
        for layer in encoder.layers:  # attention dropout may be a float attribute for the fused kernel
            attention = getattr(layer, "attention", None)
            for attr in ("dropout_p", "attention_dropout", "dropout_prob"):
                if attention is not None and isinstance(getattr(attention, attr, None), float):
                    setattr(attention, attr, p)
