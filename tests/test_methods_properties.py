"""What each Gram method promises, checked on random Jacobians: the defining property from its paper, one
task, task order, absent tasks, non-finite input, and the state round trip. The tests iterate
``GRAM_METHODS``, so a new method is checked by default."""
from __future__ import annotations

import itertools
import json

import pytest
import torch
from _method_cases import KINDS, KS, jacobian, make_method, rel_error
from safetensors.torch import load, save

from mtkit.surgery.methods import GRAM_METHODS, NonFiniteError, update_from_jacobian
from mtkit.train.checkpoint import flatten_state, unflatten_state

NAMES = list(GRAM_METHODS)
BLOCKS = [40, 100, 60]  # three layer blocks, P = 200
# The update a method makes from a single task gradient g, as a multiple of g (1 unless listed).
ONE_TASK_SCALE = {"cagrad": lambda g: 1.4, "nash_mtl": lambda g: 1 / g.norm()}


def tasks(K: int) -> list[str]:
    return [f"t{i}" for i in range(K)]


def run(method, J, seed=0, present=None, losses=None):
    losses = torch.rand(J.shape[0], dtype=torch.float64) + 0.5 if losses is None else losses
    return update_from_jacobian(method, J, blocks=BLOCKS, present=present, losses=losses,
                                generator=torch.Generator().manual_seed(seed), return_weights=True)


def brute_force_min_norm(J: torch.Tensor) -> torch.Tensor:
    """The min-norm point of the convex hull of J's rows, by solving the equality-constrained problem on
    every face (every subset of rows) and keeping the shortest feasible answer."""
    K = J.shape[0]
    G = J @ J.T
    best = None
    for r in range(1, K + 1):
        for S in itertools.combinations(range(K), r):
            S = list(S)
            M = torch.zeros(r + 1, r + 1, dtype=torch.float64)
            M[:r, :r], M[:r, r], M[r, :r] = G[S][:, S], 1.0, 1.0
            rhs = torch.zeros(r + 1, dtype=torch.float64)
            rhs[r] = 1.0
            w = torch.linalg.lstsq(M, rhs).solution[:r]
            if bool((w >= -1e-12).all()):
                point = w @ J[S]
                if best is None or point.norm() < best.norm():
                    best = point
    return best


@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_mgda_is_the_min_norm_point_of_the_hull(K, kind, seed):
    J = jacobian(K, 200, kind, seed)
    update = update_from_jacobian(GRAM_METHODS.make("mgda", tasks(K)), J)
    assert rel_error(update, brute_force_min_norm(J)) < 1e-9
    assert bool((J @ update >= update.dot(update) * (1 - 1e-9)).all())  # a descent direction for every task


@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("seed", range(5))
def test_upgrad_never_conflicts_and_keeps_non_conflicting_gradients(K, seed):
    J = jacobian(K, 200, "conflicting", seed)
    method = GRAM_METHODS.make("upgrad", tasks(K))
    update, weights = run(method, J)
    assert bool((J @ update >= -1e-10 * J.norm() * update.norm()).all())
    for row in weights.per_task:  # every projection is in the dual cone
        assert bool((J @ (row @ J) >= -1e-10 * J.norm() ** 2).all())
    aligned = J.abs()  # all entries >= 0: no pair conflicts, so every gradient is its own projection
    assert rel_error(update_from_jacobian(method, aligned), aligned.mean(dim=0)) < 1e-10


@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("kind", KINDS)
def test_imtl_g_has_equal_projections_on_the_unit_gradients(K, kind):
    J = jacobian(K, 200, kind, K)
    update, weights = run(GRAM_METHODS.make("imtl_g", tasks(K)), J)
    projections = (J / J.norm(dim=1, keepdim=True)) @ update  # (K,) u_i . update
    assert float((projections - projections.mean()).abs().max()) < 1e-10 * float(projections.abs().mean())
    assert abs(float(weights.coefficients.sum()) - 1.0) < 1e-12


@pytest.mark.parametrize("K", KS)
def test_nash_mtl_solves_the_bargaining_equation(K):
    J = jacobian(K, 200, "conflicting", K)
    weights = GRAM_METHODS.make("nash_mtl", tasks(K))(J @ J.T)
    a = weights.coefficients
    assert rel_error((J @ J.T) @ a, 1 / a) < 1e-9  # G a = 1 / a (up to the 1e-12 ridge)
    assert abs(float((a @ J).norm()) ** 2 - K) < 1e-8  # hence |d|^2 = K


@pytest.mark.parametrize("name", NAMES)
def test_one_task_gives_that_tasks_gradient(name):
    g = jacobian(1, 200, "conflicting", 3)
    method = make_method(GRAM_METHODS, name, ["only"]) if name != "main_aux" else None
    if method is None:  # main + aux needs an auxiliary task; with it absent, the update is g_main
        method = make_method(GRAM_METHODS, name, ["only", "aux"])
        J = torch.cat([g, torch.zeros_like(g)])
        update, _ = run(method, J, present=torch.tensor([True, False]))
    else:
        update, _ = run(method, g)
    scale = ONE_TASK_SCALE.get(name, lambda g: 1.0)(g[0])
    assert rel_error(update, scale * g[0]) < 1e-10


@pytest.mark.parametrize("name", [n for n in NAMES if not GRAM_METHODS[n].stochastic])
@pytest.mark.parametrize("K", (3, 5))
def test_deterministic_methods_do_not_depend_on_task_order(name, K):
    J = jacobian(K, 200, "conflicting", 11)
    names = tasks(K)
    perm = torch.randperm(K, generator=torch.Generator().manual_seed(K))
    losses = torch.rand(K, dtype=torch.float64) + 0.5
    before, _ = run(make_method(GRAM_METHODS, name, names), J, losses=losses)
    after, _ = run(GRAM_METHODS.make(name, [names[i] for i in perm], **_same_options(name, names)), J[perm],
                   losses=losses[perm])
    assert rel_error(after, before) < 1e-8


def _same_options(name, names):
    return {"main_task": names[0]} if name == "main_aux" else {}


@pytest.mark.parametrize("name", NAMES)
def test_two_tasks_in_either_order(name):
    """With two tasks there is only one visiting order, so PCGrad and GradVac are order-free too."""
    if name == "rgw":
        pytest.skip("random weights: exchangeable in distribution, see test_rgw_weights_are_exchangeable")
    J = jacobian(2, 200, "conflicting", 5)
    losses = torch.tensor([0.7, 1.3], dtype=torch.float64)
    before, _ = run(make_method(GRAM_METHODS, name, ["a", "b"]), J, losses=losses)
    after, _ = run(GRAM_METHODS.make(name, ["b", "a"], **_same_options(name, ["a", "b"])), J.flip(0),
                   losses=losses.flip(0))
    assert rel_error(after, before) < 1e-8


def test_rgw_weights_are_exchangeable():
    method = GRAM_METHODS.make("rgw", tasks(3))
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([method(torch.eye(3, dtype=torch.float64), None, generator).coefficients
                         for _ in range(4000)])  # (4000, 3)
    assert torch.allclose(draws.sum(dim=1), torch.ones(4000, dtype=torch.float64))
    assert float((draws.mean(dim=0) - 1 / 3).abs().max()) < 0.015


@pytest.mark.parametrize("name", NAMES)
def test_absent_task_gets_zero_and_changes_nothing_else(name):
    J = jacobian(4, 200, "conflicting", 21)
    J_absent = J.clone()
    J_absent[2] = float("nan")  # an absent task's row may hold anything: it must never be read
    names = tasks(4)
    present = torch.tensor([True, True, False, True])
    losses = torch.tensor([0.5, 1.0, float("nan"), 2.0], dtype=torch.float64)
    G = torch.nan_to_num(J_absent) @ torch.nan_to_num(J_absent).T
    G[2, :] = G[:, 2] = float("nan")
    weights = make_method(GRAM_METHODS, name, names)(
        G, present, torch.Generator().manual_seed(0), block_grams=_blocks(torch.nan_to_num(J_absent), G),
        losses=losses)
    c = weights.coefficients
    assert bool(torch.isfinite(c).all()) and bool((c[..., 2] == 0).all())
    reduced = make_method(GRAM_METHODS, name, [names[i] for i in (0, 1, 3)])
    expected, _ = run(reduced, J[[0, 1, 3]], losses=losses[[0, 1, 3]])
    update = _combine(c, J.nan_to_num())
    assert rel_error(update, expected) < 1e-10


def _blocks(J, G):
    blocks = torch.stack([p @ p.T for p in J.split(BLOCKS, dim=1)])  # (B, K, K)
    blocks[:, 2, :] = blocks[:, :, 2] = float("nan")
    return blocks


def _combine(c, J):
    if c.dim() == 1:
        return c @ J
    return torch.cat([cb @ part for cb, part in zip(c, J.split(BLOCKS, dim=1))])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("what", ["gram", "block_grams", "losses"])
def test_non_finite_input_is_refused(name, what):
    J = jacobian(3, 200, "conflicting", 1)
    G = J @ J.T
    blocks = torch.stack([p @ p.T for p in J.split(BLOCKS, dim=1)])
    losses = torch.ones(3, dtype=torch.float64)
    {"gram": G, "block_grams": blocks, "losses": losses}[what][..., 1] = float("inf")
    with pytest.raises(NonFiniteError, match="inf or NaN"):
        make_method(GRAM_METHODS, name, tasks(3))(G, None, torch.Generator(), block_grams=blocks, losses=losses)


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_through_a_checkpoint(name):
    """Two steps, save the state as the kit's checkpoints do (JSON skeleton + tensors), load it into a fresh
    object, and the next steps agree exactly."""
    steps = [jacobian(3, 200, "conflicting", 30 + s) for s in range(4)]
    options = {"update_every": 2} if name == "nash_mtl" else {}
    first = make_method(GRAM_METHODS, name, tasks(3), **options)
    for s in range(2):
        run(first, steps[s], seed=s)
    skeleton, tensors = flatten_state(first.state_dict())
    second = make_method(GRAM_METHODS, name, tasks(3), **options)
    second.load_state_dict(unflatten_state(json.loads(json.dumps(skeleton)), load(save(tensors)) if tensors else {}))
    for s in range(2, 4):
        a, _ = run(first, steps[s], seed=s)
        b, _ = run(second, steps[s], seed=s)
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", [n for n in NAMES if GRAM_METHODS[n].stochastic and n != "main_aux"])
def test_random_methods_do_not_depend_on_task_order_in_distribution(name):
    """PCGrad's and GradVac's visiting orders (and RGW's weights) are uniformly random, so the expected
    update does not depend on how the tasks are numbered."""
    J = jacobian(3, 60, "conflicting", 8)
    perm = [2, 0, 1]

    def mean_update(rows, seed0):
        total = torch.zeros(rows.shape[1], dtype=torch.float64)
        for s in range(600):
            total += update_from_jacobian(GRAM_METHODS.make(name, tasks(3)), rows,
                                          generator=torch.Generator().manual_seed(seed0 + s))
        return total / 600

    a, b = mean_update(J, 0), mean_update(J[perm], 10_000)
    assert rel_error(b, a) < 0.05
