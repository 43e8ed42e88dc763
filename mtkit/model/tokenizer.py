"""The tokenizer: text -> WordPiece token ids, the first box on the data path.

BERT (Devlin et al. 2019) splits text into WordPiece sub-words (Wu et al. 2016, "Google's Neural Machine
Translation System") from a fixed ``vocab.txt``. Uncased models first clean the text, lower-case it, strip
accents and put spaces around Chinese characters and punctuation. A single sentence becomes
``[CLS] a [SEP]`` with token types 0; a pair becomes ``[CLS] a [SEP] b [SEP]`` with token types 0 for a and 1
for b. The splitting itself runs in the Rust ``tokenizers`` library (the field's library for this); this
module sets it up from ``vocab.txt`` and turns its output into padded tensors. Token ids equal
``transformers.BertTokenizerFast`` on every sentence of the CS224N data (tests/test_tokenizer.py).

Taught in notebooks/02_tokens_and_embeddings.ipynb.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer as _RustTokenizer
from tokenizers.decoders import WordPiece as _WordPieceDecoder
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from tokenizers.processors import TemplateProcessing

from mtkit.model.folders import resolve_dir

PADDING_CHOICES = ("longest", "max_length", False)


class Tokenizer:
    """BERT's WordPiece tokenizer, read from ``vocab.txt``.

    Built from the ``tokenizers`` building blocks (normalizer, pre-tokenizer, WordPiece model, template) rather
    than a ready-made wrapper, so each step of the pipeline is visible in the notebook. ``max_length`` never
    exceeds ``model_max_length`` (the position limit of the encoder), and truncation is reported, never silent.

    Behaviour on edge cases: an empty string becomes ``[CLS] [SEP]``; ``None`` or a non-string (for example a
    pandas NaN from an empty CSV field) raises ``TypeError`` naming its position; non-ASCII text is lower-cased
    and its accents are stripped as BERT uncased does (``"Café"`` -> ``"cafe"``), and characters outside the
    vocabulary become ``[UNK]``.
    """

    def __init__(self, vocab_file: str | Path, lowercase: bool = True, strip_accents: bool | None = None,
                 handle_chinese_chars: bool = True, model_max_length: int = 512,
                 unk_token: str = "[UNK]", cls_token: str = "[CLS]", sep_token: str = "[SEP]",
                 pad_token: str = "[PAD]", mask_token: str = "[MASK]"):
        vocab_file = Path(vocab_file)
        if not vocab_file.is_file():
            raise FileNotFoundError(f"No vocabulary at {vocab_file}. A BERT folder holds vocab.txt, one token a line.")
        vocab: dict[str, int] = {}
        with vocab_file.open(encoding="utf-8") as handle:
            for index, line in enumerate(handle):
                token = line.rstrip("\n").rstrip("\r")
                vocab.setdefault(token, index)
        for token in (unk_token, cls_token, sep_token, pad_token):
            if token not in vocab:
                raise ValueError(f"{vocab_file} has no {token} token; it is not a BERT vocabulary.")
        self.vocab_file = vocab_file
        self.model_max_length = int(model_max_length)
        self.lowercase, self.strip_accents, self.handle_chinese_chars = lowercase, strip_accents, handle_chinese_chars
        self.unk_token, self.cls_token, self.sep_token = unk_token, cls_token, sep_token
        self.pad_token, self.mask_token = pad_token, mask_token

        rust = _RustTokenizer(WordPiece(vocab, unk_token=unk_token, max_input_chars_per_word=100))
        # strip_accents=None follows lowercase, as in BERT uncased.
        rust.normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=handle_chinese_chars,
                                         strip_accents=strip_accents, lowercase=lowercase)
        rust.pre_tokenizer = BertPreTokenizer()  # split on whitespace and punctuation
        cls_id, sep_id = vocab[cls_token], vocab[sep_token]
        rust.post_processor = TemplateProcessing(
            single=f"{cls_token}:0 $A:0 {sep_token}:0",
            pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
            special_tokens=[(cls_token, cls_id), (sep_token, sep_id)],
        )
        rust.decoder = _WordPieceDecoder(prefix="##")
        # Registered as special: kept whole when they appear in text, dropped by decode(skip_special_tokens=True).
        rust.add_special_tokens([t for t in (pad_token, unk_token, cls_token, sep_token, mask_token) if t in vocab])
        self._rust = rust

    # ----- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> Tokenizer:
        """The tokenizer of a Hugging Face BERT folder (``vocab.txt``, and ``tokenizer_config.json`` when present
        for lower-casing and the length limit); ``None`` is the default encoder's folder."""

        model_dir = resolve_dir(path)
        options: dict = {}
        config_file = model_dir / "tokenizer_config.json"
        if config_file.is_file():
            try:
                config = json.loads(config_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{config_file} is not valid JSON ({err}).") from err
            if "do_lower_case" in config:
                options["lowercase"] = bool(config["do_lower_case"])
            if config.get("strip_accents") is not None:
                options["strip_accents"] = bool(config["strip_accents"])
            if "tokenize_chinese_chars" in config:
                options["handle_chinese_chars"] = bool(config["tokenize_chinese_chars"])
            limit = config.get("model_max_length")
            if isinstance(limit, (int, float)) and limit < 1e6:  # transformers writes 1e30 for "no limit"
                options["model_max_length"] = int(limit)
        model_config = model_dir / "config.json"
        if model_config.is_file():
            try:
                positions = json.loads(model_config.read_text(encoding="utf-8")).get("max_position_embeddings")
            except json.JSONDecodeError:
                positions = None
            if positions:
                options["model_max_length"] = min(options.get("model_max_length", positions), int(positions))
        return cls(model_dir / "vocab.txt", **options)

    def save_pretrained(self, directory: str | Path, model_max_length: int | None = None) -> Path:
        """Write ``vocab.txt`` and ``tokenizer_config.json`` into ``directory``: the files from which
        ``transformers.AutoTokenizer`` builds a tokenizer that gives the same ids as this one (a BertTokenizer with
        the same lower-casing, accent stripping, Chinese-character handling, special tokens and length limit;
        ``model_max_length`` lowers the limit written, e.g. to the encoder's position table)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / "vocab.txt").resolve() != self.vocab_file.resolve():
            (directory / "vocab.txt").write_bytes(self.vocab_file.read_bytes())
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": self.lowercase,
                  "strip_accents": self.strip_accents, "tokenize_chinese_chars": self.handle_chinese_chars,
                  "do_basic_tokenize": True, "never_split": None,
                  "model_max_length": min(self.model_max_length, model_max_length or self.model_max_length),
                  "unk_token": self.unk_token, "sep_token": self.sep_token, "pad_token": self.pad_token,
                  "cls_token": self.cls_token, "mask_token": self.mask_token}
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return directory

    # ----- vocabulary -------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._rust.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def pad_token_id(self) -> int:
        return self._rust.token_to_id(self.pad_token)

    @property
    def cls_token_id(self) -> int:
        return self._rust.token_to_id(self.cls_token)

    @property
    def sep_token_id(self) -> int:
        return self._rust.token_to_id(self.sep_token)

    @property
    def unk_token_id(self) -> int:
        return self._rust.token_to_id(self.unk_token)

    @property
    def mask_token_id(self) -> int | None:
        return self._rust.token_to_id(self.mask_token)

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of one text, without [CLS]/[SEP] (``"unaffable"`` -> ``['una', '##ffa', '##ble']``)."""
        self._check_texts([text], "text")
        return self._rust.encode(text, add_special_tokens=False).tokens

    def convert_ids_to_tokens(self, ids: int | Sequence[int] | torch.Tensor) -> str | list[str]:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if isinstance(ids, int):
            return self._rust.id_to_token(ids)
        return [self._rust.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            found = self._rust.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Token ids back to text (lower-cased, accents stripped: decoding cannot undo normalisation)."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes one sequence of ids, got shape {tuple(ids.shape)}; "
                                 "use batch_decode for a batch.")
            ids = ids.tolist()
        return self._rust.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch: Sequence[Sequence[int]] | torch.Tensor,
                     skip_special_tokens: bool = True) -> list[str]:
        if isinstance(batch, torch.Tensor):
            batch = batch.tolist()
        return [self.decode(ids, skip_special_tokens) for ids in batch]

    # ----- encoding ---------------------------------------------------------------------------------------------
    @staticmethod
    def _check_texts(texts: Sequence, name: str) -> None:
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                hint = ""
                if text is None:
                    hint = " Replace missing sentences (None) before tokenizing, or drop those rows and report them."
                elif isinstance(text, float) and math.isnan(text):
                    hint = " A NaN usually comes from an empty CSV field read by pandas; fill or report that row."
                raise TypeError(f"{name}[{index}] is {text!r} ({type(text).__name__}), but the tokenizer takes "
                                f"strings.{hint}")

    def __call__(self, texts: str | Sequence[str], pairs: str | Sequence[str] | None = None,
                 max_length: int | None = 128, padding: str | bool = "longest", truncation: bool = True,
                 return_tensors: str | None = "pt") -> dict:
        """Tokenize a batch of sentences, or of sentence pairs when ``pairs`` is given.

        Returns ``{"input_ids", "token_type_ids", "attention_mask"}``: tensors of shape (B, T) with
        ``return_tensors="pt"``, lists of lists with ``return_tensors=None``. ``padding`` is ``"longest"`` (pad to
        the longest in the batch), ``"max_length"`` (pad to ``max_length``) or ``False``. With ``truncation``,
        sequences are cut to ``max_length`` tokens (pairs: the longer side first, as BERT does), and one warning per
        call says how many were cut. ``max_length`` above the model's position limit is lowered to it, with a
        warning; ``max_length=None`` means the limit.
        """
        if texts is None:
            raise TypeError("texts is None; pass a string or a list of strings.")
        if isinstance(texts, str):
            texts = [texts]
        if pairs is not None and isinstance(pairs, str):
            pairs = [pairs]
        texts = list(texts)
        self._check_texts(texts, "texts")
        if pairs is not None:
            pairs = list(pairs)
            self._check_texts(pairs, "pairs")
            if len(pairs) != len(texts):
                raise ValueError(f"texts has {len(texts)} sentences but pairs has {len(pairs)}; each sentence needs "
                                 "exactly one partner.")
        if padding is True:
            padding = "longest"
        if padding not in PADDING_CHOICES:
            raise ValueError(f"padding must be one of {PADDING_CHOICES}, got {padding!r}.")
        if return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}.")

        limit = self.model_max_length
        if max_length is None:
            max_length = limit
        if max_length > limit:
            warnings.warn(f"max_length={max_length} is longer than the model's position limit ({limit}); using "
                          f"{limit}.", stacklevel=2)
            max_length = limit
        minimum = 3 if pairs is None else 4  # room for the special tokens and at least one token per text
        if max_length < minimum:
            raise ValueError(f"max_length={max_length} leaves no room for text after [CLS]/[SEP]; use at least "
                             f"{minimum}.")

        rust = self._rust
        if truncation:
            rust.enable_truncation(max_length=max_length, strategy="longest_first")
        else:
            rust.no_truncation()
        if padding == "longest":
            rust.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token)
        elif padding == "max_length":
            rust.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token, length=max_length)
        else:
            rust.no_padding()
        try:
            if not texts:
                encodings = []
            elif pairs is None:
                encodings = rust.encode_batch(texts)
            else:
                encodings = rust.encode_batch(list(zip(texts, pairs)))
        finally:
            rust.no_truncation()
            rust.no_padding()

        if truncation:
            cut = sum(1 for e in encodings if e.overflowing)
            if cut:
                what = "sentences" if pairs is None else "pairs"
                warnings.warn(f"{cut} of {len(encodings)} {what} were longer than max_length={max_length} tokens and "
                              "were truncated.", stacklevel=2)
        else:
            too_long = [i for i, e in enumerate(encodings) if len(e.ids) > limit]
            if too_long:
                raise ValueError(f"{len(too_long)} sequences (first at index {too_long[0]}) are longer than the "
                                 f"model's position limit ({limit}) and truncation=False; turn truncation on.")

        batch = {
            "input_ids": [e.ids for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
        if return_tensors == "pt":
            lengths = {len(ids) for ids in batch["input_ids"]}
            if len(lengths) > 1:
                raise ValueError("Sequences have different lengths and padding=False, so they cannot be stacked into "
                                 "a tensor; use padding='longest' or return_tensors=None.")
            batch = {key: torch.tensor(value, dtype=torch.long).reshape(len(encodings), -1)
                     for key, value in batch.items()}
        return batch

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_file={str(self.vocab_file)!r}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length})")
