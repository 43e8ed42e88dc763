"""The check of one AdamW step (Loshchilov and Hutter 2019; notebook 04)."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mtkit.exercises.checks.runner import CheckResult, _describe, _randn, _Runner, _shapes
from mtkit.optim.adamw import adamw_loop

__all__ = ['check_adamw_step']


# ---------------------------------------------------------------------------------------------- AdamW
def _reference_adamw(p, g, m, v, t, **hyper):
    adamw_loop([p], [g], [m], [v], [t], **hyper)


def _adamw_variant(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay, correct_bias, kind):
    """One step of a known-wrong variant, on copies; returns the parameter."""
    p, m, v = p.clone(), m.clone(), v.clone()
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    b1, b2 = 1 - beta1 ** t, 1 - beta2 ** t
    if kind == "torch eps":  # torch.optim.AdamW exactly, its rounded factor included
        p.mul_(1 - lr * weight_decay)
        p.addcdiv_(m / b1, (v / b2).sqrt() + eps, value=-lr)
        return p
    alpha = lr * math.sqrt(b2) / b1 if correct_bias else lr
    if kind == "no bias correction":
        alpha = lr
    if kind == "decay before":
        p.add_(p, alpha=-lr * weight_decay)
    p.addcdiv_(m, v.sqrt() + eps, value=-alpha)
    if kind == "decay with alpha":
        p.add_(p, alpha=-alpha * weight_decay)
    elif kind == "factor":
        p.mul_(1 - lr * weight_decay)
    elif kind == "no decay":
        pass
    elif kind != "decay before":
        p.add_(p, alpha=-lr * weight_decay)
    return p


def check_adamw_step(adamw_step: Callable) -> CheckResult:
    """Check ``adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=, beta1=, beta2=, eps=, weight_decay=,
    correct_bias=)`` (in place) against ``mtkit.optim.adamw.adamw_loop``."""
    run = _Runner("check_adamw_step", adamw_step)
    base = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0, correct_bias=True)
    cases = [
        ("the first step (t = 1), no weight decay", [1], {}),
        ("three steps in a row (t = 1, 2, 3): m and v carry over", [1, 2, 3], {}),
        ("weight decay 0.1 at t = 5, lr 0.05", [5], dict(weight_decay=0.1, lr=0.05)),
        ("correct_bias=False (the original BERT optimizer)", [1, 2], dict(correct_bias=False)),
        ("other betas (0.8, 0.99) and eps 1e-3", [1, 2], dict(beta1=0.8, beta2=0.99, eps=1e-3)),
        ("a zero gradient (m and v decay, the parameter barely moves)", [1], dict(weight_decay=0.01)),
    ]
    for seed, (case, steps, changes) in enumerate(cases):
        hyper = base | changes
        shape = (3, 4)
        p = _randn(*shape, seed=300 + seed)
        m, v = torch.zeros(shape), torch.zeros(shape)
        ref_p, ref_m, ref_v = p.clone(), m.clone(), v.clone()
        for t in steps:
            g = torch.zeros(shape) if "zero gradient" in case else _randn(*shape, seed=400 + 10 * seed + t)
            run.start(case + f" [step t = {t}]", _shapes(param=p, grad=g) + f", step={t}, " +
                      ", ".join(f"{k}={val}" for k, val in hyper.items()))
            before = (p.clone(), m.clone(), v.clone())
            _reference_adamw(ref_p, g, ref_m, ref_v, t, **hyper)
            out = run.call(p, g.clone(), m, v, t, **hyper)
            if torch.equal(p, before[0]) and not torch.equal(ref_p, before[0]):
                extra = f" It returned {_describe(out)}." if out is not None else ""
                run.fail(f"  param did not change in place.{extra}",
                         "update the tensors the caller passed, in place: param.addcdiv_(...), exp_avg.mul_(...)"
                         ".add_(...); `param = param - ...` only rebinds a local name.")
            run.tensor("exp_avg (m, first moment) after the step", m, ref_m,
                       "m <- beta1 * m + (1 - beta1) * g, in place (exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)).",
                       atol=1e-7, rtol=1e-6)
            run.tensor("exp_avg_sq (v, second moment) after the step", v, ref_v,
                       "v <- beta2 * v + (1 - beta2) * g * g, in place.", atol=1e-9, rtol=1e-6)
            lr, b1, b2, eps, wd, cb = (hyper[k] for k in ("lr", "beta1", "beta2", "eps", "weight_decay",
                                                          "correct_bias"))
            mistakes = {}
            for kind, name, hint in [
                ("torch eps", "torch.optim.AdamW's formula (eps added to sqrt(v_hat), decay before the step)",
                 "the handout adds eps to sqrt(v) (not to sqrt(v_hat)) and folds both corrections into alpha."),
                ("no bias correction", "no bias correction",
                 "with correct_bias=True, alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)."),
                ("decay before", "weight decay applied before the Adam update",
                 "apply the weight decay after the Adam update."),
                ("decay with alpha", "weight decay scaled by alpha instead of lr",
                 "the decay is param -= lr * weight_decay * param, with lr, not the bias-corrected alpha."),
                ("no decay", "no weight decay", "apply param <- param - lr * weight_decay * param."),
            ]:
                mistakes[name] = (_adamw_variant(before[0], g, before[1], before[2], t, lr, b1, b2, eps, wd, cb,
                                                 kind), hint)
            mistakes = {k: val for k, val in mistakes.items() if not torch.allclose(val[0], ref_p, atol=1e-7,
                                                                                     rtol=1e-6)}
            run.tensor("param after the step", p, ref_p,
                       "param <- param - alpha * m / (sqrt(v) + eps), then param <- param - lr * weight_decay * param.",
                       atol=1e-7, rtol=1e-6, known_mistakes=mistakes)
        run.case = case
        run.passed()
    _check_small_decay(run)
    return run.result()


def _check_small_decay(run: _Runner) -> None:
    """A decay of 1e-7 per step (lr 1e-5, weight decay 0.01, a usual BERT setting) on 100,000 float32 weights
    with a zero gradient: the mean relative decay must be lr * weight_decay within 5 %. The factor form
    ``param.mul_(1 - lr * weight_decay)`` fails it, as float32 rounds 1 - 1e-7 to 1 - 2 * 2^-24 (notebook 04)."""
    lr, wd, n = 1e-5, 0.01, 100_000
    hyper = dict(lr=lr, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=wd, correct_bias=True)
    run.start("a tiny decay in float32: lr * weight_decay = 1e-7, zero gradient, 100,000 weights",
              f"param ({n},) float32, grad zeros, step=1, " + ", ".join(f"{k}={val}" for k, val in hyper.items()))
    p = _randn(n, seed=480)
    p0 = p.clone()
    g, m, v = torch.zeros(n), torch.zeros(n), torch.zeros(n)
    run.call(p, g, m, v, 1, **hyper)
    relative = float(((p0.double() - p.double()) / p0.double()).mean()) / (lr * wd)
    if abs(relative - 1.0) <= 0.05:
        run.passed()
        return
    message = (f"  the weights decayed by {relative:.3f} x lr * weight_decay on average (expected 1 within 5 %: "
               "each weight should end at the float32 nearest to param - lr * weight_decay * param).")
    factor = _adamw_variant(p0, g, torch.zeros(n), torch.zeros(n), 1, lr, 0.9, 0.999, 1e-6, wd, True, "factor")
    if torch.equal(p, factor):
        run.fail(message + "\n  Your result matches a classic mistake: the decay as a rounded factor "
                 "param * (1 - lr * weight_decay).",
                 "in float32 the factor 1 - lr * weight_decay is itself rounded to a multiple of 2^-24 (about "
                 "6e-8), so a small decay comes out biased. Apply the formula as a scaled add, which rounds only "
                 "the result: param.add_(param, alpha=-lr * weight_decay).")
    run.fail(message, "apply param <- param - lr * weight_decay * param after the Adam update "
                      "(param.add_(param, alpha=-lr * weight_decay)).")
