"""The methods LibMTL 1.1.5 implements, against LibMTL (loaded without its package ``__init__``; see
tests/_method_cases.py), on the same random Jacobians as the TorchJD tests.

LibMTL 1.1.5 is the newest LibMTL on PyPI (2021). Where it departs from the paper, the test names the
departure and checks that the kit follows the paper.
"""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from _method_cases import KINDS, KS, cases, default_dtype, jacobian, rel_error, run_libmtl

from mtkit.surgery.methods import GRAM_METHODS, update_from_jacobian
from mtkit.surgery.pcgrad import visit_orders
from mtkit.surgery.weighting import LOSS_WEIGHTINGS

TOL = 1e-5
SEED = 4321


def tasks(K: int) -> list[str]:
    return [f"task{i}" for i in range(K)]


def kit(name: str, J: torch.Tensor, losses=None, generator=None, **options) -> torch.Tensor:
    method = GRAM_METHODS.make(name, tasks(J.shape[0]), **options)
    return update_from_jacobian(method, J, losses=losses,
                                generator=generator or torch.Generator().manual_seed(SEED))


def shuffle_like_the_kit(monkeypatch, module_name: str, K: int, include_self: bool, steps: int = 1):
    """Replace ``random.shuffle`` in a LibMTL module so that task i visits the others in the kit's order."""
    import sys
    generator = torch.Generator().manual_seed(SEED)
    orders = iter([row for _ in range(steps) for row in visit_orders(K, generator).tolist()])
    counter = iter(range(10 ** 6))

    def shuffle(items):
        i = next(counter) % K
        row = next(orders)
        items[:] = ([i] if include_self else []) + row

    fake = types.SimpleNamespace(shuffle=shuffle)
    monkeypatch.setattr(sys.modules[f"LibMTL.weighting.{module_name}"], "random", fake)


@pytest.mark.parametrize("K,P,kind,seed", cases())
def test_pcgrad_matches_libmtl_under_shared_orders(K, P, kind, seed, monkeypatch):
    """LibMTL shuffles all K tasks (task i visits itself too, a no-op: g_i . g_i > 0) and adds no eps."""
    J = jacobian(K, P, kind, seed)
    run_libmtl("PCGrad", J[:1])  # loads the module
    shuffle_like_the_kit(monkeypatch, "PCGrad", K, include_self=True)
    expected, _, _ = run_libmtl("PCGrad", J)
    assert rel_error(kit("pcgrad", J), expected) < TOL


@pytest.mark.parametrize("K,P,kind,seed", cases())
def test_imtl_g_matches_libmtl(K, P, kind, seed):
    """LibMTL's IMTL is the hybrid IMTL-L + IMTL-G; at its initial loss scales (s = 0, e^s L - s = L) the
    gradients are unchanged, so its update is IMTL-G's closed form alpha = g_1 U.T (D U.T)^-1."""
    J = jacobian(K, P, kind, seed)
    expected, _, _ = run_libmtl("IMTL", J)
    assert rel_error(kit("imtl_g", J), expected) < TOL


@pytest.mark.parametrize("P", (10, 1000, 10000))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rescale", (0, 1, 2))
def test_cagrad_matches_libmtl_for_three_tasks(P, kind, rescale, monkeypatch):
    """LibMTL 1.1.5's CAGrad hard-codes three tasks (``x.reshape(1, 3)`` in its objective), so K = 3 only;
    K = 2 and 5 are checked against TorchJD. Its ``rescale`` options are the kit's. It calls SLSQP with
    scipy's default tolerance (ftol 1e-6) and finite-difference gradients on the raw Gram, which stalls
    when the Gram is large (P = 10,000: up to 9% off): so the tolerance is tightened, and LibMTL runs on J
    scaled to unit mean squared norm (CAGrad's update scales with J) and its update is scaled back."""
    import sys

    from scipy.optimize import minimize

    J = jacobian(3, P, kind, P + rescale)
    run_libmtl("CAGrad", J, calpha=0.4, rescale=rescale)  # loads the module
    monkeypatch.setattr(sys.modules["LibMTL.weighting.CAGrad"], "minimize",
                        lambda *a, **k: minimize(*a, **k, options={"ftol": 1e-14, "maxiter": 1000}))
    scale = float((J * J).sum(dim=1).mean()) ** 0.5
    expected, _, _ = run_libmtl("CAGrad", J / scale, calpha=0.4, rescale=rescale)
    assert rel_error(kit("cagrad", J, c=0.4, rescale=rescale), expected * scale) < TOL


@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("normalization", ("none", "l2", "loss", "loss+"))
def test_mgda_normalizations_match_libmtl(K, kind, normalization):
    """The normalisations (l2, loss, loss+) exist only in LibMTL (from the paper's code). Its solver is
    approximate: for two tasks it clips the mixing weight to [0.001, 0.999], so at a vertex it keeps 0.1% of
    the other gradient, and for more it stops Frank-Wolfe once the weights move less than 1e-5. So: the
    kit's combination is never longer than LibMTL's and within 5e-3 of it (2e-3 measured) (exact checks: TorchJD and the
    brute force)."""
    J = jacobian(K, 1000, kind, 3 * K)
    losses = torch.rand(K, dtype=torch.float64, generator=torch.Generator().manual_seed(K)) + 0.5
    expected, _, _ = run_libmtl("MGDA", J, losses=losses, mgda_gn=normalization)
    ours = kit("mgda", J, losses=losses, normalization=normalization)
    assert ours.norm() <= expected.norm() * (1 + 1e-12)
    assert rel_error(ours, expected) < 5e-3


@pytest.mark.parametrize("K", KS)
def test_gradvac_first_step_matches_libmtl_and_targets_follow_the_paper(K, monkeypatch):
    """LibMTL 1.1.5's GradVac works on the whole model and updates a target only when it corrects (inside
    its ``if``); the paper (Algorithm 1) and TorchJD update every visited pair's target. From zero targets
    the first update agrees; the targets then differ exactly on the pairs that did not conflict, where the
    kit holds beta * cosine and LibMTL still 0."""
    J = jacobian(K, 1000, "conflicting", K)
    run_libmtl("GradVac", J[:1], beta=0.5)
    shuffle_like_the_kit(monkeypatch, "GradVac", K, include_self=False)
    expected, _, reference = run_libmtl("GradVac", J, beta=0.5)
    method = GRAM_METHODS.make("gradvac", tasks(K), granularity="whole")
    ours = update_from_jacobian(method, J, generator=torch.Generator().manual_seed(SEED))
    assert rel_error(ours, expected) < TOL
    theirs = reference.rho_T.to(torch.float64)
    mine = method.targets[0]
    corrected = theirs != 0  # LibMTL moved only these targets (to beta * cosine at the visit)
    assert torch.allclose(mine[corrected], theirs[corrected])
    calm = ~corrected & ~torch.eye(K, dtype=torch.bool)  # visited without a correction: cosine >= target 0
    assert bool((mine[calm] >= 0).all())
    if K > 2:  # with 2 tasks both visits conflict here
        assert bool((mine[calm] > 0).any())


# ---- loss weightings ------------------------------------------------------------------------------------------
def libmtl_loss_grad(name: str, losses: torch.Tensor, setup=None, **kwargs):
    """d(LibMTL's total) / d(losses), and the weighting object."""
    L = losses.clone().requires_grad_(True)
    J = torch.zeros(len(losses), 3, dtype=torch.float64)

    def prepared(w):
        if setup:
            setup(w)
        return w

    from _method_cases import libmtl_weighting
    cls = libmtl_weighting(name)
    with default_dtype(torch.float64):
        weighting = cls()
        weighting.task_num, weighting.device, weighting.rep_grad = len(losses), torch.device("cpu"), False
        weighting.init_param()
        prepared(weighting)
        weighting._get_grads = lambda losses, mode="backward": J
        weighting._reset_grad = lambda new_grads: None
        weighting.backward(L, **kwargs)
    return L.grad, weighting


LOSSES = [torch.tensor(v, dtype=torch.float64) for v in ([0.7, 2.5], [0.3, 1.1, 4.0], [1.0, 0.2, 0.9, 3.3, 0.05])]


@pytest.mark.parametrize("losses", LOSSES, ids=lambda v: f"K{len(v)}")
def test_static_is_libmtl_equal_weighting(losses):
    grad, _ = libmtl_loss_grad("EW", losses)
    ours = LOSS_WEIGHTINGS.make("static", tasks(len(losses))).weigh(losses)
    assert torch.allclose(ours.weights, grad)


@pytest.mark.parametrize("losses", LOSSES, ids=lambda v: f"K{len(v)}")
def test_uncertainty_matches_libmtl(losses):
    """Both are Eq. (7) with s = log sigma^2; LibMTL starts from s = -0.5, so the kit's ``init`` is set to it."""
    grad, reference = libmtl_loss_grad("UW", losses)
    method = LOSS_WEIGHTINGS.make("uncertainty", tasks(len(losses)), init=-0.5)
    out = method.weigh(losses)
    out.total.backward()
    assert torch.allclose(out.weights, grad)
    assert torch.allclose(method.log_variance.grad.double(), reference.loss_scale.grad, atol=1e-6)


@pytest.mark.parametrize("losses", LOSSES, ids=lambda v: f"K{len(v)}")
def test_gls_matches_libmtl(losses):
    grad, _ = libmtl_loss_grad("GLS", losses)
    out = LOSS_WEIGHTINGS.make("gls", tasks(len(losses))).weigh(losses.clone().requires_grad_(True))
    assert torch.allclose(out.weights, grad)
    assert abs(float(out.total.detach()) - float(losses.prod() ** (1 / len(losses)))) < 1e-12


@pytest.mark.parametrize("losses", LOSSES, ids=lambda v: f"K{len(v)}")
def test_dwa_matches_libmtl(losses):
    K = len(losses)
    history = np.random.default_rng(K).uniform(0.5, 2.0, size=(K, 3))  # mean losses of epochs 0, 1, 2

    def setup(w):
        w.epoch, w.train_loss_buffer = 2, history

    grad, _ = libmtl_loss_grad("DWA", losses, setup=setup, T=2.0)
    method = LOSS_WEIGHTINGS.make("dwa", tasks(K), temperature=2.0)
    for epoch in range(2):
        assert torch.equal(method.weigh(losses).weights, torch.ones(K, dtype=torch.float64))
        method.on_epoch_end(torch.tensor(history[:, epoch]))
    assert torch.allclose(method.weigh(losses).weights, grad)


@pytest.mark.parametrize("losses", LOSSES, ids=lambda v: f"K{len(v)}")
def test_rlw_matches_libmtl_in_distribution(losses):
    """LibMTL draws N(0, I) in float32 from the global generator, the kit in float64 from its own, so the
    draws differ; their distributions must not: per-task mean and spread of the weights over 3000 steps."""
    K = len(losses)
    torch.manual_seed(0)
    theirs = torch.stack([libmtl_loss_grad("RLW", losses, dist="Normal")[0] for _ in range(3000)])
    method, generator = LOSS_WEIGHTINGS.make("rlw", tasks(K)), torch.Generator().manual_seed(0)
    ours = torch.stack([method.weigh(losses, generator=generator).weights for _ in range(3000)])
    assert float((ours.mean(0) - theirs.mean(0)).abs().max()) < 0.02
    assert float((ours.std(0) - theirs.std(0)).abs().max()) < 0.02


@pytest.mark.parametrize("K", KS)
def test_gradnorm_gradient_matches_libmtl(K):
    """LibMTL parametrises the weights as K softmax(s) (the paper learns w directly and renormalises it to sum
    K), and takes L_i(0) from the first epoch's mean loss; with the same L(0), its gradient on s is the
    kit's d L_grad / d w through the softmax."""
    J = jacobian(K, 500, "conflicting", K)
    losses = torch.rand(K, dtype=torch.float64, generator=torch.Generator().manual_seed(K)) + 0.5
    initial = losses * 1.7

    def setup(w):
        w.epoch, w.train_loss_buffer = 1, initial[:, None].numpy()
        w._get_grads = lambda losses, mode="backward": J

    from _method_cases import libmtl_weighting
    cls = libmtl_weighting("GradNorm")
    with default_dtype(torch.float64):
        weighting = cls()
        weighting.task_num, weighting.device, weighting.rep_grad = K, torch.device("cpu"), False
        weighting.init_param()
        setup(weighting)
        weighting._reset_grad = lambda new_grads: None
        weighting.backward(losses.clone().requires_grad_(True), alpha=1.5)
    method = LOSS_WEIGHTINGS.make("gradnorm", tasks(K), alpha=1.5)
    method.after_gradients(J @ J.T, initial)  # the first call records L(0)
    method.w.grad = None
    method.after_gradients(J @ J.T, losses)
    z = torch.softmax(weighting.loss_scale.detach(), dim=0).double()
    g = method.w.grad.double()
    expected = K * z * (g - z @ g)  # chain rule through w = K softmax(s)
    assert torch.allclose(weighting.loss_scale.grad.double(), expected, atol=1e-6)
