"""minBERT: the BERT encoder written from scratch.

BERT is Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"
(arXiv 1810.04805); its layers are the Transformer encoder of Vaswani et al. 2017, "Attention Is All You Need"
(arXiv 1706.03762), with post-LayerNorm ("add & norm") and exact (erf) GELU. The model computes what
``transformers.BertModel`` computes on the same weights (tests/test_bert.py checks it to 1e-5).

Taught in notebooks/03_attention_and_minbert.ipynb.

Parameter names are a contract (docs/ARCHITECTURE.md); layer-wise learning-rate decay, telemetry and the
fine-tune modes find blocks by these names::

    embeddings.word_embeddings.weight
    embeddings.position_embeddings.weight
    embeddings.token_type_embeddings.weight
    embeddings.layer_norm.{weight,bias}
    layers.{i}.attention.{query,key,value,output}.{weight,bias}
    layers.{i}.attention_norm.{weight,bias}
    layers.{i}.ffn.{up,down}.{weight,bias}
    layers.{i}.ffn_norm.{weight,bias}
    pooler.dense.{weight,bias}
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mtkit.model.bert_config import BertConfig

# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------

ATTENTION_KINDS = ("explicit", "sdpa")


@dataclass
class BertOutput:
    """What ``BertModel.forward`` returns (docs/ARCHITECTURE.md, "Model outputs")."""

    last_hidden_state: torch.Tensor  # (B, T, H): one vector per token from the top layer, zeros at padding
    pooler_output: torch.Tensor  # (B, H): tanh(dense([CLS] vector))
    hidden_states: tuple[torch.Tensor, ...] | None = None  # L + 1 tensors (B, T, H): embeddings, then each layer
    attentions: tuple[torch.Tensor, ...] | None = None  # L tensors (B, heads, T, T): attention probabilities


@dataclass
class EncoderImplementations:
    """Functions that run in place of parts of minBERT's forward: a learner's exercises (``mtkit.exercises.implementations``
    installs them with ``BertModel.set_implementations``). None keeps minBERT's own code.

    They compute the eval-mode forward of their exercise (no dropout), so an encoder that runs them trains
    without encoder dropout; the heads keep theirs.
    """

    attention: Callable | None = None  # attention(q, k, v, attention_mask) -> (context, probs), (B, heads, T, D)
    layer: Callable | None = None  # layer_forward(layer, x, attention_mask, attention_fn=None) -> (B, T, H)
    embeddings: Callable | None = None  # embeddings_forward(embeddings, input_ids, token_type_ids) -> (B, T, H)

    @property
    def empty(self) -> bool:
        return self.attention is None and self.layer is None and self.embeddings is None


def _activation(name: str):
    if name == "gelu":
        return F.gelu  # exact erf GELU, as BERT uses
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return partial(F.gelu, approximate="tanh")
    if name == "relu":
        return F.relu
    raise ValueError(f"hidden_act {name!r} is not supported (use 'gelu').")


class BertEmbeddings(nn.Module):
    """Token vectors = word embedding + position embedding + token-type (segment) embedding, then LayerNorm, dropout.

    Positions are 0..T-1, so the position table is sliced rather than looked up, and when no token types are given
    the sentence-A row is broadcast: the same sums as the lookups, without building index tensors.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        T = input_ids.shape[1]
        x = self.word_embeddings(input_ids)  # (B, T, H)
        x = x + self.position_embeddings.weight[:T]  # (T, H) broadcast over the batch
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]  # (H,): every token is in sentence A
        else:
            x = x + self.token_type_embeddings(token_type_ids)  # (B, T, H)
        return self.dropout(self.layer_norm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention, Vaswani et al. 2017, section 3.2.

    Written out explicitly for teaching (``attention="explicit"``): scores = Q K^T / sqrt(d_head), plus an additive
    mask that is a large negative number on padded keys, softmax over keys, dropout, times V. The fused path
    (``attention="sdpa"``) hands the same computation to ``torch.nn.functional.scaled_dot_product_attention``,
    which picks a fast kernel (flash / memory-efficient on GPU) and never stores the (T, T) probabilities; the two
    agree to float rounding (tests/test_bert.py). Query, key and value stay three ``nn.Linear`` layers so the
    names match the contract and learners can inspect each projection.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, T, D)

    def forward(self, x: torch.Tensor, mask: AttentionMask, kind: str | Callable = "sdpa",
                return_probs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``kind``: "sdpa", "explicit", or a function ``attention(q, k, v, attention_mask) -> (context,
        probs)`` on (B, heads, T, D) tensors (a learner's exercise; it applies no dropout)."""
        # x is (B, T, H), or (N, H) when the fused path packs the N real tokens of the batch (see AttentionMask).
        q, k, v = self.query(x), self.key(x), self.value(x)  # each like x
        if mask.packed:
            q, k, v = mask.pad(q), mask.pad(k), mask.pad(v)  # (N, H) -> (B, T, H), zeros at padding
        B, T, H = q.shape
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, heads, T, D)
        probs = None
        if callable(kind):
            context, probs = kind(q, k, v, mask.attention_mask)  # (B, heads, T, D), (B, heads, T, T)
        elif kind == "explicit" or return_probs:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, heads, T, T)
            additive = mask.additive(scores.dtype)
            if additive is not None:
                scores = scores + additive  # (B, 1, 1, T): -large on padded keys
            probs = scores.softmax(dim=-1)  # (B, heads, T, T), each row sums to 1
            context = self.dropout(probs) @ v  # (B, heads, T, D)
        else:
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask.boolean(), dropout_p=self.dropout_p if self.training else 0.0
            )  # (B, heads, T, D)
        context = context.transpose(1, 2).reshape(B, T, H)  # (B, T, H): heads side by side again
        if mask.packed:
            context = mask.unpad(context)  # (N, H): real tokens only
        return self.output(context), probs


class FeedForward(nn.Module):
    """Position-wise feed-forward network: up-projection to intermediate_size, GELU, down-projection."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = _activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))  # (B, T, H) -> (B, T, 4H) -> (B, T, H)


class BertLayer(nn.Module):
    """One encoder layer, post-LayerNorm as in BERT: x = norm(x + drop(attn(x))); x = norm(x + drop(ffn(x)))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: AttentionMask, kind: str | Callable = "sdpa",
                return_probs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.attention(x, mask, kind, return_probs)
        x = self.attention_norm(x + self.dropout(attended))  # add & norm, (B, T, H)
        x = self.ffn_norm(x + self.dropout(self.ffn(x)))  # add & norm, (B, T, H)
        return x, probs


class Pooler(nn.Module):
    """BERT's pooler: tanh(dense(vector of [CLS])). Trained by next-sentence prediction in the original BERT."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, H) from the [CLS] position


class AttentionMask:
    """The padding mask in the forms the attention paths want, built once per forward.

    ``keep`` is ``None`` when there is no padding at all, so the fused kernel runs without a mask. With
    ``packed=True`` (the fused path on a padded batch) the layers work on the N real tokens only, as an (N, H)
    matrix: the linear layers, GELU and LayerNorm act on each token alone, so they need not see the padding,
    and only attention, which mixes tokens, puts them back in (B, T) layout with ``pad`` and takes them out again
    with ``unpad``. On a batch of real sentences (about half padding) this skips half of the matrix products.
    """

    def __init__(self, attention_mask: torch.Tensor | None, packed: bool = False):
        self.attention_mask = attention_mask  # (B, T) 1 real / 0 padding, or None: what a learner's function takes
        self.keep = None if attention_mask is None else attention_mask[:, None, None, :].bool()  # (B, 1, 1, T)
        self._additive: dict[torch.dtype, torch.Tensor] = {}
        self.packed = packed and attention_mask is not None
        if self.packed:
            self.shape = tuple(attention_mask.shape)  # (B, T)
            self.index = attention_mask.reshape(-1).nonzero().squeeze(1)  # (N,): real tokens in the flat B*T grid

    def boolean(self) -> torch.Tensor | None:
        return self.keep  # True = attend

    def additive(self, dtype: torch.dtype) -> torch.Tensor | None:
        if self.keep is None:
            return None
        if dtype not in self._additive:
            zero = torch.zeros((), dtype=dtype, device=self.keep.device)
            neg = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=self.keep.device)
            self._additive[dtype] = torch.where(self.keep, zero, neg)  # (B, 1, 1, T): 0 keep, -large pad
        return self._additive[dtype]

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, x.shape[-1]).index_select(0, self.index)  # (B, T, C) -> (N, C)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        B, T = self.shape
        full = x.new_zeros(B * T, x.shape[-1]).index_copy(0, self.index, x)  # (B*T, C), zeros at padding
        return full.view(B, T, -1)  # (B, T, C)

    def zero_padding(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H) with padded positions set to 0, whatever path computed them."""
        return x if self.keep is None else x * self.keep[:, 0, 0, :, None].to(x.dtype)


class BertModel(nn.Module):
    """minBERT: embeddings, ``num_hidden_layers`` encoder layers, pooler (Devlin et al. 2019).

    Written as small modules whose attribute paths are the parameter-name contract (docs/ARCHITECTURE.md), so
    that ``model.layers[3].attention.query`` is what a learner expects from the paper's figure, and layer-wise
    decay can find each block by name. ``attention="sdpa"`` (the default) is the fused kernel for training and
    inference; ``attention="explicit"`` is the written-out version taught in the notebook. Switch at any time
    with ``set_attention``. Asking for ``output_attentions`` computes the probabilities explicitly for that call
    (the fused kernel never materialises them), so the returned maps are real either way. On a padded batch the
    fused path also skips the padding in every token-wise layer (see ``AttentionMask``); the numbers on real tokens are
    the same as the explicit path's (tests/test_bert.py).

    Taught in notebooks/03_attention_and_minbert.ipynb.
    """

    def __init__(self, config: BertConfig, attention: str = "sdpa"):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = Pooler(config)
        self.set_attention(attention)
        self.implementations = EncoderImplementations()
        self.vocab_file: Path | None = None  # the vocab.txt of the folder it was loaded from (save_pretrained)
        self.apply(self._init_weights)

    # ----- construction -----------------------------------------------------------------------------------------
    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation: N(0, initializer_range) for matrices, zero biases, LayerNorm at identity."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def set_attention(self, attention: str) -> BertModel:
        """Choose ``"sdpa"`` (fused, fast) or ``"explicit"`` (written out, for teaching); returns the model."""
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {attention!r}.")
        self.attention = attention
        return self

    def set_implementations(self, attention: Callable | None = None, layer: Callable | None = None,
                            embeddings: Callable | None = None) -> BertModel:
        """Run your own functions in place of minBERT's (see :class:`EncoderImplementations`); no argument
        restores minBERT's own. ``layer`` is called as ``layer(bert_layer, x, attention_mask,
        attention_fn=attention)``, so your layer uses your attention when both are given. Returns the model.

        ``mtkit.exercises.implementations`` (the ``implementations`` training option) installs a learner's exercises here,
        after checking them against minBERT.
        """
        self.implementations = EncoderImplementations(attention=attention, layer=layer, embeddings=embeddings)
        return self

    # ----- forward ----------------------------------------------------------------------------------------------
    def _check_inputs(self, input_ids, attention_mask, token_type_ids) -> None:
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor of token ids, got {type(input_ids).__name__}; "
                            "run the tokenizer with return_tensors='pt' first.")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}. "
                             "For one sentence, add a batch dimension: input_ids.unsqueeze(0).")
        if input_ids.dtype not in (torch.long, torch.int):
            raise TypeError(f"input_ids must hold integer token ids (torch.long), got {input_ids.dtype}.")
        T = input_ids.shape[1]
        if T > self.config.max_position_embeddings:
            raise ValueError(f"Sequence length {T} exceeds the model's position limit "
                             f"({self.config.max_position_embeddings}); tokenize with a smaller max_length.")
        for name, other in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if other is not None and tuple(other.shape) != tuple(input_ids.shape):
                raise ValueError(f"{name} has shape {tuple(other.shape)} but input_ids has "
                                 f"{tuple(input_ids.shape)}; they come from the same tokenizer call and must match.")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> BertOutput:
        """Encode a batch. ``attention_mask`` None means no padding; ``token_type_ids`` None means all sentence A.

        Padded positions never influence the real tokens (their keys are masked), and their output vectors are set
        to zero on every path (the fused path never computes them), so read only the real positions or mask them.
        """
        self._check_inputs(input_ids, attention_mask, token_type_ids)
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # no padding: the fused kernel runs unmasked (fastest)
        implementations = self.implementations
        if output_attentions and implementations.layer is not None:
            raise ValueError("output_attentions needs minBERT's own layers: this encoder runs a layer function "
                             "of yours (set_implementations(layer=...)), which returns no attention maps.")
        # The fused path packs the real tokens (see AttentionMask); the explicit path, attention maps and functions of a
        # learner (set_implementations) use (B, T, H).
        packed = self.attention == "sdpa" and not output_attentions and implementations.empty
        mask = AttentionMask(attention_mask, packed=packed)
        if implementations.embeddings is None:
            x = self.embeddings(input_ids, token_type_ids)  # (B, T, H)
        else:
            x = implementations.embeddings(self.embeddings, input_ids, token_type_ids)  # (B, T, H)
        if mask.packed:
            x = mask.unpad(x)  # (N, H)
        as_batch = mask.pad if mask.packed else mask.zero_padding  # back to (B, T, H), zeros at padding
        hidden_states = [as_batch(x)] if output_hidden_states else None
        attentions = [] if output_attentions else None
        kind = self.attention if implementations.attention is None else implementations.attention
        for layer in self.layers:
            if implementations.layer is None:
                x, probs = layer(x, mask, kind, output_attentions)
            else:
                x = implementations.layer(layer, x, mask.attention_mask, attention_fn=implementations.attention)
                probs = None
            if output_hidden_states:
                hidden_states.append(as_batch(x))
            if output_attentions:
                attentions.append(probs)
        last = hidden_states[-1] if output_hidden_states else as_batch(x)  # (B, T, H)
        return BertOutput(
            last_hidden_state=last,
            pooler_output=self.pooler(last),
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )