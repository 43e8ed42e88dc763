"""mtkit.exercises.checks: the helpers compute what CS231n's do, and wrong answers get messages that teach."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtkit.exercises import checks, load_module
from mtkit.exercises.checks import CheckFailure
from mtkit.exercises.checks.pcgrad import _reference_pcgrad_rows as reference_pcgrad_rows

SOL = {name: load_module(name, "solutions") for name in checks.EXERCISES}


# ---------------------------------------------------------------------------------------------- helpers
def test_rel_error_by_hand():
    assert checks.rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    # |1 - 3| / (1 + 3) = 0.5 is the largest of the two entries (the other is 0)
    assert checks.rel_error([1.0, 5.0], [3.0, 5.0]) == pytest.approx(0.5)
    assert checks.rel_error([0.0], [0.0]) == 0.0  # eps guards 0 / 0
    with pytest.raises(ValueError, match="shapes differ"):
        checks.rel_error([1.0], [1.0, 2.0])


def test_numerical_gradient_of_known_functions():
    x = torch.tensor([[0.5, -1.0], [2.0, 3.0]])
    num = checks.numerical_gradient(lambda t: (t ** 3).sum(), x)
    assert torch.allclose(num, 3 * x.double() ** 2, atol=1e-6)  # d/dx x^3 = 3x^2
    num = checks.numerical_gradient(lambda t: torch.sin(t).prod(), torch.tensor([0.3, 1.1]))
    expected = torch.tensor([math.cos(0.3) * math.sin(1.1), math.sin(0.3) * math.cos(1.1)], dtype=torch.float64)
    assert torch.allclose(num, expected, atol=1e-8)


class _WrongBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 2

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * x  # should be 2x


def test_gradient_check_finds_a_wrong_backward_and_passes_a_right_one():
    x = torch.tensor([0.5, -1.5, 2.0])
    assert checks.gradient_check(lambda t: (t ** 2).sum(), x) < 1e-8
    assert checks.gradient_check(lambda t: _WrongBackward.apply(t).sum(), x) > 0.1
    a, b = torch.randn(2, 3), torch.randn(3, 2)
    assert checks.gradient_check(lambda p, q: (p @ q).tanh().sum(), a, b) < 1e-6
    with pytest.raises(ValueError, match="scalar"):
        checks.gradient_check(lambda t: t * 2, x)


def test_not_a_function_gets_a_typeerror():
    with pytest.raises(TypeError, match="your function itself"):
        checks.check_mean_pool(torch.zeros(2))


def test_an_exception_inside_the_learners_code_names_the_case_and_the_inputs():
    def broken(h, mask):
        return h.sum(dim=1) / mask.sum(dim=2)  # IndexError: mask is (B, T)
    with pytest.raises(CheckFailure) as info:
        checks.check_mean_pool(broken)
    text = str(info.value)
    assert "raised IndexError" in text and "case: no padding" in text and "last_hidden_state (2, 4, 6)" in text


def test_a_stub_raises_notimplementederror_naming_the_innermost_function():
    def helper(x):
        raise NotImplementedError()

    def pcgrad(grads, orders):
        return helper(grads)
    with pytest.raises(NotImplementedError, match=r"^helper\(\) is not written yet.*check_pcgrad\(pcgrad\)"):
        checks.check_pcgrad(pcgrad)


# ---------------------------------------------------------------------------------------------- attention
def _attention_with(scale=True, softmax_dim=-1, use_mask=True):
    def attention(q, k, v, attention_mask=None):
        scores = q @ k.transpose(-2, -1)
        if scale:
            scores = scores / math.sqrt(q.shape[-1])
        if use_mask and attention_mask is not None:
            scores = scores.masked_fill(~attention_mask[:, None, None, :].bool(), -1e9)
        probs = scores.softmax(dim=softmax_dim)
        return probs @ v, probs
    return attention


@pytest.mark.parametrize("kwargs, mistake", [
    (dict(scale=False), "no 1/sqrt(D) scaling"),
    (dict(softmax_dim=-2), "softmax over the queries"),
    (dict(use_mask=False), "no padding mask"),
])
def test_attention_mistakes_are_named(kwargs, mistake):
    with pytest.raises(CheckFailure) as info:
        checks.check_attention(_attention_with(**kwargs))
    text = str(info.value)
    assert f"classic mistake: {mistake}" in text
    assert "expected tensor of shape" in text and "got      tensor of shape" in text and "Hint:" in text


def test_attention_with_minus_1e9_passes_and_wrong_return_shape_is_explained():
    assert checks.check_attention(_attention_with()).cases
    with pytest.raises(CheckFailure, match=r"expected a pair \(context, probs\)"):
        checks.check_attention(lambda q, k, v, m=None: _attention_with()(q, k, v, m)[0])
    with pytest.raises(CheckFailure, match=r"expected shape \(1, 1, 4, 8\), got \(1, 4, 1, 8\)"):
        checks.check_attention(lambda q, k, v, m=None: tuple(t.transpose(1, 2) if t.shape[-1] == 8 else t
                                                             for t in _attention_with()(q, k, v, m)))


def test_attention_that_breaks_autograd_fails_the_gradient_case():
    def detached(q, k, v, attention_mask=None):
        context, probs = _attention_with()(q, k, v, attention_mask)
        return context.detach() + 0 * q.sum(), probs
    with pytest.raises(CheckFailure, match="rel_error between autograd's and the numerical gradient"):
        checks.check_attention(detached)


# ---------------------------------------------------------------------------------------------- layer
def test_layer_forward_mistakes_are_named():
    def tanh_gelu(layer, x, attention_mask=None):
        B, T, H = x.shape
        heads = layer.attention.num_heads
        D = H // heads
        split = lambda t: t.view(B, T, heads, D).transpose(1, 2)  # noqa: E731
        q, k, v = (split(m(x)) for m in (layer.attention.query, layer.attention.key, layer.attention.value))
        keep = None if attention_mask is None else attention_mask[:, None, None, :].bool()
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=keep).transpose(1, 2).reshape(B, T, H)
        x = layer.attention_norm(x + layer.attention.output(ctx))
        return layer.ffn_norm(x + layer.ffn.down(F.gelu(layer.ffn.up(x), approximate="tanh")))
    with pytest.raises(CheckFailure, match="classic mistake: the tanh approximation of GELU"):
        checks.check_layer_forward(tanh_gelu)
    with pytest.raises(CheckFailure, match="return only the layer's output"):
        checks.check_layer_forward(lambda layer, x, m=None: (SOL["transformer_layer"].layer_forward(layer, x, m),
                                                             None))


def test_layer_forward_with_the_learners_attention_passes():
    attention = SOL["attention"].attention
    fn = lambda layer, x, m=None: SOL["transformer_layer"].layer_forward(layer, x, m, attention_fn=attention)  # noqa
    assert len(checks.check_layer_forward(fn).cases) == 5  # four forward cases and the gradient case


def test_a_layer_or_pooling_that_autograd_cannot_train_through_fails_the_gradient_case():
    """Training backpropagates through both: a detached input or output would freeze the encoder silently."""
    layer_forward, mean_pool = SOL["transformer_layer"].layer_forward, SOL["mean_pooling"].mean_pool
    with pytest.raises(CheckFailure, match=r"(?s)case 'gradients.*no gradient reaches x"):
        checks.check_layer_forward(lambda layer, x, m=None: layer_forward(layer, x.detach(), m))
    with pytest.raises(CheckFailure, match=r"(?s)case 'gradients.*no grad_fn"):
        checks.check_mean_pool(lambda h, m: mean_pool(h, m).detach())

    def pool_with_a_wrong_backward(h, m):
        leak = (h * (1 - m[..., None])).sum(dim=1)  # (B, H): the padding's sum
        return mean_pool(h, m) + (leak - leak.detach())  # the same values, but the padding gets a gradient
    with pytest.raises(CheckFailure, match="the gradient of last_hidden_state"):
        checks.check_mean_pool(pool_with_a_wrong_backward)


# ---------------------------------------------------------------------------------------------- AdamW
def _adamw_like(kind):
    def step(p, g, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0, correct_bias=True):
        with torch.no_grad():
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            if kind == "torch":
                p.mul_(1 - lr * weight_decay)
                p.addcdiv_(m / (1 - beta1 ** t), (v / (1 - beta2 ** t)).sqrt() + eps, value=-lr)
                return
            alpha = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) if correct_bias else lr
            if kind == "rebind":
                p = p - alpha * m / (v.sqrt() + eps)  # noqa: F841 - the mistake
                return
            p.addcdiv_(m, v.sqrt() + eps, value=-alpha)
            if kind == "factor":
                p.mul_(1 - lr * weight_decay)
            elif kind == "sub":  # the formula out of place, another fine way to write it
                p.sub_(lr * weight_decay * p)
            else:
                p.add_(p, alpha=-(alpha if kind == "alpha decay" else lr) * weight_decay)
    return step


@pytest.mark.parametrize("kind, words", [
    ("torch", "classic mistake: torch.optim.AdamW's formula"),
    ("rebind", "param did not change in place"),
    ("alpha decay", "classic mistake: weight decay scaled by alpha instead of lr"),
    ("factor", "classic mistake: the decay as a rounded factor"),
])
def test_adamw_mistakes_are_named(kind, words):
    with pytest.raises(CheckFailure, match=words):
        checks.check_adamw_step(_adamw_like(kind))


@pytest.mark.parametrize("kind", ["correct", "sub"])
def test_adamw_check_accepts_the_formula_however_it_is_written(kind):
    """The scaled add and the out-of-place p - lr * wd * p both round only the result: both pass, tiny decay
    case included."""
    result = checks.check_adamw_step(_adamw_like(kind))
    assert any("tiny decay" in case for case in result.cases)


def test_adamw_reference_agrees_with_torch_when_eps_and_decay_are_zero():
    """Independent reference: with eps = 0 and no decay the handout's step is torch.optim.AdamW's."""
    torch.manual_seed(0)
    p = torch.randn(5, dtype=torch.float64)
    q = torch.nn.Parameter(p.clone())
    opt = torch.optim.AdamW([q], lr=0.01, eps=0.0, weight_decay=0.0)
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    for t in range(1, 4):
        g = torch.randn(5, dtype=torch.float64)
        SOL["adamw"].adamw_step(p, g, m, v, t, lr=0.01, eps=0.0)
        q.grad = g.clone()
        opt.step()
    assert torch.allclose(p, q.detach(), atol=1e-12)


# ---------------------------------------------------------------------------------------------- pooling, pairs
def test_mean_pool_mistakes_are_named():
    with pytest.raises(CheckFailure, match="classic mistake: a plain mean over all T positions"):
        checks.check_mean_pool(lambda h, m: h.mean(dim=1))

    def no_clamp(h, m):
        keep = m.unsqueeze(-1).to(h.dtype)
        return (h * keep).sum(1) / keep.sum(1)
    with pytest.raises(CheckFailure, match="NaN or inf") as info:
        checks.check_mean_pool(no_clamp)
    assert "no real token" in str(info.value)

    def in_place(h, m):
        h *= m.unsqueeze(-1).to(h.dtype)
        return h.sum(1) / m.sum(1, keepdim=True).clamp(min=1).to(h.dtype)
    with pytest.raises(CheckFailure, match="modified its inputs"):
        checks.check_mean_pool(in_place)


def test_pair_features_mistakes_are_named():
    with pytest.raises(CheckFailure, match=r"no absolute value"):
        checks.check_pair_features(lambda u, v: torch.cat([u, v, u - v], -1))
    with pytest.raises(CheckFailure, match="torch.stack adds a dimension"):
        checks.check_pair_features(lambda u, v: torch.stack([u, v, (u - v).abs()], 1))


# ---------------------------------------------------------------------------------------------- LLRD
def test_llrd_mistakes_are_reported_per_parameter():
    from mtkit.model.names import depth_of

    def counted_from_bottom(model, lr, decay, weight_decay=0.0, encoder_prefix="encoder.", head_prefix="heads."):
        L = model.encoder.config.num_hidden_layers
        out = []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if name.startswith(head_prefix):
                depth = 0
            elif name.startswith(encoder_prefix):
                depth = L + 1 - depth_of(name[len(encoder_prefix):], L)  # upside down
            else:
                raise ValueError(name)
            out.append({"params": [p], "lr": lr * decay ** depth, "weight_decay": weight_decay})
        return out
    with pytest.raises(CheckFailure, match=r"parameters have the wrong lr or weight decay") as info:
        checks.check_llrd_groups(counted_from_bottom)
    assert "(depth " in str(info.value)

    def everything_once_twice(model, lr, decay, weight_decay=0.0, **_):
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr}, {"params": params[:1], "lr": lr}]
    with pytest.raises(CheckFailure, match="more than one group"):
        checks.check_llrd_groups(everything_once_twice)

    def includes_frozen(model, lr, decay, weight_decay=0.0, **_):
        groups = SOL["llrd"].llrd_param_groups(model, lr, decay, weight_decay)
        frozen = [p for p in model.parameters() if not p.requires_grad]
        return groups + ([{"params": frozen, "lr": 0.0}] if frozen else [])
    with pytest.raises(CheckFailure, match="frozen parameters were put in groups"):
        checks.check_llrd_groups(includes_frozen)

    def silent(model, lr, decay, weight_decay=0.0, **kw):
        model = model if not hasattr(model, "mystery") else _without_mystery(model)
        return SOL["llrd"].llrd_param_groups(model, lr, decay, weight_decay)
    with pytest.raises(CheckFailure, match="no error was raised"):
        checks.check_llrd_groups(silent)


def _llrd_by_hand(rule):
    """A learner's llrd_param_groups that computes each encoder block's exponent by hand with ``rule(block, L)``
    (block: "embeddings", "pooler" or the layer index i, 0 = bottom)."""
    def llrd_param_groups(model, lr, decay, weight_decay=0.0, encoder_prefix="encoder.", head_prefix="heads."):
        L = model.encoder.config.num_hidden_layers
        out = []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if name.startswith(head_prefix):
                group_lr = lr
            elif name.startswith(encoder_prefix):
                root = name[len(encoder_prefix):].split(".")
                block = int(root[1]) if root[0] == "layers" else root[0]
                group_lr = lr * decay ** rule(block, L)
            else:
                raise ValueError(name)
            wd = 0.0 if name.endswith("bias") or "norm" in name else weight_decay
            out.append({"params": [p], "lr": group_lr, "weight_decay": wd})
        return out
    return llrd_param_groups


def _papers_depth(block, L):  # Sun et al. 2019 and report D: the top layer at the base lr
    return {"embeddings": L, "pooler": 0}.get(block, L - 1 - block if isinstance(block, int) else None)


@pytest.mark.parametrize("rule, words", [
    # the convention mtkit itself used before it followed the papers: the top layer one decay step down
    (lambda b, L: {"embeddings": L, "pooler": 1}.get(b, L - b if isinstance(b, int) else None),
     "classic mistake: the decay starts at the top layer"),
    (lambda b, L: {"embeddings": L + 1, "pooler": 1}.get(b, L - b if isinstance(b, int) else None),
     "classic mistake: every encoder block one step too deep"),
    (lambda b, L: L - 1 if b == "embeddings" else _papers_depth(b, L),
     "classic mistake: the embeddings at the bottom layer's lr"),
    (lambda b, L: {"embeddings": 0, "pooler": L}.get(b, b + 1 if isinstance(b, int) else None),
     "classic mistake: depth counted from the bottom"),
], ids=["top-layer-decayed", "one-too-deep", "embeddings-with-bottom-layer", "from-the-bottom"])
def test_llrd_depth_mistakes_are_named(rule, words):
    with pytest.raises(CheckFailure, match=words) as info:
        checks.check_llrd_groups(_llrd_by_hand(rule))
    assert "parameters have the wrong lr" in str(info.value) and "Hint:" in str(info.value)
    if "top layer" in words:
        assert "Sun et al. 2019" in str(info.value) and "report D" in str(info.value)


def test_llrd_check_accepts_the_papers_rule_written_by_hand():
    """The same rule as mtkit.model.names.depth_of, computed without it: the check passes (the mistakes above are not
    matched by accident)."""
    result = checks.check_llrd_groups(_llrd_by_hand(_papers_depth))
    assert len(result.cases) >= 3


def _without_mystery(model):
    del model.mystery
    return model


# ---------------------------------------------------------------------------------------------- PCGrad, cosine
def test_pcgrad_mistakes_are_named():
    def add_instead(g_i, g_j, eps=1e-12):
        dot = g_i @ g_j
        return g_i + dot / (g_j @ g_j + eps) * g_j if dot < 0 else g_i.clone()
    with pytest.raises(CheckFailure, match="adding the component instead of removing it"):
        checks.check_pcgrad_projection(add_instead)

    def always(g_i, g_j, eps=1e-12):
        return g_i - (g_i @ g_j) / (g_j @ g_j + eps) * g_j
    with pytest.raises(CheckFailure, match="projecting even without a conflict"):
        checks.check_pcgrad_projection(always)

    def off_projected(grads, orders):
        """Projects off the *projected* g_j (a common misreading of the algorithm)."""
        rows = [g.clone() for g in grads]
        for i in range(len(rows)):
            for j in orders[i].tolist():
                rows[i] = SOL["pcgrad"].project_conflicting(rows[i], rows[j])
        return torch.stack(rows).sum(0)
    with pytest.raises(CheckFailure, match="update"):
        checks.check_pcgrad(off_projected)
    with pytest.raises(CheckFailure, match="the mean instead of the sum"):
        checks.check_pcgrad(lambda grads, orders: SOL["pcgrad"].pcgrad(grads, orders) / grads.shape[0])


def test_pcgrad_reference_matches_a_plain_loop_written_here():
    """The check's reference (mtkit's Gram formulation) equals Algorithm 1 written out in plain Python."""
    torch.manual_seed(3)
    grads = torch.randn(3, 7, dtype=torch.float64)
    orders = torch.tensor([[2, 1], [0, 2], [1, 0]])
    rows = []
    for i in range(3):
        g = grads[i].clone()
        for j in orders[i].tolist():
            dot = float(g @ grads[j])
            if dot < 0:
                g = g - dot / float(grads[j] @ grads[j]) * grads[j]
        rows.append(g)
    assert torch.allclose(reference_pcgrad_rows(grads, orders), torch.stack(rows), atol=1e-12)


def test_gradient_cosine_mistakes_are_named():
    def averaged(gi, gj):
        return sum(float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0)) for a, b in zip(gi, gj)) / len(gi)
    with pytest.raises(CheckFailure, match="you averaged per-tensor cosines"):
        checks.check_gradient_cosine(averaged)

    def zero_not_nan(gi, gj):
        a, b = torch.cat([g.flatten() for g in gi]), torch.cat([g.flatten() for g in gj])
        return float(F.cosine_similarity(a, b, dim=0))  # gives 0 for a zero vector
    with pytest.raises(CheckFailure, match="expected nan"):
        checks.check_gradient_cosine(zero_not_nan)


def test_check_result_lists_its_cases():
    result = checks.check_pair_features(SOL["pair_features"].pair_features)
    assert str(result) == "check_pair_features: pair_features() passed all 3 cases"
    assert repr(result).splitlines()[1] == "  ok  a batch of 2 pairs, H = 4"


# ---------------------------------------------------------------------------------------------- learner mode
def _folder_with(tmp_path, **files):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.py").write_text(text)
    return folder


def test_workbook_a_stub_is_not_written_yet_and_the_notebook_goes_on_with_the_worked_answer(tmp_path, capsys):
    from mtkit.exercises import find_root, generate
    stubs = tmp_path / "exercises"
    generate(find_root() / "solutions", stubs)
    book = checks.Workbook(str(stubs))
    fn = book.check("attention")
    out = capsys.readouterr().out
    assert out.startswith(f"check_attention: not written yet: open {stubs}/attention.py, function attention()")
    assert "this notebook uses the worked answer, solutions/attention.py" in out
    assert fn.__module__ == "mtkit_solutions_attention"
    assert book.outcome("attention") == "not written yet"
    assert book.record()["attention"] | {"file": None} == {
        "source": str(stubs), "file": None, "outcome": "not written yet",
        "functions": {"attention": "not written yet"}, "used_instead": "solutions/attention.py"}


def test_workbook_a_wrong_answer_shows_the_checks_message_and_a_right_one_is_used(tmp_path, capsys):
    wrong = "import torch\n\n\ndef mean_pool(last_hidden_state, attention_mask):\n    return last_hidden_state.mean(1)\n"
    right = ("def pair_features(u, v):\n    import torch\n    return torch.cat([u, v, (u - v).abs()], dim=-1)\n")
    folder = _folder_with(tmp_path, mean_pooling=wrong, pair_features=right)
    book = checks.Workbook(str(folder))
    fn = book.check("mean_pooling")
    out = capsys.readouterr().out
    assert "check_mean_pool: mean_pool() failed on case" in out and "expected" in out and "Hint:" in out
    assert "classic mistake: a plain mean over all T positions" in out
    assert "Until it passes, this notebook uses the worked answer, solutions/mean_pooling.py" in out
    assert fn is not None and fn.__module__ == "mtkit_solutions_mean_pooling"
    assert book.outcome("mean_pooling").startswith("failed: check_mean_pool: mean_pool() failed on case")
    assert "classic mistake" in book.outcome("mean_pooling")
    mine = book.check("pair_features")
    assert "passed all 3 cases" in capsys.readouterr().out and mine.__module__.endswith("_pair_features")
    assert book.record()["pair_features"]["outcome"] == "passed" and "used_instead" not in book.record()[
        "pair_features"]


def test_workbook_a_file_that_does_not_load_or_lacks_the_function_is_explained(tmp_path):
    folder = _folder_with(tmp_path, attention="def attention(q, k, v, attention_mask=None)\n    pass\n",
                          adamw="def adam_step(*args):\n    pass\n")
    book = checks.Workbook(str(folder), verbose=False)
    book.check("attention")
    book.check("adamw")
    assert book.outcome("attention").startswith("failed: check_attention:") and "SyntaxError" in book.outcome(
        "attention")
    assert "has no function adamw_step()" in book.outcome("adamw")
    assert "No " in book.run("llrd")[0].message  # no file at all


def test_workbook_needs_the_function_name_for_a_file_with_two_and_refuses_a_failing_worked_answer(tmp_path):
    book = checks.Workbook("solutions", verbose=False)
    with pytest.raises(ValueError, match="holds 2 functions"):
        book.check("pcgrad")
    folder = _folder_with(tmp_path, pair_features="def pair_features(u, v):\n    return u\n")
    with pytest.raises(RuntimeError, match="bug of the kit"):
        checks.Workbook(str(folder), fallback=str(folder), verbose=False).check("pair_features")


def test_workbook_checks_leave_the_callers_random_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    checks.Workbook("solutions", verbose=False).check("transformer_layer")  # its check calls torch.manual_seed
    assert torch.equal(torch.rand(3), expected)
