"""MultitaskModel: one shared encoder, one head per task (and optionally a layer shared by the pair tasks).

The multitask setup of the CS224N default project (one minBERT, heads for SST-5, Quora and STS-B), with the
Sentence-BERT layouts of Reimers & Gurevych 2019 ("Sentence-BERT", arXiv 1908.10084):

- single sentence: ``encoder -> pooling -> head(u)``;
- pair, ``layout: bi`` (bi-encoder, "Siamese"): both sentences go through the same encoder -- in **one**
  encoder call, the two batches padded to a common length and stacked -- and the head sees ``(u, v)``;
- pair, ``layout: cross`` (cross-encoder): one pass over ``[CLS] a [SEP] b [SEP]``, the head sees one vector;
- ``shared_pair_layer``: a :class:`mtkit.tasks.heads.SharedPairLayer` applied to the sentence vectors of every pair
  task before its head (report E).

Parameter names are a contract: ``encoder.*`` (minBERT's names, docs/ARCHITECTURE.md) and ``heads.<task>.*``
(``heads.shared_pair.*`` for the shared layer), so layer-wise lr decay (``mtkit.optim.layerwise_lr_groups``),
gradient surgery and the fine-tune modes find the encoder by name.

``forward(task, batch)`` returns the head's raw output (logits or scores), ``predict(task, batch)`` the
prediction in label space (class ids; 0./1. for paraphrase; a similarity score), ``loss(task, batch)`` the
task's loss.

Taught in notebooks/07_multitask_training.ipynb (the pieces in 05 and 06).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtkit.model.build import build_encoder
from mtkit.model.pooling import POOLING_REGISTRY, pool
from mtkit.tasks.heads import SharedPairLayer, head_options, make_head
from mtkit.tasks.losses import check_pairing, loss_options, make_loss

__all__ = ["MultitaskModel", "TaskHead", "build_model", "default_head_loss", "cosine_range_problem", "SHARED_PAIR"]

SHARED_PAIR = "shared_pair"  # key of the shared pair layer in ``heads``

# Defaults by kind of task: (head, loss, head options). Report A's choices for the two classification tasks; a
# cosine head with the cosine-similarity loss for STS (what all-MiniLM-L6-v2 was trained for, so training
# starts from its zero-shot Pearson).
DEFAULTS = {
    "classification": ("sentiment", "cross_entropy", {}),
    "pair_classification": ("bi_encoder", "bce_with_logits", {"features": ["u", "v", "|u-v|"]}),
    "pair_regression": ("cosine", "cosine_similarity", {"cosine_range": [0.0, 1.0]}),
}
CROSS_DEFAULTS = {  # the cross layout has one vector per pair
    "pair_classification": ("cross_encoder", "bce_with_logits", {}),
    "pair_regression": ("cross_encoder", "mse", {}),
}


def default_head_loss(kind: str, layout: str = "bi") -> tuple[str, str, dict]:
    """The default (head, loss, head options) for a kind of task and a pair layout."""
    if layout == "cross" and kind in CROSS_DEFAULTS:
        head, loss, options = CROSS_DEFAULTS[kind]
    else:
        head, loss, options = DEFAULTS[kind]
    return head, loss, dict(options)


@dataclass
class TaskHead:
    """How one task turns encoder states into outputs: its spec, layout, pooling, head and loss names."""
    name: str
    kind: str  # classification | pair_classification | pair_regression
    layout: str  # single | bi | cross
    pooling: str
    head: str
    loss: str
    output: str  # "class_logits" | "binary_logit" | "score" | "bucket_logits"
    label_range: tuple[float, float] | None
    num_labels: int | None


# ------------------------------------------------------------------------------------------------ the model
class MultitaskModel(nn.Module):
    """One encoder, a head per task; ``forward`` / ``predict`` / ``loss`` take the task's name and its batch.

    Build it with :func:`build_model` from a config, or directly: ``MultitaskModel(encoder, task_heads,
    heads, losses, shared_pair)``.

    Taught in notebooks/07_multitask_training.ipynb.
    """

    def __init__(self, encoder: nn.Module, tasks: list[TaskHead], heads: dict[str, nn.Module],
                 losses: dict[str, nn.Module], shared_pair: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        names = [t.name for t in tasks]
        if SHARED_PAIR in names:
            raise ValueError(f"{SHARED_PAIR!r} is reserved for the shared pair layer; rename that task.")
        self.task_info = {t.name: t for t in tasks}
        modules = dict(heads)
        if shared_pair is not None:
            modules[SHARED_PAIR] = shared_pair
        self.heads = nn.ModuleDict(modules)
        self.losses = nn.ModuleDict(losses)  # parameter-free modules; kept out of the optimizer by name
        for name, module in self.losses.items():
            if any(True for _ in module.parameters()):
                raise ValueError(f"the loss of task {name!r} has parameters; put trainable parts in the head.")
        # Pooling functions that replace mtkit.model.pooling's for a mode, e.g. {"mean": your mean_pool}
        # (set_pooling_function; the `implementations` training option installs a learner's).
        self.pooling_functions: dict[str, Callable] = {}

    def set_pooling_function(self, mode: str, fn: Callable | None) -> None:
        """Pool with ``fn(last_hidden_state, attention_mask) -> (B, H)`` wherever a task uses ``mode``; None
        restores mtkit.model.pooling's."""
        if mode not in POOLING_REGISTRY:
            raise ValueError(f"pooling mode {mode!r} is not known; use one of {list(POOLING_REGISTRY.names)}.")
        if fn is None:
            self.pooling_functions.pop(mode, None)
        else:
            self.pooling_functions[mode] = fn

    @property
    def task_names(self) -> list[str]:
        return list(self.task_info)

    # ------------------------------------------------------------------------------------------------ encoding
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None,
               pooling: str) -> torch.Tensor:
        """Token ids (B, T) -> pooled sentence vectors (B, H)."""
        out = self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        fn = self.pooling_functions.get(pooling)
        if fn is not None:
            return fn(out.last_hidden_state, attention_mask)  # (B, H)
        return pool(out.last_hidden_state, attention_mask, pooling)  # (B, H)

    def encode_pair(self, batch: dict, pooling: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Both sides of a bi-encoder batch in one encoder call: pad to a common length, stack, split.

        Padding is masked, so each sentence's vector is what encoding it alone gives (to float rounding)."""
        ids1, ids2 = batch["input_ids_1"], batch["input_ids_2"]
        B, T = ids1.shape[0], max(ids1.shape[1], ids2.shape[1])
        pad_id = getattr(getattr(self.encoder, "config", None), "pad_token_id", 0)

        def widen(x: torch.Tensor, value: int) -> torch.Tensor:
            return F.pad(x, (0, T - x.shape[1]), value=value)  # (B, T)

        ids = torch.cat([widen(ids1, pad_id), widen(ids2, pad_id)])  # (2B, T)
        mask = torch.cat([widen(batch["attention_mask_1"], 0), widen(batch["attention_mask_2"], 0)])  # (2B, T)
        types1, types2 = batch.get("token_type_ids_1"), batch.get("token_type_ids_2")
        types = None if types1 is None else torch.cat([widen(types1, 0), widen(types2, 0)])  # (2B, T)
        pooled = self.encode(ids, mask, types, pooling)  # (2B, H)
        return pooled[:B], pooled[B:]  # (B, H), (B, H)

    def features(self, task: str, batch: dict) -> tuple[torch.Tensor, ...]:
        """What the head takes: ``(u,)`` for single sentences and cross pairs, ``(u, v)`` for bi pairs, after
        the shared pair layer when there is one."""
        info = self._info(task)
        if info.layout == "bi":
            self._need(batch, ("input_ids_1", "attention_mask_1", "input_ids_2", "attention_mask_2"), task,
                       "a bi-encoder pair batch")
            vectors = self.encode_pair(batch, info.pooling)
        else:
            self._need(batch, ("input_ids", "attention_mask"), task,
                       "a single-sentence batch" if info.layout == "single" else "a cross-encoder pair batch")
            vectors = (self.encode(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"),
                                   info.pooling),)
        if info.kind != "classification" and SHARED_PAIR in self.heads:
            shared = self.heads[SHARED_PAIR]
            vectors = tuple(shared(x) for x in vectors)
        return vectors

    # ------------------------------------------------------------------------------------------------ outputs
    def forward(self, task: str, batch: dict) -> torch.Tensor:
        """The head's raw output for ``task``: logits (B, K) or (B,), or scores (B,)."""
        return self.heads[task](*self.features(task, batch))

    def to_labels(self, task: str, output: torch.Tensor) -> torch.Tensor:
        """Raw outputs -> predictions in label space: class ids (long), 0./1. (paraphrase), or scores."""
        info = self._info(task)
        if info.output == "class_logits":
            labels = output.argmax(dim=-1)  # (B,)
            return labels.float() if info.kind == "pair_classification" else labels
        if info.output == "binary_logit":
            return (output > 0).float()  # sigmoid(z) > 0.5  <=>  z > 0
        if info.output == "bucket_logits":
            return self.heads[task].scores(output)  # expected score over the bucket centres (B,)
        scores = output.float()  # (B,)
        if info.kind == "pair_classification":  # a score on the label range: threshold at its middle
            lo, hi = info.label_range or (0.0, 1.0)
            return (scores > (lo + hi) / 2).float()
        return scores

    @torch.no_grad()
    def predict(self, task: str, batch: dict) -> torch.Tensor:
        return self.to_labels(task, self(task, batch))

    def loss(self, task: str, batch: dict) -> torch.Tensor:
        """The task's loss on a labeled batch (a scalar)."""
        if "labels" not in batch:
            raise ValueError(f"task {task!r}: the batch has no 'labels' (an unlabeled test split?); use predict().")
        features = self.features(task, batch)
        return loss_from_features(self.heads[task], self.losses[task], features, batch["labels"],
                                  self._info(task))

    # ------------------------------------------------------------------------------------------------ checks
    def _info(self, task: str) -> TaskHead:
        if task not in self.task_info:
            raise KeyError(f"this model has no task {task!r}; its tasks are {self.task_names}.")
        return self.task_info[task]

    @staticmethod
    def _need(batch: dict, keys, task: str, what: str) -> None:
        missing = [k for k in keys if k not in batch]
        if missing:
            raise KeyError(f"task {task!r} expects {what} with keys {list(keys)}; the batch lacks {missing} (it has "
                           f"{sorted(k for k in batch if k != 'ids')}). Check the task's layout (bi / cross).")

    def describe(self) -> str:
        lines = []
        for t in self.task_info.values():
            lines.append(f"{t.name:>8}: {t.layout:<6} pooling={t.pooling:<4} head={t.head:<18} loss={t.loss}")
        if SHARED_PAIR in self.heads:
            lines.append(f"  shared pair layer: {self.heads[SHARED_PAIR]}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ losses
def _loss_takes(loss: nn.Module) -> str:
    """What a loss consumes: ``"outputs"`` (head output and labels) or ``"embeddings"`` (u, v and labels)."""
    takes = getattr(loss, "takes", None) or getattr(loss, "inputs", None)
    if takes in ("embeddings", "outputs"):
        return takes
    return "embeddings" if getattr(loss, "needs_embeddings", False) else "outputs"


def loss_from_features(head: nn.Module, loss: nn.Module, features: tuple[torch.Tensor, ...], labels: torch.Tensor,
                       info: TaskHead) -> torch.Tensor:
    """The loss of one batch from the head's inputs: embedding losses (cosine, CoSENT, MNRL, cosine-embedding)
    take the sentence vectors, the others the head's output."""
    if _loss_takes(loss) == "embeddings":
        if len(features) != 2:
            raise ValueError(f"task {info.name!r}: loss {info.loss!r} compares the two sentence vectors u and v, so it "
                             "needs the bi-encoder layout (layout: bi), not one vector per pair.")
        u, v = features
        return loss(u.float(), v.float(), labels)
    output = head(*features)
    if info.loss == "cross_entropy" and labels.is_floating_point():
        labels = labels.round().long()  # 0./1. paraphrase labels as class ids for a 2-logit softmax head
    if output.is_floating_point():
        output = output.float()  # losses in float32 under bf16 autocast
    return loss(output, labels)


# ------------------------------------------------------------------------------------------------ building
def _accepts(kind: str) -> dict:
    return head_options(kind)


def _output_kind(head_kind: str, loss_name: str, head: nn.Module, kind: str) -> str:
    if head_kind == "buckets":
        return "bucket_logits"
    out_dim = getattr(head, "out_dim", None) or getattr(head, "num_labels", None)
    if head_kind == "sentiment" or (out_dim is not None and out_dim > 1):
        return "class_logits"
    if loss_name in BINARY_LOGIT_LOSSES and head_kind in ("bi_encoder", "cross_encoder"):
        return "binary_logit"
    return "score"


BINARY_LOGIT_LOSSES = ("bce_with_logits",)


def cosine_range_problem(head_kind: str, head_options: dict, loss_name: str, loss_options: dict) -> str | None:
    """Why a cosine head cannot predict what its loss trains, or None when it can.

    A :class:`mtkit.tasks.heads.CosineSimilarityHead` predicts by mapping cos(u, v) linearly from its ``cosine_range``
    onto the labels. An embedding loss that pulls cosines toward a range of its own (``loss.cosine_range``:
    ``(margin, 1)`` for ``cosine_embedding``, ``target_range`` for ``cosine_similarity``) therefore needs the
    head to map that same range, or every prediction is shifted: with ``cosine_embedding`` (margin 0) and the
    head's default range [-1, 1], the 0.5 threshold of a binary task sits at cos 0, and a pretrained encoder
    puts almost every pair above it. ``cosine_similarity`` gives the head its ``target_range`` when the head has
    none (build_task_head); every other range must be written in ``head_options``. Losses that only rank
    (``cosent``, ``multiple_negatives_ranking``) and losses on the head's output (``mse``) need no range.
    """
    if head_kind != "cosine":
        return None
    try:
        wanted = getattr(make_loss(loss_name, **loss_options), "cosine_range", None)
    except (TypeError, ValueError):
        return None  # a bad loss name or option: build_task_head explains that one
    if wanted is None:
        return None
    wanted = [float(x) for x in wanted]
    given = head_options.get("cosine_range")
    if given is None and loss_name == "cosine_similarity":
        return None  # the head is given the loss's target_range
    what = {"cosine_embedding": f"dissimilar pairs to at most the margin {wanted[0]:g}, similar ones to 1",
            "cosine_similarity": "the labels' range mapped onto its target_range"}.get(loss_name, "")
    trains = f"loss {loss_name!r} trains the cosines toward [{wanted[0]:g}, {wanted[1]:g}]" + (
        f" ({what})" if what else "")
    fix = f"set head_options: {{cosine_range: [{wanted[0]:g}, {wanted[1]:g}]}}"
    if given is None:
        return (f"the cosine head was given no cosine_range, but {trains}. Without one the head maps [-1, 1] onto "
                f"the labels, so its predictions are shifted (for a binary task the 0.5 threshold falls at cos 0 "
                f"instead of {sum(wanted) / 2:g}, and a pretrained encoder puts nearly every pair above it); {fix}")
    try:
        given_range = [float(x) for x in given]
    except (TypeError, ValueError):
        return None  # not two numbers: the head's own check explains that
    if given_range != wanted:
        return (f"the cosine head maps cosine_range [{given_range[0]:g}, {given_range[1]:g}] onto the labels, but "
                f"{trains}, so its predictions would be shifted; {fix}")
    return None


def build_task_head(spec, options, config, hidden: int) -> tuple[TaskHead, nn.Module, nn.Module]:
    """The head and the loss of one task from its spec (kind, num_labels, label_range) and its TaskConfig."""
    layout = "single" if not spec.is_pair else (options.layout or "bi")
    default_head, default_loss, default_options = default_head_loss(spec.kind, layout)
    head_kind = options.head or default_head
    loss_name = options.loss or (default_loss if head_kind == default_head else _loss_for(head_kind, spec.kind))
    try:
        check_pairing(head_kind, loss_name)
    except ValueError as err:
        raise ValueError(f"task {spec.name!r}: {err}") from None
    allowed = _accepts(head_kind)
    head_opts = dict(options.head_options)
    loss_opts = dict(options.loss_options)
    # options the head and the loss must agree on
    if head_kind == "cosine" and loss_name == "cosine_similarity":  # predict on the scale the loss trains
        head_opts.setdefault("cosine_range", list(loss_opts.get("target_range", (0.0, 1.0))))
    if head_kind == "buckets":
        if "num_buckets" in head_opts:
            loss_opts.setdefault("num_buckets", head_opts["num_buckets"])
        elif "num_buckets" in loss_opts:
            head_opts["num_buckets"] = loss_opts["num_buckets"]
    if head_kind == default_head:
        for key, value in default_options.items():
            head_opts.setdefault(key, value)
    problem = cosine_range_problem(head_kind, head_opts, loss_name, loss_opts)
    if problem:
        raise ValueError(f"task {spec.name!r}: {problem}.")
    label_range = spec.label_range if spec.label_range is not None else (
        (0.0, 1.0) if spec.kind == "pair_classification" else None)
    if "num_labels" in allowed and spec.num_labels is not None:
        head_opts.setdefault("num_labels", spec.num_labels)
    if "label_range" in allowed and label_range is not None:
        head_opts.setdefault("label_range", list(label_range))
    if "dropout" in allowed:
        head_opts.setdefault("dropout", config.dropout)
    if "out_dim" in allowed and "out_dim" not in head_opts:
        multi = loss_name in ("cross_entropy", "softmax") and spec.kind != "pair_regression"
        head_opts["out_dim"] = (spec.num_labels or 2) if multi else 1
    if "features" in allowed and layout == "cross":
        head_opts["features"] = None
    if layout == "bi" and head_kind == "cross_encoder":
        raise ValueError(f"task {spec.name!r}: the cross_encoder head takes one vector of a joined pair; set "
                         "layout: cross for it (or use a bi-encoder head such as bi_encoder or cosine).")
    try:
        head = make_head(head_kind, hidden, **head_opts)
    except (TypeError, ValueError) as err:
        raise ValueError(f"task {spec.name!r}: {err}") from None
    wanted = 2 if layout == "bi" else 1
    if getattr(head, "num_inputs", wanted) != wanted:
        what = {"bi": "two sentence vectors (u, v)", "cross": "one vector of the joined pair",
                "single": "one sentence vector"}[layout]
        raise ValueError(f"task {spec.name!r}: the {head_kind!r} head takes {head.num_inputs} vector(s), but the "
                         f"{layout} layout gives it {what}; choose a head for this layout (heads for pairs: "
                         "bi_encoder, cosine, sigmoid_regression, buckets; cross_encoder with layout: cross).")
    try:
        loss = make_loss(loss_name, **_loss_defaults(loss_name, spec, loss_opts))
    except (TypeError, ValueError) as err:
        raise ValueError(f"task {spec.name!r}: {err}") from None
    if layout == "cross" and _loss_takes(loss) == "embeddings":
        raise ValueError(f"task {spec.name!r}: loss {loss_name!r} compares the sentence vectors u and v, which the "
                         "cross layout does not have; use layout: bi, or a loss on the head's output "
                         "(bce_with_logits, mse, cross_entropy).")
    info = TaskHead(name=spec.name, kind=spec.kind, layout=layout, pooling=options.pooling or config.pooling,
                    head=head_kind, loss=loss_name, output=_output_kind(head_kind, loss_name, head, spec.kind),
                    label_range=tuple(label_range) if label_range is not None else None, num_labels=spec.num_labels)
    return info, head, loss


def _loss_for(head_kind: str, kind: str) -> str:
    """A loss that fits a non-default head."""
    if head_kind == "sentiment":
        return "cross_entropy"
    if head_kind == "buckets":
        return "bucketed_cross_entropy"
    if head_kind == "cosine":
        return "cosine_similarity"
    if head_kind == "sigmoid_regression":
        return "mse"
    return "bce_with_logits" if kind == "pair_classification" else "mse"


def _loss_defaults(loss_name: str, spec, options: dict) -> dict:
    """Fill loss options that follow from the task's data (the label range), when the loss accepts them."""
    try:
        allowed = loss_options(loss_name)
    except (ImportError, ValueError, KeyError):
        return options
    out = dict(options)
    if "label_range" in allowed and spec.label_range is not None:
        out.setdefault("label_range", list(spec.label_range))
    return out


def build_model(config, specs, encoder: nn.Module | None = None) -> MultitaskModel:
    """A :class:`MultitaskModel` for ``specs`` (TaskSpecs with ``num_labels`` known) as ``config`` says.

    ``encoder`` defaults to the one ``config.encoder`` names (see ``mtkit.model.build.build_encoder``).
    """
    if encoder is None:
        encoder = build_encoder(config.encoder, config.encoder_dropout)
    hidden = encoder.config.hidden_size
    shared = None
    pair_hidden = hidden
    if config.shared_pair_layer is not None and any(s.is_pair for s in specs):
        shared = SharedPairLayer(hidden, config.shared_pair_layer, dropout=config.dropout)
        pair_hidden = shared.out_dim
    infos, heads, losses = [], {}, {}
    for spec in specs:
        options = config.task(spec.name)
        info, head, loss = build_task_head(spec, options, config, pair_hidden if spec.is_pair else hidden)
        infos.append(info)
        heads[spec.name] = head
        losses[spec.name] = loss
    return MultitaskModel(encoder, infos, heads, losses, shared)
