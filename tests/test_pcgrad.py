"""The math of PCGrad (Yu et al. 2020), tested against a plain loop written from Algorithm 1 and against
formulas derived by hand."""
from __future__ import annotations

import itertools

import pytest
import torch

from mtkit.surgery.pcgrad import main_aux_mixing, main_aux_pcgrad, pcgrad, pcgrad_weights, visit_orders

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def reference_pcgrad(grads: torch.Tensor, orders: list[list[int]], reduction: str = "sum") -> torch.Tensor:
    """Algorithm 1 of the paper, as plainly as possible: vectors, a Python loop, a Python `if`, float64."""
    originals = [g.double() for g in grads]
    projected = [g.double().clone() for g in grads]
    for i in range(len(grads)):
        for j in orders[i]:
            dot = torch.dot(projected[i], originals[j])
            if dot < 0:
                projected[i] = projected[i] - dot / torch.dot(originals[j], originals[j]) * originals[j]
    total = sum(projected)
    return total / len(grads) if reduction == "mean" else total


def orders_for(seed: int, K: int) -> list[list[int]]:
    return visit_orders(K, torch.Generator().manual_seed(seed)).tolist()


def conflicting_grads(K: int, P: int, seed: int) -> torch.Tensor:
    """Random gradients in few dimensions, so that many pairs conflict; at least one pair does."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        grads = torch.randn(K, P, generator=gen, dtype=torch.float64) * torch.rand(K, 1, generator=gen) * 3
        if (grads @ grads.T < 0).any():
            return grads


# ---- the visiting orders ----------------------------------------------------------------------------------------
def test_visit_orders_are_permutations_of_the_other_tasks():
    for K in (1, 2, 3, 5):
        orders = visit_orders(K, torch.Generator().manual_seed(K))
        assert orders.shape == (K, K - 1)
        for i, row in enumerate(orders.tolist()):
            assert sorted(row) == [j for j in range(K) if j != i]


def test_visit_orders_are_fresh_and_uniform():
    """Each task gets its own random order at each call (the official TF code's shuffle was a no-op)."""
    gen = torch.Generator().manual_seed(0)
    counts = {}
    draws = 1200
    for _ in range(draws):
        row0 = tuple(visit_orders(3, gen)[0].tolist())
        counts[row0] = counts.get(row0, 0) + 1
    assert set(counts) == {(1, 2), (2, 1)}
    assert abs(counts[(1, 2)] / draws - 0.5) < 0.06  # 6 sigma is ~0.087; 0.06 is ~4 sigma
    all_orders = {tuple(map(tuple, visit_orders(4, gen).tolist())) for _ in range(50)}
    assert len(all_orders) > 40  # rows vary between calls


# ---- against the plain loop ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("K,P,seed", [(2, 5, 0), (3, 4, 1), (3, 50, 2), (5, 6, 3), (7, 3, 4)])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_matches_plain_loop_reference(K, P, seed, reduction):
    grads = conflicting_grads(K, P, seed)
    got = pcgrad(grads, generator=torch.Generator().manual_seed(seed), reduction=reduction, eps=0.0)
    want = reference_pcgrad(grads, orders_for(seed, K), reduction)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(got, grads.sum(0) / (K if reduction == "mean" else 1))  # surgery did something


def test_float32_matches_reference_with_default_eps():
    grads = conflicting_grads(4, 1000, 11).float()
    got = pcgrad(grads, generator=torch.Generator().manual_seed(5))
    want = reference_pcgrad(grads, orders_for(5, 4))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_sum_and_mean():
    grads = conflicting_grads(3, 8, 21)
    s = pcgrad(grads, generator=torch.Generator().manual_seed(1), reduction="sum")
    m = pcgrad(grads, generator=torch.Generator().manual_seed(1), reduction="mean")
    torch.testing.assert_close(m, s / 3)
    torch.testing.assert_close(s, reference_pcgrad(grads, orders_for(1, 3), "sum"))


@pytest.mark.parametrize("bad", ["avg", "", "SUM", None])
def test_unknown_reduction_is_an_error_not_a_silent_mean(bad):
    with pytest.raises(ValueError, match="reduction"):
        pcgrad(torch.randn(2, 3), reduction=bad)


# ---- properties from the paper ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("K,P,seed", [(3, 4, 5), (5, 6, 6), (6, 40, 7)])
def test_no_visited_pair_conflicts_after_its_projection(K, P, seed):
    """Right after g_i^PC is projected off g_j, g_i^PC . g_j >= 0 (up to rounding), at every visit."""
    grads = conflicting_grads(K, P, seed)
    gram = grads @ grads.T
    orders = visit_orders(K, torch.Generator().manual_seed(seed))
    scale = grads.norm(dim=1).max() ** 2
    for t in range(K - 1):
        weights = pcgrad_weights(gram, orders[:, : t + 1], eps=0.0)  # stop after t + 1 visits
        projected = weights @ grads  # (K, P) g_i^PC at this point
        for i in range(K):
            j = int(orders[i, t])
            assert float(projected[i] @ grads[j]) >= -1e-12 * float(scale), (t, i, j)
    # the final projected gradient never conflicts with the last task it visited
    final = pcgrad_weights(gram, orders, eps=0.0) @ grads
    for i in range(K):
        assert float(final[i] @ grads[int(orders[i, -1])]) >= -1e-12 * float(scale)


def test_non_conflicting_gradients_are_unchanged():
    gen = torch.Generator().manual_seed(3)
    grads = torch.rand(4, 20, generator=gen, dtype=torch.float64)  # positive entries: every dot product > 0
    out = pcgrad(grads, generator=gen, return_details=True)
    assert torch.equal(out.weights, torch.eye(4, dtype=out.weights.dtype))
    torch.testing.assert_close(out.update, grads.sum(0))
    orthogonal = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, -3.0]])  # dot = 0 is no conflict
    torch.testing.assert_close(pcgrad(orthogonal), orthogonal.sum(0))


@pytest.mark.parametrize("seed", range(5))
def test_two_task_closed_form(seed):
    """K = 2: g1' = g1 - (g1.g2)/|g2|^2 g2 and g2' = g2 - (g1.g2)/|g1|^2 g1 when g1.g2 < 0, whatever the order."""
    g1, g2 = conflicting_grads(2, 6, 100 + seed)
    d = g1 @ g2
    assert d < 0
    want = (g1 - d / (g2 @ g2) * g2) + (g2 - d / (g1 @ g1) * g1)
    torch.testing.assert_close(pcgrad(torch.stack([g1, g2]), eps=0.0), want)
    # and the update never increases either loss to first order: it has a non-negative dot with both
    update = pcgrad(torch.stack([g1, g2]))
    assert update @ g1 >= -1e-12 and update @ g2 >= -1e-12


def test_figure_1_of_the_paper_by_hand():
    """Figure 1 of Yu et al. (2020) is a 2-D schematic, without numbers: (a) two conflicting gradients, (b) g_i
    projected onto the normal plane of g_j, (c) g_j onto that of g_i, (d) non-conflicting gradients are left
    alone. We draw it with numbers chosen here: g_i = (1, 0), g_j = (-1, 1), 135 degrees apart.
    By hand: g_i . g_j = -1, |g_j|^2 = 2, |g_i|^2 = 1, so
        g_i^PC = (1, 0) + 1/2 (-1, 1) = (0.5, 0.5)   (orthogonal to g_j)
        g_j^PC = (-1, 1) + 1 (1, 0)   = (0, 1)       (orthogonal to g_i)
        update = (0.5, 1.5); the plain sum would be (0, 1), orthogonal to g_i (no progress on task i).
    """
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    out = pcgrad(g, return_details=True, eps=0.0)
    projected = out.weights @ g
    torch.testing.assert_close(projected, torch.tensor([[0.5, 0.5], [0.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(out.update, torch.tensor([0.5, 1.5], dtype=torch.float64))
    assert projected[0] @ g[1] == 0 and projected[1] @ g[0] == 0
    assert out.update @ g[0] > 0 and out.update @ g[1] > 0
    # (d): 45 degrees apart, no conflict, nothing changes
    h = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(pcgrad(h), torch.tensor([2.0, 1.0], dtype=torch.float64))


def test_same_seed_same_result_and_order_matters():
    # g0 conflicts with both g1 and g2. Visiting g1 first: g0 -> (.5, .5, 0) -> (.25, .5, .25);
    # visiting g2 first: g0 -> (.5, 0, .5) -> (.25, .25, .5). So the order changes the answer.
    grads = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)
    a = pcgrad(grads, generator=torch.Generator().manual_seed(42))
    b = pcgrad(grads, generator=torch.Generator().manual_seed(42))
    assert torch.equal(a, b)
    # Several seeds give several results: the random order really is used (with K = 3 it changes the answer).
    results = {tuple(pcgrad(grads, generator=torch.Generator().manual_seed(s)).tolist()) for s in range(20)}
    assert len(results) > 1
    # without a generator, torch's global seed decides
    torch.manual_seed(7)
    c = pcgrad(grads)
    torch.manual_seed(7)
    assert torch.equal(c, pcgrad(grads))


def test_zero_gradient_task_does_not_divide_by_zero():
    grads = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]])
    for eps in (0.0, 1e-12):
        out = pcgrad(grads, generator=torch.Generator().manual_seed(0), eps=eps)
        assert torch.isfinite(out).all()
    want = reference_pcgrad(grads[[0, 2]], [[1], [0]])
    torch.testing.assert_close(pcgrad(grads, eps=0.0).double(), want)


def test_no_host_synchronisation():
    """On the 'meta' device tensors have no values: any .item(), bool() or Python `if` on them raises.
    PCGrad runs there, so it makes no per-pair host synchronisation."""
    grads = torch.empty(5, 100, device="meta")
    out = pcgrad(grads, generator=torch.Generator().manual_seed(0))
    assert out.shape == (100,) and out.device.type == "meta"
    with pytest.raises(Exception):  # noqa: B017 (torch raises a different type per version)
        bool(grads[0].sum() < 0)  # the check itself can fail


def test_half_precision_is_promoted():
    grads = conflicting_grads(3, 64, 9)
    got = pcgrad(grads.bfloat16(), generator=torch.Generator().manual_seed(0))
    assert got.dtype == torch.float32
    want = reference_pcgrad(grads.bfloat16().float(), orders_for(0, 3))
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


def test_learners_wrong_shapes_get_a_message_that_teaches():
    with pytest.raises(ValueError, match=r"\(K, P\).*torch.stack"):
        pcgrad(torch.randn(10))
    with pytest.raises(TypeError, match="torch.stack"):
        pcgrad([torch.randn(3), torch.randn(3)])
    with pytest.raises(TypeError, match="floating"):
        pcgrad(torch.ones(2, 3, dtype=torch.long))


def test_single_task_is_identity():
    g = torch.randn(1, 9)
    torch.testing.assert_close(pcgrad(g), g[0])


# ---- main + auxiliary ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("main", [0, 1, 2])
def test_main_aux_is_two_task_pcgrad_between_main_and_weighted_aux(main):
    grads = conflicting_grads(3, 5, 30 + main)
    lam = 0.3
    g_main = grads[main]
    g_aux = lam * sum(grads[k] for k in range(3) if k != main)
    for g_aux_sign in (1.0, -1.0):  # make sure the conflicting case is covered
        g = grads.clone()
        if g_aux_sign < 0:
            g[[k for k in range(3) if k != main]] *= -1
        ga = lam * sum(g[k] for k in range(3) if k != main)
        want = reference_pcgrad(torch.stack([g[main], ga]), [[1], [0]])
        got = main_aux_pcgrad(g, main, aux_weight=lam, generator=torch.Generator().manual_seed(0), eps=0.0)
        torch.testing.assert_close(got, want)
        mean = main_aux_pcgrad(g, main, aux_weight=lam, reduction="mean", eps=0.0)
        torch.testing.assert_close(mean, want / 2)
    assert torch.is_tensor(g_main) and torch.is_tensor(g_aux)


def test_main_aux_mixing_matrix():
    A = main_aux_mixing(4, 2, 0.5)
    torch.testing.assert_close(A, torch.tensor([[0, 0, 1, 0], [0.5, 0.5, 0, 0.5]], dtype=torch.float64))
    with pytest.raises(ValueError, match="main_index"):
        main_aux_mixing(3, 3)


def test_pcgrad_weights_rejects_bad_shapes():
    with pytest.raises(ValueError, match="square"):
        pcgrad_weights(torch.zeros(2, 3), torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="orders"):
        pcgrad_weights(torch.zeros(3, 3), torch.zeros(3, 3, dtype=torch.long))


def test_all_pairs_for_k2_are_non_conflicting_after_surgery():
    for seed in range(10):
        g = conflicting_grads(2, 4, 200 + seed)
        w = pcgrad(g, return_details=True, eps=0.0).weights
        p = w @ g
        for i, j in itertools.permutations(range(2), 2):
            assert float(p[i] @ g[j]) >= -1e-12


# ---- the Gram matrix -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,tile", [(10, 4), (12, 4), (3, 4), (100_003, 1 << 12)])
def test_gram_matrix_equals_the_plain_product(n, tile):
    from mtkit.surgery.pcgrad import gram_matrix

    rows = torch.randn(3, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    torch.testing.assert_close(gram_matrix(rows, tile=tile), rows @ rows.T)
    assert gram_matrix(rows.float(), tile=tile).dtype == torch.float64


def test_gram_matrix_keeps_float32_products_accurate():
    """One float32 product over millions of columns loses digits; tiled partial sums in float64 do not."""
    from mtkit.surgery.pcgrad import gram_matrix

    rows = torch.randn(3, 2_000_000, generator=torch.Generator().manual_seed(0))
    exact = rows.double() @ rows.double().T
    err = ((gram_matrix(rows) - exact).abs() / exact.diagonal().max()).max()
    assert err < 1e-6
