"""The model box: text -> token ids -> minBERT -> pooled sentence vectors.

``bert_config.py`` (BertConfig), ``tokenizer.py`` (WordPiece), ``bert.py`` (minBERT), ``names.py`` (the
parameter-name contract: which block and depth a parameter belongs to), ``pretrained.py`` (reading and writing
a Hugging Face model folder), ``pooling.py`` (cls / mean / max) and ``build.py`` (the encoder and tokenizer a
run uses).

May import: ``mtkit.util`` only. Taught in notebooks/02 and 03.
"""
from mtkit.model.bert import BertModel
from mtkit.model.bert_config import BertConfig
from mtkit.model.pooling import POOLING_MODES, pool
from mtkit.model.pretrained import load_pretrained, save_pretrained
from mtkit.model.tokenizer import Tokenizer

__all__ = ["BertConfig", "BertModel", "Tokenizer", "POOLING_MODES", "pool", "load_pretrained", "save_pretrained"]
