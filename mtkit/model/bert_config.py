"""BERT hyperparameters as a dataclass that reads a Hugging Face ``config.json``.

Taught in notebooks/02_tokens_and_embeddings.ipynb.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass
class BertConfig:
    vocab_size: int = 30522  # WordPiece vocabulary size
    hidden_size: int = 768  # width of every token vector (d_model)
    num_hidden_layers: int = 12  # transformer layers stacked
    num_attention_heads: int = 12  # heads per layer; hidden_size must divide evenly
    intermediate_size: int = 3072  # width of the feed-forward inner layer
    hidden_act: str = "gelu"  # feed-forward activation (exact erf GELU, as BERT uses)
    hidden_dropout_prob: float = 0.1  # dropout after embeddings, attention output and feed-forward
    attention_probs_dropout_prob: float = 0.1  # dropout on attention probabilities
    max_position_embeddings: int = 512  # longest sequence the position table covers
    type_vocab_size: int = 2  # segment ids: sentence A = 0, sentence B = 1
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon
    initializer_range: float = 0.02  # std of the normal init for fresh weights
    pad_token_id: int = 0  # id of [PAD]

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}): each head gets hidden_size / num_heads dimensions."
            )
        if self.hidden_act not in ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu"):
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported (use 'gelu').")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, values: dict) -> BertConfig:
        """Keep the keys this dataclass knows; Hugging Face configs carry many more."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file() and (path.parent / "manifest.json").is_file():
            raise FileNotFoundError(
                f"{path.parent} is an mtkit training checkpoint, not a Hugging Face BERT folder (its run config is "
                "mtkit_run.json). Export it first: `mtkit export RUN_OR_CHECKPOINT --out DIR`, then load DIR; or "
                "rebuild the trained model with mtkit.train.trained_model.load_checkpoint_model."
            )
        if not path.is_file():
            raise FileNotFoundError(
                f"No BERT config at {path}. A Hugging Face BERT directory holds config.json, "
                "vocab.txt and model.safetensors (or pytorch_model.bin)."
            )
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); re-download or re-export the model.") from err
        model_type = values.get("model_type", "bert")
        if model_type != "bert":
            raise ValueError(f"{path} describes a {model_type!r} model; mtkit's minBERT loads BERT checkpoints only.")
        return cls.from_dict(values)

    def to_dict(self) -> dict:
        return asdict(self) | {"model_type": "bert"}

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def tiny(cls, vocab_size: int = 30522) -> BertConfig:
        """A 2-layer, 64-wide BERT for fast tests (the default vocab, so the real tokenizer fits)."""
        return cls(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=128, max_position_embeddings=128)

    @classmethod
    def minilm_l6(cls) -> BertConfig:
        """The shape of all-MiniLM-L6-v2, the kit's default encoder (6 x 384, 12 heads)."""
        return cls(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)

    @classmethod
    def base(cls) -> BertConfig:
        """bert-base-uncased (12 x 768, 12 heads)."""
        return cls()
