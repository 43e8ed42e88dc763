"""mtkit.optim.AdamW against a plain implementation of the CS224N handout's formulas, against itself (loop vs
foreach, resumed vs straight) and against torch.optim.AdamW (where they agree and where they differ)."""
from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from mtkit.optim import AdamW
from mtkit.optim.adamw import adamw_foreach, adamw_loop


@pytest.fixture(autouse=True)
def _one_thread(_torch_threads):
    """These tensors are tiny: one thread avoids the oversubscription stalls of a busy shared machine."""
    torch.set_num_threads(1)
    yield


def regression_problem(seed: int = 0, n: int = 64, d_in: int = 3, d_out: int = 2):
    """A small linear regression: y = X W* + noise, as in the handout's optimizer test (Linear(3, 2))."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen)
    w_true = torch.randn(d_out, d_in, generator=gen)
    y = x @ w_true.T + 0.1 * torch.randn(n, d_out, generator=gen)
    return x, y


def make_model(seed: int = 0, bias: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(3, 2, bias=bias)


def loss_of(model: nn.Module, x, y) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean()


class PlainAdamW:
    """The handout's formulas, written out with out-of-place tensor math and nothing from mtkit."""

    def __init__(self, params, lr, betas, eps, weight_decay, correct_bias):
        self.params = [p.detach().clone() for p in params]
        self.lr, (self.b1, self.b2), self.eps, self.wd, self.correct_bias = lr, betas, eps, weight_decay, correct_bias
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        for i, g in enumerate(grads):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
            if self.correct_bias:
                alpha = self.lr * math.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
            else:
                alpha = self.lr
            p = self.params[i] - alpha * self.m[i] / (torch.sqrt(self.v[i]) + self.eps)
            self.params[i] = p - self.lr * self.wd * p


CONFIGS = {
    # the handout's own test: lr 1e-3, weight decay 1e-4
    "handout": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=1e-4, correct_bias=True),
    # large lr, decay and eps so that decay order and eps placement change the numbers well past the tolerance
    "strong": dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.1, correct_bias=True),
    "no-bias-correction": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=1e-2, correct_bias=False),
}


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_matches_plain_handout_formulas_for_1000_steps(config, foreach):
    """Step by step for 1000 steps, mtkit's AdamW tracks the plain formulas within 1e-6 (absolute, every step)."""
    hp = CONFIGS[config]
    x, y = regression_problem()
    model = make_model()
    reference = PlainAdamW(model.parameters(), **hp)
    opt = AdamW(model.parameters(), foreach=foreach, **hp)
    for step in range(1000):
        opt.zero_grad()
        loss_of(model, x, y).backward()
        opt.step()
        ref_params = [p.requires_grad_() for p in reference.params]
        ref_grads = torch.autograd.grad(((x @ ref_params[0].T + ref_params[1] - y) ** 2).mean(), ref_params)
        reference.step(ref_grads)
        reference.params = [p.detach() for p in reference.params]
        for got, want in zip(model.parameters(), reference.params):
            torch.testing.assert_close(got.detach(), want, atol=1e-6, rtol=0, msg=lambda m: f"step {step}: {m}")  # noqa: B023 (called at once)
    # the problem really was optimised (the test is not comparing two parameters that never moved)
    assert loss_of(model, x, y).item() < 0.5 * loss_of(make_model(), x, y).item()


def starter_optimizer_test(make_optimizer, dtype=torch.float32) -> torch.Tensor:
    """The CS224N starter's ``optimizer_test.py``, step for step: Linear(3, 2, bias=False), 1000 steps at lr 1e-3,
    weight decay 1e-4, one uniform random input per step (numpy seed 0), squared error to [x0 + x1, -x2].

    ``dtype`` float64 runs the same inputs (the float32 values the starter draws) in double precision.
    Returns the final weight.
    """
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = nn.Linear(3, 2, bias=False).to(dtype)
    opt = make_optimizer(model.parameters())
    for _ in range(1000):
        opt.zero_grad()
        x = torch.FloatTensor(rng.uniform(size=[model.in_features])).to(dtype)
        y = torch.stack([x[0] + x[1], -x[2]])
        loss = ((y - model(x)) ** 2).sum()
        loss.backward()
        opt.step()
    return model.weight.detach()


class _PlainAsOptimizer(PlainAdamW):
    """PlainAdamW driving a model's own parameters (out-of-place formulas, results copied back)."""

    def __init__(self, params, **hp):
        self.model_params = list(params)
        super().__init__(self.model_params, **hp)

    def zero_grad(self):
        for p in self.model_params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        super().step([p.grad for p in self.model_params])
        for p, new in zip(self.model_params, self.params):
            p.copy_(new)
        self.params = [p.detach().clone() for p in self.model_params]


STARTER_HP = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=1e-4, correct_bias=True)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_the_starters_optimizer_test_passes_within_1e_6(foreach):
    """The starter's test compares the final weight with a float32 run of the handout's formulas. Here the
    reference is those formulas written out (PlainAdamW, float32): every weight within 1e-6, absolute."""
    ours = starter_optimizer_test(lambda ps: AdamW(ps, foreach=foreach, **STARTER_HP))
    reference = starter_optimizer_test(lambda ps: _PlainAsOptimizer(ps, **STARTER_HP))
    diff = (ours - reference).abs().max().item()
    print(f"starter optimizer test: largest |mtkit - formulas| = {diff:.1e}")
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0)
    # the weights really moved towards the target [[1, 1, 0], [0, 0, -1]] (the test is not vacuous)
    untrained = starter_optimizer_test(lambda ps: AdamW(ps, lr=0.0))
    target = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
    assert (ours - target).abs().sum() < 0.8 * (untrained - target).abs().sum()


# ---------------------------------------------------------------------------------------------------------------
# The decay p <- p - lr * wd * p in float32: a scaled add, not a multiplication by a rounded factor 1 - lr * wd.

@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("lr, wd", [(1e-5, 0.01), (3e-5, 0.01)], ids=["lr*wd=1e-7", "lr*wd=3e-7"])
def test_small_decay_of_float32_weights_is_unbiased(lr, wd, foreach):
    """100,000 float32 weights, zero gradient (so the Adam step is 0), one step: the mean relative decay
    (p0 - p1) / p0 is lr * wd within 5 %. The factor form p * (1 - lr * wd) decays 1.15x too fast at 1e-7,
    because 1 - 1e-7 itself rounds to 1 - 2 * 2^-24 in float32."""
    gen = torch.Generator().manual_seed(0)
    p = nn.Parameter(torch.randn(100_000, generator=gen))
    before = p.detach().double().clone()
    p.grad = torch.zeros_like(p)
    AdamW([p], lr=lr, weight_decay=wd, foreach=foreach).step()
    relative = ((before - p.detach().double()) / before).mean().item()
    print(f"lr*wd = {lr * wd:.0e}: mean relative decay / (lr*wd) = {relative / (lr * wd):.4f}")
    assert relative == pytest.approx(lr * wd, rel=0.05)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("lr_wd", [1e-7, 3e-7, 1e-6, 1e-5])
def test_the_decay_rounds_only_its_result(lr_wd, foreach):
    """Each weight ends at the float32 nearest to p - lr * wd * p (computed in float64), like any correctly
    rounded update; allow 0.1 % for double rounding of the product. The factor form misses 2 % to 25 %."""
    gen = torch.Generator().manual_seed(1)
    p = nn.Parameter(torch.randn(100_000, generator=gen))
    p64 = p.detach().double()
    exact = (p64 - lr_wd * p64).float()
    p.grad = torch.zeros_like(p)
    AdamW([p], lr=1e-2, weight_decay=lr_wd / 1e-2, foreach=foreach).step()
    missed = (p.detach() != exact).float().mean().item()
    assert missed < 1e-3, f"{missed:.2%} of the weights are not the nearest float32 to p - lr * wd * p"


def test_1000_steps_agree_with_float64_better_than_the_factor_form():
    """The starter's problem (lr 1e-3, wd 1e-4): mtkit in float32 ends closer to the same formula run in float64
    than the factor form p.mul_(1 - lr * wd) does (the same AdamW with the decay applied that way)."""
    lr, wd = STARTER_HP["lr"], STARTER_HP["weight_decay"]
    exact = starter_optimizer_test(lambda ps: _PlainAsOptimizer(ps, **STARTER_HP), dtype=torch.float64)
    ours = starter_optimizer_test(lambda ps: AdamW(ps, **STARTER_HP))

    class FactorForm(AdamW):
        """The same AdamW, its decay applied as p * (1 - lr * wd) after the Adam step."""

        @torch.no_grad()
        def step(self, closure=None):
            super().step(closure)
            for p in self.param_groups[0]["params"]:
                p.mul_(1.0 - lr * wd)

    factor = starter_optimizer_test(lambda ps: FactorForm(ps, **(STARTER_HP | dict(weight_decay=0.0))))
    gap_ours = (ours.double() - exact).abs().max().item()
    gap_factor = (factor.double() - exact).abs().max().item()
    print(f"1000 steps, largest |float32 - float64 formula|: scaled add (mtkit) {gap_ours:.2e}, "
          f"factor form {gap_factor:.2e}")
    assert gap_ours < gap_factor


def test_a_different_eps_placement_or_decay_order_fails_the_reference_check():
    """The 'strong' config is sensitive: torch's eps placement and decay order miss the reference tolerance."""
    hp = CONFIGS["strong"]
    x, y = regression_problem()
    ours, theirs = make_model(), make_model()
    opt_ours = AdamW(ours.parameters(), **hp)
    torch_hp = {k: v for k, v in hp.items() if k != "correct_bias"}
    opt_theirs = torch.optim.AdamW(theirs.parameters(), **torch_hp)
    for _ in range(100):
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            loss_of(model, x, y).backward()
            opt.step()
    assert not torch.allclose(ours.weight, theirs.weight, atol=1e-6, rtol=1e-4)


def _random_params_and_grads(seed=0, shapes=((5, 4), (4,), (7, 3, 2), (1,))):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen) for s in shapes]
    grads_per_step = [[torch.randn(s, generator=gen) * 10 ** torch.randint(-4, 1, (1,), generator=gen).item()
                       for s in shapes] for _ in range(30)]
    return params, grads_per_step


@pytest.mark.parametrize("correct_bias", [True, False])
def test_loop_and_foreach_functions_agree(correct_bias):
    """The readable loop and the vectorised foreach path compute the same update (bit for bit on CPU)."""
    params, grads_per_step = _random_params_and_grads()
    results = []
    for update in (adamw_loop, adamw_foreach):
        p = [t.clone() for t in params]
        m = [torch.zeros_like(t) for t in params]
        v = [torch.zeros_like(t) for t in params]
        for t, grads in enumerate(grads_per_step, start=1):
            update(p, grads, m, v, [t] * len(p), lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.05,
                   correct_bias=correct_bias)
        results.append((p, m, v))
    for a, b in zip(*results):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-8)


def test_optimizer_loop_and_foreach_agree_with_skipped_parameters():
    """With parameters that miss gradients on some steps (so step counts differ), both paths agree."""
    torch.manual_seed(0)
    base = nn.ModuleDict({"a": nn.Linear(4, 3), "b": nn.Linear(3, 2), "c": nn.Linear(4, 2)})
    models = [copy.deepcopy(base) for _ in range(2)]
    opts = [AdamW(models[0].parameters(), lr=1e-2, weight_decay=0.01, foreach=False),
            AdamW(models[1].parameters(), lr=1e-2, weight_decay=0.01, foreach=True)]
    gen = torch.Generator().manual_seed(1)
    for step in range(40):
        x = torch.randn(8, 4, generator=gen)
        for model, opt in zip(models, opts):
            opt.zero_grad(set_to_none=True)
            out = model["b"](model["a"](x)).sum()
            if step % 3 == 0:  # "c" gets a gradient only every third step
                out = out + model["c"](x).pow(2).sum()
            out.backward()
            opt.step()
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-8)
    assert opts[1].state[models[1]["c"].weight]["step"] == 14
    assert opts[1].state[models[1]["a"].weight]["step"] == 40


@pytest.mark.parametrize("foreach", [None, False, True])
def test_mixed_dtypes_in_one_group(foreach):
    """float32 and float64 parameters in one group: foreach runs once per dtype, and the numbers are right."""
    p32 = nn.Parameter(torch.ones(3))
    p64 = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = AdamW([p32, p64], lr=0.1, foreach=foreach)
    (p32.sum() + p64.sum()).backward()
    opt.step()
    # first step with eps: alpha * m / (sqrt(v) + eps) with g = 1 is lr / (1 + eps / sqrt(1 - b2))
    expected = 1 - 0.1 / (1 + 1e-6 / math.sqrt(1 - 0.999))
    torch.testing.assert_close(p32.detach(), torch.full((3,), expected, dtype=torch.float32))
    torch.testing.assert_close(p64.detach(), torch.full((3,), expected, dtype=torch.float64))


@pytest.mark.parametrize("device, foreach, expected", [
    ("cpu", None, "loop"), ("cpu", True, "foreach"), ("meta", None, "foreach"), ("meta", False, "loop"),
])
def test_which_path_runs(monkeypatch, device, foreach, expected):
    """foreach=None: the loop on CPU, foreach on other devices (meta stands in for an accelerator here)."""
    import mtkit.optim.adamw as adamw_module

    calls = []
    monkeypatch.setattr(adamw_module, "adamw_loop", lambda *a, **k: calls.append("loop"))
    monkeypatch.setattr(adamw_module, "adamw_foreach", lambda *a, **k: calls.append("foreach"))
    p = nn.Parameter(torch.zeros(2, device=device))
    p.grad = torch.zeros(2, device=device)
    AdamW([p], foreach=foreach).step()
    assert calls == [expected]


# ---------------------------------------------------------------------------------------------------------------
# torch.optim.AdamW: where the two coincide and where they differ, as the class docstring says.

def _train_pair(ours_hp, torch_hp, steps):
    x, y = regression_problem(seed=3)
    ours, theirs = make_model(1), make_model(1)
    opt_ours = AdamW(ours.parameters(), **ours_hp)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), **torch_hp)
    for _ in range(steps):
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            loss_of(model, x, y).backward()
            opt.step()
    return ours, theirs


def test_agrees_with_torch_when_eps_and_weight_decay_are_zero():
    """With eps = 0 and no weight decay both compute lr * m_hat / sqrt(v_hat): same numbers over 200 steps."""
    hp = dict(lr=1e-2, betas=(0.9, 0.999), eps=0.0, weight_decay=0.0)
    ours, theirs = _train_pair(hp, hp, steps=200)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_eps_placement_differs_from_torch_by_sqrt_of_the_bias_correction():
    """Ours adds eps to sqrt(v); torch adds it to sqrt(v_hat). At t = 1 ours equals torch with eps/sqrt(1-b2)."""
    b2, eps = 0.999, 1e-3
    grad = torch.tensor([1e-3, -2e-3, 5e-1, 1e-5])  # small gradients, where eps matters

    def one_step(opt_cls, eps_value, **kw):
        p = nn.Parameter(torch.zeros(4))
        opt = opt_cls([p], lr=1.0, betas=(0.9, b2), eps=eps_value, weight_decay=0.0, **kw)
        p.grad = grad.clone()
        opt.step()
        return p.detach()

    ours = one_step(AdamW, eps)
    torch_same_eps = one_step(torch.optim.AdamW, eps)
    torch_effective_eps = one_step(torch.optim.AdamW, eps / math.sqrt(1 - b2))
    torch.testing.assert_close(ours, torch_effective_eps, rtol=1e-5, atol=0)
    # the handout's form damps small-gradient coordinates more than torch's on the first step
    assert (ours[:2].abs() < 0.5 * torch_same_eps[:2].abs()).all()
    # by hand, t = 1: step = g / (|g| + eps / sqrt(1 - b2)) for ours, g / (|g| + eps) for torch
    torch.testing.assert_close(ours, -grad / (grad.abs() + eps / math.sqrt(1 - b2)))
    torch.testing.assert_close(torch_same_eps, -grad / (grad.abs() + eps))


def test_weight_decay_order_differs_from_torch_as_documented():
    """Ours: (p - u)(1 - lr wd). torch: p (1 - lr wd) - u. With eps = 0 the first update is u = lr * sign(g)."""
    lr, wd = 0.1, 0.5
    p0 = torch.tensor([1.0, -2.0, 3.0])
    grad = torch.tensor([0.3, 0.2, -4.0])
    results = {}
    for name, opt_cls in (("ours", AdamW), ("torch", torch.optim.AdamW)):
        p = nn.Parameter(p0.clone())
        opt = opt_cls([p], lr=lr, eps=0.0, weight_decay=wd)
        p.grad = grad.clone()
        opt.step()
        results[name] = p.detach()
    u = lr * torch.sign(grad)
    torch.testing.assert_close(results["ours"], (p0 - u) * (1 - lr * wd))
    torch.testing.assert_close(results["torch"], p0 * (1 - lr * wd) - u)
    torch.testing.assert_close(results["torch"] - results["ours"], -lr * wd * u)


def test_with_weight_decay_the_two_drift_apart_but_stay_close():
    """Over many steps the difference is small (second order) but measurable, so a bit-exact parity is not."""
    hp = dict(lr=1e-2, betas=(0.9, 0.999), eps=0.0, weight_decay=0.1)
    ours, theirs = _train_pair(hp, hp, steps=200)
    diff = (ours.weight - theirs.weight).abs().max().item()
    assert 1e-6 < diff < 1e-2


def test_defaults_follow_the_handout():
    opt = AdamW([nn.Parameter(torch.zeros(1))])
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"], group["correct_bias"]) == \
        (1e-3, (0.9, 0.999), 1e-6, 0.0, True)


def test_without_bias_correction_the_first_step_is_lr_times_m_over_sqrt_v():
    """correct_bias=False: p1 = p0 - lr * (1 - b1) g / (sqrt((1 - b2) g^2) + eps), worked out by hand."""
    p = nn.Parameter(torch.zeros(2))
    opt = AdamW([p], lr=0.1, betas=(0.9, 0.99), eps=1e-6, correct_bias=False)
    g = torch.tensor([2.0, -0.5])
    p.grad = g.clone()
    opt.step()
    expected = -0.1 * 0.1 * g / (math.sqrt(0.01) * g.abs() + 1e-6)
    torch.testing.assert_close(p.detach(), expected)


# ---------------------------------------------------------------------------------------------------------------
# Being a real torch optimizer: groups, state_dict, errors, closures, devices.

def _train(model, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        loss_of(model, x, y).backward()
        opt.step()


def _two_group_optimizer(model, foreach):
    return AdamW([{"params": [model.weight], "lr": 1e-2, "weight_decay": 0.1},
                  {"params": [model.bias], "lr": 3e-3, "name": "bias"}], foreach=foreach)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_state_dict_round_trip_is_bit_for_bit(foreach):
    """10 steps, save, load into a fresh model and optimizer, 10 more == 20 straight steps, bit for bit."""
    x, y = regression_problem(seed=5)
    straight = make_model(2)
    opt = _two_group_optimizer(straight, foreach)
    _train(straight, opt, x, y, 20)

    first = make_model(2)
    opt_first = _two_group_optimizer(first, foreach)
    _train(first, opt_first, x, y, 10)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optim": opt_first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed = make_model(99)  # different initial weights: everything must come from the checkpoint
    resumed.load_state_dict(saved["model"])
    opt_resumed = _two_group_optimizer(resumed, foreach)
    opt_resumed.load_state_dict(saved["optim"])
    _train(resumed, opt_resumed, x, y, 10)

    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        s, r = opt.state[p], opt_resumed.state[q]
        assert s["step"] == r["step"] == 20
        assert torch.equal(s["exp_avg"], r["exp_avg"]) and torch.equal(s["exp_avg_sq"], r["exp_avg_sq"])
    assert [g["lr"] for g in opt_resumed.param_groups] == [1e-2, 3e-3]


def test_parameter_groups_use_their_own_hyperparameters():
    """A group's lr overrides the default: a group with lr 0 does not move, the other does."""
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    opt = AdamW([{"params": [a], "lr": 0.0}, {"params": [b]}], lr=0.1)
    (a.sum() + b.sum()).backward()
    opt.step()
    assert torch.equal(a.detach(), torch.ones(2))
    assert (b.detach() < 1).all()


def test_parameters_without_gradients_are_left_alone():
    used, unused = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    opt = AdamW([used, unused], lr=0.1, weight_decay=0.5)
    used.sum().backward()
    opt.step()
    assert torch.equal(unused.detach(), torch.ones(2))
    assert unused not in opt.state


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-1e-3), "learning rate"),
    (dict(betas=(1.0, 0.999)), "beta1"),
    (dict(betas=(0.9, -0.1)), "beta2"),
    (dict(betas=(0.9,)), "pair"),
    (dict(eps=-1e-8), "eps"),
    (dict(weight_decay=-0.01), "weight_decay"),
    (dict(lr=float("nan")), "learning rate"),
])
def test_invalid_hyperparameters_raise_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdamW([nn.Parameter(torch.zeros(1))], **kwargs)


def test_an_invalid_value_inside_a_group_is_caught_and_named():
    with pytest.raises(ValueError, match="'heads'"):
        AdamW([{"params": [nn.Parameter(torch.zeros(1))], "lr": -1.0, "name": "heads"}])
    opt = AdamW([nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="weight_decay"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "weight_decay": -1})


def test_complex_parameters_are_refused():
    p = nn.Parameter(torch.ones(2, dtype=torch.complex64))
    p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match="complex"):
        AdamW([p]).step()


def test_sparse_gradients_raise_an_error_that_explains():
    emb = nn.Embedding(10, 3, sparse=True)
    opt = AdamW(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse=False"):
        opt.step()


def test_closure_is_called_and_its_loss_returned():
    x, y = regression_problem()
    model = make_model()
    opt = AdamW(model.parameters(), lr=1e-2)

    def closure():
        opt.zero_grad()
        loss = loss_of(model, x, y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.item() > 0
    assert opt.state[model.weight]["step"] == 1


def test_works_with_a_torch_lr_scheduler():
    p = nn.Parameter(torch.ones(1))
    opt = AdamW([p], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    for _ in range(3):
        p.grad = torch.ones(1)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.125


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_cuda_matches_cpu(foreach):
    x, y = regression_problem()
    cpu, gpu = make_model(), make_model().cuda()
    opt_cpu = AdamW(cpu.parameters(), lr=1e-2, weight_decay=0.1, foreach=foreach)
    opt_gpu = AdamW(gpu.parameters(), lr=1e-2, weight_decay=0.1, foreach=foreach)
    _train(cpu, opt_cpu, x, y, 100)
    _train(gpu, opt_gpu, x.cuda(), y.cuda(), 100)
    for p, q in zip(cpu.parameters(), gpu.parameters()):
        torch.testing.assert_close(p, q.cpu(), atol=1e-5, rtol=1e-4)
