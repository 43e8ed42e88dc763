"""AdamW written from scratch, with the semantics of the CS224N minBERT handout.

Adam is Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization" (arXiv 1412.6980); decoupled weight
decay is Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (arXiv 1711.05101). The update
follows the CS224N default final project (``optimizer.py``), which is also the legacy Hugging Face
``transformers.AdamW``: the "efficient" bias correction from the end of section 2 of the Adam paper, eps added
to sqrt(v), and weight decay applied after the Adam update with the learning rate folded in.

The decay is computed as the formula reads, ``p <- p - lr * weight_decay * p``, a scaled add
(``p.add_(p, alpha=-lr * weight_decay)``, as the legacy ``transformers.AdamW`` wrote it) that rounds only its
result. The factor form ``p.mul_(1 - lr * weight_decay)`` (torch.optim.AdamW's) first rounds the factor to a
multiple of 2^-24 in float32: at lr * weight_decay = 1e-7 (lr 1e-5, weight decay 0.01) every weight then decays
about 1.15x too fast on average, every step. Below 2^-25 (3e-8) relative no float32 weight can absorb the decay
step in either form (between 3e-8 and 6e-8 only some can); notebook 04 measures both and shows the remedies
(float64 or compensated master weights, stochastic rounding).

Two implementations of the same update live here:

* ``adamw_loop``: one parameter at a time, one line per formula. This is the version to read (and the one
  learners write in notebooks/04_adamw.ipynb).
* ``adamw_foreach``: the same arithmetic on whole lists of tensors with ``torch._foreach_*`` ops, so one call
  updates every parameter of a group. This is the default on a GPU, where it launches a few kernels per group
  instead of several per parameter; on CPU the loop is as fast, so it stays the default there.

tests/test_optim_adamw.py checks both against a plain implementation of the formulas and against each other.

Taught in notebooks/04_adamw.ipynb.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import partial

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["AdamW", "adamw_loop", "adamw_foreach", "adamw_with"]


def _step_sizes(steps: list[int], lr: float, beta1: float, beta2: float, correct_bias: bool) -> list[float]:
    """alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t) per parameter (each keeps its own step count t)."""
    if not correct_bias:
        return [lr] * len(steps)
    return [lr * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t) for t in steps]


def adamw_loop(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
               steps: list[int], *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
               correct_bias: bool) -> None:
    """One AdamW step, one parameter at a time (the readable version). Updates every tensor in place.

    ``steps`` holds each parameter's step count t *after* this step (1 on the first step).
    """
    for p, g, m, v, t in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        # 1. Moments: m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
        m.mul_(beta1).add_(g, alpha=1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        # 2. Bias correction, "efficient" form: fold both corrections into the step size.
        alpha = lr * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t) if correct_bias else lr
        # 3. Adam update: p <- p - alpha * m / (sqrt(v) + eps)   (eps added to sqrt(v), not to sqrt(v_hat))
        denom = v.sqrt().add_(eps)
        p.addcdiv_(m, denom, value=-alpha)
        # 4. Decoupled weight decay after the update: p <- p - lr * wd * p, as a scaled add (one rounding, of
        #    the result). Not p.mul_(1 - lr * wd): in float32 the factor itself is rounded to a multiple of
        #    2^-24, which biases every small decay (1.15x too fast at lr * wd = 1e-7; notebook 04).
        if weight_decay != 0.0:
            p.add_(p, alpha=-lr * weight_decay)


def adamw_foreach(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
                  steps: list[int], *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                  correct_bias: bool) -> None:
    """The same step as ``adamw_loop`` on whole lists at once with ``torch._foreach_*`` ops.

    Each op below is the list version of the line with the same number in ``adamw_loop``; on a GPU one op
    launches a few kernels for all tensors instead of one per tensor. All tensors must share device and dtype.
    """
    if not params:
        return
    # 1. Moments.
    torch._foreach_mul_(exp_avgs, beta1)
    torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
    # 2. Bias correction folded into one (negative) step size per parameter.
    neg_alphas = [-a for a in _step_sizes(steps, lr, beta1, beta2, correct_bias)]
    # 3. Adam update.
    denoms = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_add_(denoms, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denoms, neg_alphas)
    # 4. Decoupled weight decay after the update, as a scaled add (see ``adamw_loop``).
    if weight_decay != 0.0:
        torch._foreach_add_(params, params, alpha=-lr * weight_decay)


def adamw_with(step_fn: Callable, params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
               exp_avg_sqs: list[Tensor], steps: list[int], *, lr: float, beta1: float, beta2: float, eps: float,
               weight_decay: float, correct_bias: bool) -> None:
    """The same step with a learner's ``adamw_step`` (exercises/adamw.py), called once per parameter::

        step_fn(param, grad, exp_avg, exp_avg_sq, step, lr=, beta1=, beta2=, eps=, weight_decay=, correct_bias=)

    It updates the three tensors in place, as ``adamw_loop`` does, so the optimizer's state stays in the same
    tensors and ``state_dict()`` and resuming work unchanged.
    """
    for p, g, m, v, t in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        step_fn(p, g, m, v, t, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                correct_bias=correct_bias)


class AdamW(Optimizer):
    """AdamW as in the CS224N minBERT handout.

    For each parameter p with gradient g, at step t (starting at 1)::

        m <- b1 * m + (1 - b1) * g
        v <- b2 * v + (1 - b2) * g * g
        alpha_t = lr * sqrt(1 - b2^t) / (1 - b1^t)        # lr when correct_bias=False
        p <- p - alpha_t * m / (sqrt(v) + eps)
        p <- p - lr * weight_decay * p                    # after the Adam update

    **How this differs from ``torch.optim.AdamW``.** torch computes::

        p <- p * (1 - lr * weight_decay)                  # before the Adam update
        p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    1. *Where eps goes.* torch adds eps to sqrt(v_hat) = sqrt(v) / sqrt(1 - b2^t); here eps is added to sqrt(v).
       Ours equals torch's with an effective eps / sqrt(1 - b2^t), which is larger early on (about 31.6 * eps at
       t = 1 with b2 = 0.999, 1.26 * eps at t = 1000), so early steps of parameters with tiny gradients are
       damped a little more. With eps = 0 the two Adam steps are the same.
    2. *When the decay happens.* torch decays p before the Adam step, this class after it: ours gives
       (p - u) * (1 - lr * wd), torch gives p * (1 - lr * wd) - u, a difference of lr * wd * u per step.
       With weight_decay = 0 there is no difference.
    3. *How the decay is rounded.* torch multiplies by the factor (1 - lr * wd), which float32 rounds to a
       multiple of 2^-24 before it is used; here the decay is the scaled add p - lr * wd * p, which rounds only
       the result. In float32 small decays differ: 1.15x the intended decay for torch at lr * wd = 1e-7, 0.96x
       here (the result's own rounding), and the same formula in float64 is matched more closely.
    4. *Defaults.* eps 1e-6 and weight_decay 0.0 here; torch uses eps 1e-8 and weight_decay 1e-2.

    In both, the decay uses the group's current (scheduled) lr, so warmup and layer-wise decay also scale it.

    It is a regular ``torch.optim.Optimizer``: parameter groups (each may override every hyperparameter),
    ``state_dict()`` / ``load_state_dict()`` for resuming, closures, CPU and CUDA.

    Args:
        params: parameters or parameter groups (dicts with a ``"params"`` key), as for any torch optimizer.
        lr: learning rate (>= 0).
        betas: decay rates (b1, b2) of the first and second moment estimates, each in [0, 1).
        eps: added to sqrt(v) in the denominator (>= 0).
        weight_decay: decoupled weight decay coefficient (>= 0).
        correct_bias: apply Adam's bias correction (the handout's default, True). False reproduces the
            original BERT optimizer, which skipped it.
        foreach: True runs ``adamw_foreach`` (once per device and dtype in a group), False runs ``adamw_loop``.
            None (default) picks foreach for parameters on an accelerator (CUDA, MPS...) and the loop on CPU,
            where it is as fast or faster (bench/bench_optimizer.py), as torch also finds.
        step_fn: a learner's ``adamw_step`` to run instead of the built-in update, one parameter at a time
            (:func:`adamw_with`; the ``implementations`` training option passes it after checking it). It is
            not part of the state dict.

    Taught in notebooks/04_adamw.ipynb.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0,
                 correct_bias: bool = True, *, foreach: bool | None = None, step_fn: Callable | None = None):
        _check_hyperparameters(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        correct_bias=correct_bias, foreach=foreach)
        super().__init__(params, defaults)
        if step_fn is not None and not callable(step_fn):
            raise TypeError(f"step_fn must be a function like adamw_step(param, grad, exp_avg, exp_avg_sq, step, "
                            f"...), got {type(step_fn).__name__}.")
        self.step_fn = step_fn  # an attribute, not a default: functions do not belong in a state dict

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (as torch does), then check its values: a group may override every default."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_hyperparameters(lr=group["lr"], betas=group["betas"], eps=group["eps"],
                               weight_decay=group["weight_decay"], where=_group_label(group))

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("correct_bias", True)
            group.setdefault("foreach", None)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; parameters whose ``.grad`` is None are skipped.

        ``closure`` (optional) re-evaluates the model and returns the loss, as for any torch optimizer.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.layout != torch.strided:
                    raise RuntimeError(
                        f"mtkit AdamW got a sparse gradient for a parameter of shape {tuple(p.shape)} "
                        f"({_group_label(group)}). Adam keeps dense moment estimates, so sparse gradients are "
                        "not supported: build the embedding with nn.Embedding(..., sparse=False), or use "
                        "torch.optim.SparseAdam for that parameter.")
                if p.is_complex():
                    raise RuntimeError(f"mtkit AdamW works on real parameters; got a {p.dtype} parameter of shape "
                                       f"{tuple(p.shape)}. Use torch.optim.AdamW for complex parameters.")
                state = self.state[p]
                if len(state) == 0:  # lazy init on the first step that sees a gradient
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if not params:
                continue

            hyper = dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                         weight_decay=group["weight_decay"], correct_bias=group["correct_bias"])
            # foreach ops need one device and dtype per call: split the group into buckets (usually just one)
            buckets: dict[tuple, list[int]] = {}
            for i, p in enumerate(params):
                buckets.setdefault((p.device, p.dtype), []).append(i)
            for (device, _), index in buckets.items():
                use_foreach = group["foreach"]
                if use_foreach is None:  # as torch decides: foreach on accelerators, the loop on CPU
                    use_foreach = device.type != "cpu"
                update = adamw_foreach if use_foreach else adamw_loop
                if self.step_fn is not None:
                    update = partial(adamw_with, self.step_fn)
                if len(buckets) == 1:
                    update(params, grads, exp_avgs, exp_avg_sqs, steps, **hyper)
                else:
                    update(*([xs[i] for i in index] for xs in (params, grads, exp_avgs, exp_avg_sqs, steps)),
                           **hyper)
        return loss


def _group_label(group: dict) -> str:
    return f"parameter group {group['name']!r}" if "name" in group else "parameter group"


def _check_hyperparameters(*, lr, betas, eps, weight_decay, where: str = "AdamW") -> None:
    """One clear ValueError per bad value, saying which value and what range is allowed."""
    if isinstance(lr, Tensor) or not lr >= 0.0:
        raise ValueError(f"Invalid learning rate lr={lr!r} in {where}: it must be a number >= 0 (e.g. 1e-3).")
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"Invalid betas={betas!r} in {where}: pass a pair (beta1, beta2), e.g. (0.9, 0.999).")
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta{i + 1}={beta!r} in {where}: each beta must be in [0, 1), "
                             "e.g. betas=(0.9, 0.999).")
    if not eps >= 0.0:
        raise ValueError(f"Invalid eps={eps!r} in {where}: it must be >= 0 (the handout uses 1e-6).")
    if not weight_decay >= 0.0:
        raise ValueError(f"Invalid weight_decay={weight_decay!r} in {where}: it must be >= 0 (0 turns it off).")
