"""Loss weightings: the contract (the reported weights are the total's gradient), absent tasks, bad input,
state, optimizer groups, and each method against its paper's formula. The contract tests iterate
``LOSS_WEIGHTINGS``, so a new weighting is checked by default."""
from __future__ import annotations

import json
import math

import pytest
import torch
from _method_cases import make_method
from safetensors.torch import load, save

from mtkit.surgery.weighting import LOSS_WEIGHTINGS, stack_losses
from mtkit.train.checkpoint import flatten_state, unflatten_state
from mtkit.train.loss_weights import TaskWeights, main_aux

NAMES = list(LOSS_WEIGHTINGS)
TASKS = ["sst", "para", "sts"]


def losses_of(*values, grad=True):
    return torch.tensor(values, dtype=torch.float32, requires_grad=grad)


def drive(method, steps: int = 3, seed: int = 0):
    """A few steps through every hook a trainer calls; returns the last effective weights."""
    generator = torch.Generator().manual_seed(seed)
    g = torch.Generator().manual_seed(100 + seed)
    out = None
    for s in range(steps):
        L = torch.rand(3, generator=g) + 0.2
        J = torch.randn(3, 50, generator=g, dtype=torch.float64)
        out = method.weigh(L, s, generator=generator)
        if method.needs_gradients:
            method.after_gradients(J @ J.T, L)
        method.after_step(L * 0.9)
        method.on_epoch_end(L)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_the_weights_are_the_gradient_of_the_total(name):
    method = make_method(LOSS_WEIGHTINGS, name, TASKS)
    drive(method)  # past the warm-up of DWA, with a FAMO and GradNorm state
    L = losses_of(0.4, 1.5, 0.8)
    out = method.weigh(L, 5, generator=torch.Generator().manual_seed(1))
    out.total.backward()
    assert out.weights.dtype == torch.float64 and not out.weights.requires_grad
    assert torch.allclose(L.grad.double(), out.weights, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_an_absent_task_gets_weight_zero(name):
    method = make_method(LOSS_WEIGHTINGS, name, TASKS)
    L, present = stack_losses({"sst": torch.tensor(0.5), "sts": torch.tensor(1.2)}, TASKS)
    L = L.clone()
    L[1] = float("nan")  # never read
    out = method.weigh(L, 0, present, torch.Generator().manual_seed(0))
    assert out.weights[1] == 0 and bool(torch.isfinite(out.weights).all()) and bool(torch.isfinite(out.total))


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_or_misshapen_losses_are_refused(name):
    method = make_method(LOSS_WEIGHTINGS, name, TASKS)
    with pytest.raises(ValueError, match="inf or NaN"):
        method.weigh(losses_of(0.5, float("inf"), 1.0))
    with pytest.raises(ValueError, match=r"\(3,\) tensor in the order"):
        method.weigh(losses_of(0.5, 1.0))


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_through_a_checkpoint(name):
    first = make_method(LOSS_WEIGHTINGS, name, TASKS)
    drive(first, steps=3)
    skeleton, tensors = flatten_state(first.state_dict())
    second = make_method(LOSS_WEIGHTINGS, name, TASKS)
    second.load_state_dict(unflatten_state(json.loads(json.dumps(skeleton)), load(save(tensors)) if tensors else {}))
    for s in range(2):
        a = drive(first, steps=1, seed=10 + s)
        b = drive(second, steps=1, seed=10 + s)
        assert torch.equal(a.weights, b.weights) and torch.equal(a.total.detach(), b.total.detach())


@pytest.mark.parametrize("name", NAMES)
def test_learned_weights_go_to_the_optimizer_without_weight_decay(name):
    method = make_method(LOSS_WEIGHTINGS, name, TASKS)
    groups = method.param_groups()
    params = [p for group in groups for p in group["params"]]
    assert params == method.parameters() or name == "famo"
    assert all(group["weight_decay"] == 0.0 for group in groups)
    torch.optim.AdamW(groups or [torch.nn.Parameter(torch.zeros(1))], lr=1e-3)  # a valid optimizer spec


def test_param_group_carries_its_own_lr():
    assert LOSS_WEIGHTINGS.make("uncertainty", TASKS, lr=0.01).param_groups()[0]["lr"] == 0.01
    assert "lr" not in LOSS_WEIGHTINGS.make("uncertainty", TASKS).param_groups()[0]


def test_static_has_task_weights_semantics():
    L = losses_of(0.5, 1.0, 2.0, grad=False)
    for ours, theirs in [(LOSS_WEIGHTINGS.make("static", TASKS, weights={"sst": 2.0}, default=0.5),
                          TaskWeights({"sst": 2.0}, default=0.5)),
                         (LOSS_WEIGHTINGS.make("main_aux", TASKS, main_task="sst", aux_weight=0.3),
                          main_aux("sst", 0.3, tasks=TASKS))]:
        out = ours.weigh(L)
        assert out.weights.tolist() == pytest.approx([theirs(t) for t in TASKS])
        assert float(out.total) == pytest.approx(float(theirs.weighted_sum(dict(zip(TASKS, L)))))


def test_uncertainty_learns_the_log_loss():
    """d/ds [exp(-s) L / 2 + s / 2] = 0 at s = log L: trained on fixed losses, s_i -> log L_i."""
    method = LOSS_WEIGHTINGS.make("uncertainty", TASKS)
    optimizer = torch.optim.SGD(method.param_groups(), lr=0.5)
    L = losses_of(0.3, 1.0, 4.0, grad=False)
    for _ in range(300):
        optimizer.zero_grad()
        method.weigh(L).total.backward()
        optimizer.step()
    assert method.log_variance.detach().tolist() == pytest.approx([math.log(v) for v in L.tolist()], abs=1e-4)


def test_dwa_follows_eq_1():
    method = LOSS_WEIGHTINGS.make("dwa", TASKS, temperature=2.0)
    method.on_epoch_end(torch.tensor([1.0, 2.0, 4.0]))
    assert method.weigh(losses_of(1, 1, 1)).weights.tolist() == [1.0, 1.0, 1.0]  # fewer than two epochs
    method.on_epoch_end(torch.tensor([0.5, 2.0, float("nan")]))  # sts had no batch this epoch
    r = torch.tensor([0.5, 1.0, 1.0], dtype=torch.float64)
    expected = 3 * torch.softmax(r / 2.0, dim=0)
    assert torch.allclose(method.weigh(losses_of(1, 1, 1)).weights, expected)


def test_gls_refuses_non_positive_losses():
    with pytest.raises(ValueError, match="losses > 0"):
        LOSS_WEIGHTINGS.make("gls", TASKS).weigh(losses_of(0.5, 0.0, 1.0))


def test_rlw_draws_are_reproducible_and_convex():
    method = LOSS_WEIGHTINGS.make("rlw", TASKS)
    a = method.weigh(losses_of(1, 1, 1), generator=torch.Generator().manual_seed(3)).weights
    b = method.weigh(losses_of(1, 1, 1), generator=torch.Generator().manual_seed(3)).weights
    assert torch.equal(a, b) and abs(float(a.sum()) - 1) < 1e-12 and bool((a > 0).all())


def test_gradnorm_gradient_and_renormalisation_by_hand():
    """w = 1, |g| = (1, 4), equal training rates: G = (1, 4), target = 2.5 each, so d L_grad / d w =
    (sign(1 - 2.5) * 1, sign(4 - 2.5) * 4) = (-1, 4); after a step the weights sum to K again."""
    method = LOSS_WEIGHTINGS.make("gradnorm", ["a", "b"])
    gram = torch.diag(torch.tensor([1.0, 16.0], dtype=torch.float64))
    method.after_gradients(gram, torch.tensor([2.0, 3.0]))
    assert method.w.grad.tolist() == [-1.0, 4.0]
    assert method.last_grad_loss == pytest.approx(3.0)
    torch.optim.SGD(method.param_groups(), lr=0.1).step()
    method.after_step()
    assert method.w.detach().tolist() == pytest.approx([1.1 * 2 / 1.7, 0.6 * 2 / 1.7])
    assert method.weigh(torch.tensor([1.0, 1.0])).weights[0] > 1  # the small-gradient task gains weight


def reference_famo(losses_per_step, new_losses_per_step, lr=0.025, gamma=0.001, eps=1e-8):
    """FAMO as in the paper's code, written independently: autograd through the softmax and the log-loss."""
    K = len(losses_per_step[0])
    xi = torch.zeros(K, requires_grad=True)
    optimizer = torch.optim.Adam([xi], lr=lr, weight_decay=gamma)
    weights = []
    for L, new in zip(losses_per_step, new_losses_per_step):
        L = L.clone().double().requires_grad_(True)
        z = torch.softmax(xi.detach().double(), dim=0)
        D = L + eps
        c = (z / D).sum().detach()
        (torch.log(D) * z / c).sum().backward()
        weights.append(L.grad.clone())
        delta = torch.log(L.detach() + eps) - torch.log(new.double() + eps)
        with torch.enable_grad():
            d = torch.autograd.grad(torch.softmax(xi, dim=0), xi, grad_outputs=delta.float())[0]
        optimizer.zero_grad()
        xi.grad = d
        optimizer.step()
    return weights, xi.detach()


def test_famo_follows_the_papers_update():
    g = torch.Generator().manual_seed(0)
    losses = [torch.rand(3, generator=g) + 0.3 for _ in range(6)]
    new = [L * (0.7 + 0.3 * torch.rand(3, generator=g)) for L in losses]
    expected_weights, expected_logits = reference_famo(losses, new)
    method = LOSS_WEIGHTINGS.make("famo", TASKS)
    for L, n, w in zip(losses, new, expected_weights):
        out = method.weigh(L)
        assert torch.allclose(out.weights, w, rtol=1e-6)
        assert abs(float(out.weights.sum()) - 1) < 1e-6
        method.after_step(n)
    assert torch.allclose(method.logits.detach(), expected_logits, atol=1e-6)


def test_famo_moves_weight_to_the_task_that_improved_least():
    method = LOSS_WEIGHTINGS.make("famo", TASKS, lr=0.1)
    for _ in range(20):
        method.weigh(losses_of(1.0, 1.0, 1.0))
        method.after_step(torch.tensor([0.5, 0.5, 0.99]))  # sts barely improves
    weights = method.weigh(losses_of(1.0, 1.0, 1.0)).weights
    assert weights[2] > weights[0] and weights[2] > weights[1]
