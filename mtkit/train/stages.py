"""The fine-tune stages and what each builds: the mode, a fresh optimizer (layer-wise lr groups), its lr
schedule and the gradient surgery."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mtkit.optim import AdamW, TwoStagePlan, apply_finetune_mode, make_scheduler
from mtkit.optim.llrd import layerwise_lr_groups
from mtkit.surgery import GradientSurgery
from mtkit.train.config import TrainConfig
from mtkit.train.feed import derive_seed

__all__ = ['Stages', 'apply_fine_tune_mode', 'build_optimizer']


# ------------------------------------------------------------------------------------------------ helpers
def apply_fine_tune_mode(model, mode: str) -> str:
    """``full-model``: everything trains; ``last-linear-layer``: the encoder is frozen and only heads train
    (``mtkit.optim.apply_finetune_mode``)."""
    return apply_finetune_mode(model, mode)


def build_optimizer(model, config: TrainConfig, lr: float, head_lr: float | None = None,
                    step_fn: Callable | None = None):
    """AdamW over parameter groups: layer-wise lr decay when ``llrd_decay`` is set, no weight decay on biases and
    LayerNorm, heads at ``head_lr`` (default ``lr``). ``step_fn``: a learner's ``adamw_step`` that mtkit's AdamW
    runs instead of its own update (``implementations``)."""
    decay = config.llrd_decay if config.llrd_decay is not None else 1.0
    groups = layerwise_lr_groups(model, lr=lr, decay=decay, weight_decay=config.weight_decay,
                                 head_lr=head_lr).groups  # head_lr: only the heads (the top layer is depth 0 too)
    options = dict(config.optimizer_options)
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    if config.optimizer == "adamw":
        return AdamW(groups, lr=lr, weight_decay=config.weight_decay, step_fn=step_fn, **options)
    if step_fn is not None:
        raise ValueError("a learner's adamw_step runs inside mtkit's AdamW: use optimizer 'adamw', not "
                         f"{config.optimizer!r}.")
    options.pop("correct_bias", None)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=config.weight_decay, **options)


class Stages:
    """The Trainer's fine-tune stages (a mixin of :class:`mtkit.train.trainer.Trainer`): entering a stage sets
    ``run.stage`` and builds ``optimizer``, ``scheduler`` and ``surgery``."""

    def stages(self) -> list[dict]:
        """The fine-tune stages: one for full-model / last-linear-layer, two for two-stage (heads first, then
        the whole model from the trained heads; ``mtkit.optim.TwoStagePlan``)."""
        c = self.config
        if c.fine_tune_mode != "two-stage":
            return [{"mode": c.fine_tune_mode, "lr": c.lr, "first_epoch": 0, "epochs": c.epochs}]
        plan = TwoStagePlan(head_epochs=int(c.fine_tune_options.get("stage1_epochs", 1)),
                            head_lr=float(c.fine_tune_options.get("stage1_lr", 1e-3)), full_lr=c.lr)
        if plan.head_epochs >= c.epochs:
            raise ValueError(f"fine_tune_mode 'two-stage' needs fine_tune_options.stage1_epochs ({plan.head_epochs}) "
                             f"< epochs ({c.epochs}): stage 1 trains the heads, stage 2 the whole model.")
        one, two = plan.stage_for_epoch(0), plan.stage_for_epoch(plan.head_epochs)
        return [{"mode": one.mode, "lr": one.lr, "first_epoch": 0, "epochs": plan.head_epochs},
                {"mode": two.mode, "lr": two.lr, "first_epoch": plan.head_epochs, "epochs": c.epochs - plan.head_epochs}]

    def _stage_of(self, epoch: int) -> int:
        stages = self.stages()
        return max(i for i, s in enumerate(stages) if s["first_epoch"] <= epoch)

    def _stage_steps(self, stage: dict) -> int:
        """Optimizer steps of a stage, for its lr schedule (the plan lengths, whatever the rng draws)."""
        sizes, accum = self.batches_per_pass(), self.config.grad_accum_steps
        epochs = range(stage["first_epoch"], stage["first_epoch"] + stage["epochs"])
        return max(1, sum(math.ceil(self.schedule.num_steps(e, sizes) / accum) for e in epochs))

    def _enter_stage(self, index: int) -> None:
        """Set the fine-tune mode and build a fresh optimizer, lr schedule and surgery for stage ``index``."""
        config = self.config
        stage = self.stages()[index]
        self.run.stage = index
        apply_fine_tune_mode(self.model, stage["mode"])
        head_lr = None if (config.fine_tune_mode == "two-stage" and index == 0) else config.head_lr
        hooks = self.implementations.hooks if self.implementations is not None else None
        self.optimizer = build_optimizer(self.model, config, lr=stage["lr"], head_lr=head_lr,
                                         step_fn=hooks.adamw_step if hooks else None)
        total = self._stage_steps(stage)
        if config.scheduler_steps is not None and index == len(self.stages()) - 1:
            # the last stage's schedule ends at scheduler_steps, counted from the start of the run
            before = sum(self._stage_steps(s) for s in self.stages()[:index])
            total = max(1, config.scheduler_steps - before)
        self.scheduler = make_scheduler(config.scheduler, self.optimizer, num_training_steps=total,
                                        warmup_ratio=config.warmup_ratio, **config.scheduler_options)
        self.surgery = self._build_surgery()

    def _build_surgery(self):
        config = self.config
        shared = [(f"encoder.{n}", p) for n, p in self.model.encoder.named_parameters() if p.requires_grad]
        if not shared or (config.surgery == "none" and not config.telemetry_every):
            if config.surgery != "none" and not shared and self.verbose:
                print(f"[mtkit] surgery {config.surgery!r} has nothing to do while the encoder is frozen.")
            return None
        if len(self.tasks) < 2 and config.surgery == "none":
            return None
        options = dict(config.surgery_options)
        surgery = GradientSurgery(shared, list(self.tasks), method=config.surgery, main_task=options.get("main_task"),
                                  aux_weight=options.get("aux_weight", 0.3), reduction=options.get("reduction", "sum"),
                                  telemetry_every=config.telemetry_every,
                                  num_layers=self.model.encoder.config.num_hidden_layers,
                                  generator=torch.Generator().manual_seed(derive_seed(config.seed, "surgery")))
        if self.implementations is not None:
            surgery.pcgrad_fn = self.implementations.hooks.pcgrad
        return surgery
