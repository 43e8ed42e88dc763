"""Fine-tune modes: which parameters train. ``full-model``, ``last-linear-layer`` (frozen encoder) and
``two-stage`` (heads first, then the whole model from there).

Freezing the pretrained network and training a new top, then unfreezing, is the recipe of Howard & Ruder 2018,
"Universal Language Model Fine-tuning for Text Classification" (arXiv 1801.06146, gradual unfreezing), and of
Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution"
(arXiv 2202.10054, linear probing then fine-tuning). The mode names are those of the CS224N minBERT project
(``--fine-tune-mode``); ``two-stage`` is the "heads, then full model from the trained heads" baseline of the
reports (docs/REPORTS.md, reports B and D).

A frozen encoder has ``requires_grad=False`` on every parameter, so autograd records nothing in its forward
pass: no encoder gradients are computed and no activations are kept for backward. Its dropout still runs in
``train()`` mode, as in the CS224N starter code.

Taught in notebooks/05_sentiment_finetuning.ipynb.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torch.optim import Optimizer

from mtkit.optim.adamw import AdamW

__all__ = ["FINETUNE_MODES", "Stage", "TwoStagePlan", "apply_finetune_mode", "check_finetune_mode",
           "start_stage_two"]

FINETUNE_MODES = ("full-model", "last-linear-layer", "two-stage")


def check_finetune_mode(mode: str) -> str:
    """Return ``mode`` if it is one of ``FINETUNE_MODES``; otherwise a ValueError that lists them."""
    if mode not in FINETUNE_MODES:
        raise ValueError(f"Unknown fine-tune mode {mode!r}; choose one of {', '.join(map(repr, FINETUNE_MODES))}.")
    return mode


def _encoder_of(model: nn.Module, encoder_attr: str) -> nn.Module:
    encoder = getattr(model, encoder_attr, None)
    if not isinstance(encoder, nn.Module):
        raise ValueError(f"{type(model).__name__} has no submodule {encoder_attr!r} to freeze or unfreeze; pass "
                         "encoder_attr= the attribute holding the BERT encoder (a MultitaskModel uses 'encoder').")
    return encoder


def apply_finetune_mode(model: nn.Module, mode: str, encoder_attr: str = "encoder") -> str:
    """Set ``requires_grad`` on every parameter for ``mode`` and return a one-line description.

    * ``"full-model"``: everything trains.
    * ``"last-linear-layer"``: the encoder (``model.<encoder_attr>``) is frozen; everything else (the heads) trains.
    * ``"two-stage"``: stage 1 of the plan, the same as ``"last-linear-layer"``; call ``start_stage_two`` when
      ``TwoStagePlan.stage_for_epoch`` says stage 2 has begun.

    Build the optimizer *after* calling this, from the parameters that require grad.

    Taught in notebooks/05_sentiment_finetuning.ipynb.
    """
    check_finetune_mode(mode)
    encoder = _encoder_of(model, encoder_attr)
    model.requires_grad_(True)
    if mode == "full-model":
        n = sum(p.numel() for p in model.parameters())
        return f"full-model: all {n:,} parameters train"
    encoder.requires_grad_(False)
    n_frozen = sum(p.numel() for p in encoder.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n_train == 0:
        raise ValueError(f"Mode {mode!r} freezes {encoder_attr!r}, but the model has no other parameters to train; "
                         "add task heads first, or use 'full-model'.")
    stage = " (stage 1 of two-stage)" if mode == "two-stage" else ""
    return f"{mode}{stage}: encoder frozen ({n_frozen:,} parameters), {n_train:,} head parameters train"


@dataclass(frozen=True)
class Stage:
    """What applies in one epoch: the stage number (1 or 2), its fine-tune mode and its learning rate."""

    number: int
    mode: str
    lr: float


@dataclass(frozen=True)
class TwoStagePlan:
    """Train the heads on a frozen encoder for ``head_epochs`` epochs, then the whole model from there.

    Report B uses lr 1e-3 for the heads and 1e-5 for the full model; report D's best baseline is this plan.
    Epochs count from 0: epochs ``0 .. head_epochs - 1`` are stage 1, the rest stage 2.
    """

    head_epochs: int  # epochs of stage 1 (heads only, encoder frozen); >= 1
    head_lr: float = 1e-3  # lr of stage 1
    full_lr: float = 1e-5  # lr of stage 2 (whole model)

    def __post_init__(self) -> None:
        if int(self.head_epochs) != self.head_epochs or self.head_epochs < 1:
            raise ValueError(f"head_epochs={self.head_epochs!r} must be a whole number >= 1; with 0 head epochs "
                             "use the 'full-model' mode instead.")
        for name in ("head_lr", "full_lr"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 0.")

    def stage_for_epoch(self, epoch: int) -> Stage:
        """Which stage, mode and lr apply in ``epoch`` (counted from 0)."""
        if epoch < 0:
            raise ValueError(f"epoch={epoch} must be >= 0 (epochs count from 0).")
        if epoch < self.head_epochs:
            return Stage(1, "last-linear-layer", self.head_lr)
        return Stage(2, "full-model", self.full_lr)

    def switches_at(self, epoch: int) -> bool:
        """True for the first epoch of stage 2: the trainer calls ``start_stage_two`` before it."""
        return epoch == self.head_epochs


def start_stage_two(model: nn.Module, plan: TwoStagePlan,
                    make_optimizer: Callable[[nn.Module, float], Optimizer] | None = None,
                    encoder_attr: str = "encoder") -> Optimizer:
    """Unfreeze the encoder and return a new optimizer over the whole model at ``plan.full_lr``.

    The stage-1 optimizer (and its moment estimates for the heads) is discarded: stage 2 is a new fine-tuning
    run that starts from the trained heads. ``make_optimizer(model, lr)`` builds it; the default is
    ``mtkit.optim.AdamW`` over every parameter. For layer-wise decay pass e.g.
    ``lambda m, lr: AdamW(layerwise_lr_groups(m, lr, 0.95, 0.01).groups)``. Build a new lr schedule for the
    new optimizer too.
    """
    apply_finetune_mode(model, "full-model", encoder_attr)
    if make_optimizer is None:

        return AdamW([p for p in model.parameters() if p.requires_grad], lr=plan.full_lr)
    return make_optimizer(model, plan.full_lr)
